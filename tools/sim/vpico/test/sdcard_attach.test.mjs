// The SD card device plugged into a real rp2040js RP2040 (no firmware): the test plays the CPU, writing the same
// registers the pico-sdk writes (IO_BANK0 function select, SIO for CS on GP13, SPI1's SSPCR0/SSPCR1/SSPDR), and
// drives the card through the emulated SPI peripheral and the GPIO listener.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { Host } from './sd_host.mjs';

let RP2040;
try {
  ({ RP2040 } = await import('rp2040js'));
} catch {
  RP2040 = null;
}
const skip = RP2040 ? false : 'rp2040js is not installed (npm install in tools/sim/vpico)';

const IO_BANK0 = 0x40014000;
const SIO_OUT_SET = 0xd0000014;
const SIO_OUT_CLR = 0xd0000018;
const SIO_OE_SET = 0xd0000024;
const SPI1 = 0x40040000;
const SSPCR0 = 0x000;
const SSPCR1 = 0x004;
const SSPDR = 0x008;
const SSPSR = 0x00c;
const SSPCPSR = 0x010;
const SSPSR_RNE = 1 << 2;
const FUNC_SPI = 1;
const FUNC_SIO = 5;

// The pico-sdk's view: spi_init(spi1), gpio_set_function(10..12, SPI), CS on GP13 as a SIO output, high.
function board({ spiPins = true } = {}) {
  const mcu = new RP2040();
  for (const pin of [10, 11, 12]) mcu.writeUint32(IO_BANK0 + pin * 8 + 4, spiPins ? FUNC_SPI : FUNC_SIO);
  mcu.writeUint32(IO_BANK0 + 13 * 8 + 4, FUNC_SIO);
  mcu.writeUint32(SIO_OUT_SET, 1 << 13);
  mcu.writeUint32(SIO_OE_SET, 1 << 13);
  mcu.writeUint32(SPI1 + SSPCPSR, 100);     // clk_peri / 100
  mcu.writeUint32(SPI1 + SSPCR0, 7);        // DSS: 8-bit frames, Motorola SPI, mode 0
  mcu.writeUint32(SPI1 + SSPCR1, 1 << 1);   // SSE: enabled, controller
  const bus = {
    select(low) { mcu.writeUint32(low ? SIO_OUT_CLR : SIO_OUT_SET, 1 << 13); },
    exchange(b) {                             // write SSPDR, let the byte's clocks pass (RNE), read SSPDR
      mcu.writeUint32(SPI1 + SSPDR, b);
      while (!(mcu.readUint32(SPI1 + SSPSR) & SSPSR_RNE)) mcu.clock.tick(mcu.clock.nanosToNextAlarm || 1000);
      return mcu.readUint32(SPI1 + SSPDR) & 0xff;
    },
  };
  return { mcu, bus };
}

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'card-attach-'));
const attached = [];
test.after(() => {
  for (const d of attached) d.close();
  fs.rmSync(scratch, { recursive: true, force: true });
});

async function plug(mcu, opts = {}) {
  const { attach } = await import('../devices/sdcard.mjs');
  const lines = [];
  const dev = attach({ mcu, stateDir: fs.mkdtempSync(path.join(scratch, 'b-')), log: (l) => lines.push(l) },
    { capacity: '1M', ...opts });
  attached.push(dev);
  return { dev, lines };
}

test('through the emulated SPI1 and GP13: init, capacity, write and read back a block', { skip }, async () => {
  const { mcu, bus } = board();
  const { lines } = await plug(mcu);
  assert.match(lines[0], /sdhc 1048576 bytes on SPI1 \(CS GP13\)/);
  const host = new Host(bus);
  const info = host.init();
  assert.equal(info.sectors, 2048);
  const data = new Uint8Array(512).map((_, i) => i ^ 0x5a);
  assert.equal(host.cmd(24, 42).r1, 0);
  assert.equal(host.writeData(0xfe, data).response & 0x1f, 0x05);
  assert.equal(host.cmd(17, 42, { release: false }).r1, 0);
  assert.deepEqual(host.readData(512).data, data);
});

test('CS high (GP13 driven high by SIO): the card does not answer', { skip }, async () => {
  const { mcu, bus } = board();
  await plug(mcu);
  const host = new Host({ select() {}, exchange: bus.exchange });   // never pulls CS low
  host.clocks(16);
  for (const b of host.frame(0, 0)) host.xfer(b);
  for (let i = 0; i < 16; i++) assert.equal(host.xfer(), 0xff);
});

test('GP10-12 not given to SPI: an empty slot, as on a board wired elsewhere', { skip }, async () => {
  const { mcu, bus } = board({ spiPins: false });
  await plug(mcu);
  assert.throws(() => new Host(bus).init(), /no SD card/);
});

test('bad options: one clear line', { skip }, async () => {
  const { mcu } = board();
  await assert.rejects(plug(mcu, { capacity: 'lots' }), /sdcard: capacity "lots" is not a size/);
  await assert.rejects(plug(mcu, { kind: 'mmc' }), /sdcard: kind mmc is not sdhc, sdsc or sdsc-v1/);
  await assert.rejects(plug(mcu, { capacity: '1000K' }), /sdcard: an SDHC card's capacity is a multiple of 512 KiB/);
});

// machine.SPI on the rp2 port moves transfers of 32 bytes or more with two DMA channels, paced by SPI1's DREQs
// (ports/rp2/machine_spi.c): a 512-byte block read must end with all 512 bytes in memory.
test('a 512-byte block through two DMA channels paced by DREQ_SPI1_TX / DREQ_SPI1_RX', { skip }, async () => {
  const { mcu, bus } = board();
  await plug(mcu);
  const host = new Host(bus);
  host.init();
  const data = new Uint8Array(512).map((_, i) => (i * 13) & 0xff);
  assert.equal(host.cmd(24, 9).r1, 0);
  host.writeData(0xfe, data);
  assert.equal(host.cmd(17, 9, { release: false }).r1, 0);
  host.select(true);
  let token;
  do token = bus.exchange(0xff); while (token === 0xff);
  assert.equal(token, 0xfe);
  const SRAM = 0x20000000;
  const TX_BUF = SRAM + 0x1000;
  const RX_BUF = SRAM + 0x2000;
  for (let i = 0; i < 512; i++) mcu.writeUint8(TX_BUF + i, 0xff);
  const DMA = 0x50000000;
  const ch = (n, reg) => DMA + n * 0x40 + reg;
  const ctrl = (n, treq, incrRead, incrWrite) => 1 | (incrRead ? 1 << 4 : 0) | (incrWrite ? 1 << 5 : 0)
    | (n << 11) | (treq << 15);               // EN, byte size, CHAIN_TO itself (no chaining), TREQ_SEL
  mcu.writeUint32(ch(1, 0x00), SPI1 + SSPDR);  // rx: SSPDR -> RX_BUF, DREQ_SPI1_RX (19)
  mcu.writeUint32(ch(1, 0x04), RX_BUF);
  mcu.writeUint32(ch(1, 0x08), 512);
  mcu.writeUint32(ch(0, 0x00), TX_BUF);        // tx: TX_BUF -> SSPDR, DREQ_SPI1_TX (18)
  mcu.writeUint32(ch(0, 0x04), SPI1 + SSPDR);
  mcu.writeUint32(ch(0, 0x08), 512);
  mcu.writeUint32(SPI1 + 0x024, 3);            // SSPDMACR: TXDMAE | RXDMAE
  mcu.writeUint32(ch(1, 0x0c), ctrl(1, 19, false, true));
  mcu.writeUint32(ch(0, 0x0c), ctrl(0, 18, true, false));
  const busy = (n) => mcu.readUint32(ch(n, 0x0c)) & (1 << 24);
  for (let i = 0; i < 100000 && (busy(0) || busy(1)); i++) mcu.clock.tick(mcu.clock.nanosToNextAlarm || 1000);
  assert.equal(busy(1), 0, 'the receive channel finished');
  const got = new Uint8Array(512).map((_, i) => mcu.readUint8(RX_BUF + i));
  assert.deepEqual(got, data);
});
