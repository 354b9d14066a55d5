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
const FUNC_SPI = 1;
const FUNC_SIO = 5;

// The pico-sdk's view: spi_init(spi1), gpio_set_function(10..12, SPI), CS on GP13 as a SIO output, high.
function board({ spiPins = true } = {}) {
  const mcu = new RP2040();
  for (const pin of [10, 11, 12]) mcu.writeUint32(IO_BANK0 + pin * 8 + 4, spiPins ? FUNC_SPI : FUNC_SIO);
  mcu.writeUint32(IO_BANK0 + 13 * 8 + 4, FUNC_SIO);
  mcu.writeUint32(SIO_OUT_SET, 1 << 13);
  mcu.writeUint32(SIO_OE_SET, 1 << 13);
  mcu.writeUint32(SPI1 + SSPCR0, 7);        // DSS: 8-bit frames, Motorola SPI, mode 0
  mcu.writeUint32(SPI1 + SSPCR1, 1 << 1);   // SSE: enabled, controller
  const bus = {
    select(low) { mcu.writeUint32(low ? SIO_OUT_CLR : SIO_OUT_SET, 1 << 13); },
    exchange(b) { mcu.writeUint32(SPI1 + SSPDR, b); return mcu.readUint32(SPI1 + SSPDR) & 0xff; },
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
