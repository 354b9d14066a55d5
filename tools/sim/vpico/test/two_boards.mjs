// Test-only: two RP2040 instances in one node process running the real rp2 MicroPython image, stepped side by
// side on one virtual timeline, each with a raw-REPL runner over its emulated USB CDC. Just enough board to test
// the I2C target mode against the real machine.I2C / machine.I2CTarget before (and independently of) the vpico
// core: no flash programming (no LittleFS), no pty. SOIL_RP2_IMAGE / SOIL_RP2_BOOTROM name the files
// (tools/rp2/build.sh stock / bootrom print them).
import fs from 'node:fs';
import { ConsoleLogger, LogLevel, RP2040, USBCDC } from 'rp2040js';

const CYCLE_NS = 8;              // 125 MHz

export function imagePaths() {
  const cache = `${process.env.HOME}/.cache/soil-rp2`;
  const image = process.env.SOIL_RP2_IMAGE || `${cache}/images/v1.27.0-RPI_PICO/firmware.uf2`;
  const bootrom = process.env.SOIL_RP2_BOOTROM || `${cache}/bootrom/rp2040js-v1.3.3-bootrom-b1.bin`;
  return fs.existsSync(image) && fs.existsSync(bootrom) ? { image, bootrom } : null;
}

function loadUF2(flash, data) {
  for (let off = 0; off + 512 <= data.length; off += 512) {
    const v = new DataView(data.buffer, data.byteOffset + off, 512);
    if (v.getUint32(0, true) !== 0x0a324655 || v.getUint32(4, true) !== 0x9e5d5157) continue;
    const addr = v.getUint32(12, true) - 0x10000000;
    const n = v.getUint32(16, true);
    flash.set(data.subarray(off + 32, off + 32 + n), addr);
  }
}

export class Board {
  constructor(name, { image, bootrom }) {
    this.name = name;
    this.mcu = new RP2040();
    this.mcu.logger = new ConsoleLogger(LogLevel.Error);
    const rom = fs.readFileSync(bootrom);
    this.mcu.loadBootrom(new Uint32Array(rom.buffer, rom.byteOffset, rom.length / 4));
    loadUF2(this.mcu.flash, fs.readFileSync(image));
    this.holds = 0;
    this.out = '';
    this.cdc = new USBCDC(this.mcu.usbCtrl);
    this.cdc.onSerialData = (buf) => { this.out += Buffer.from(buf).toString('latin1'); };
    this.cdc.onDeviceConnected = () => this.send('\r\n');   // the banner went out before the host listened
    this.pending = [];
    // A host that NAKs an OUT read with nothing to send (the stock one answers with empty packets at once, and
    // USB interrupts eat the emulated CPU): park it until there is data.
    this.parked = null;
    const usb = this.mcu.usbCtrl;
    usb.onEndpointRead = (endpoint, size) => {
      this.feed();
      if (this.cdc.txFIFO.empty) {
        this.parked = { endpoint, size };
        return;
      }
      this.readOut(endpoint, size);
    };
    this.mcu.core.PC = 0x10000000;
  }

  readOut(endpoint, size) {
    const fifo = this.cdc.txFIFO;
    const buf = new Uint8Array(Math.min(size, fifo.itemCount));
    for (let i = 0; i < buf.length; i++) buf[i] = fifo.pull();
    this.mcu.usbCtrl.endpointReadDone(endpoint, buf);
  }

  feed() {
    const fifo = this.cdc.txFIFO;
    while (this.pending.length && !fifo.full) fifo.push(this.pending.shift());
  }

  send(text) {
    this.pending.push(...Buffer.from(text, 'latin1'));
    this.feed();
    if (this.parked && !this.cdc.txFIFO.empty) {
      const { endpoint, size } = this.parked;
      this.parked = null;
      this.readOut(endpoint, size);
    }
  }

  hold() {
    this.holds++;
    let open = true;
    return () => {
      if (open) {
        open = false;
        this.holds--;
      }
    };
  }

  get nanos() {
    return this.mcu.clock.nanos;
  }

  /** Run up to `n` instructions, or sleep (WFI) at most to `limitNs` of virtual time. */
  step(n, limitNs) {
    const { mcu } = this;
    const { core, clock } = mcu;
    for (let i = 0; i < n && !this.holds; i++) {
      if (core.waiting) {
        const room = Math.max(0, limitNs - clock.nanos);
        const next = clock.nanosToNextAlarm;           // 0: no alarm at all (idle until an interrupt)
        const dt = next > 0 ? Math.min(next, room) : room;
        if (dt <= 0) return;
        clock.tick(dt);
      } else {
        clock.tick(core.executeInstruction() * CYCLE_NS);
      }
    }
  }
}

/** Step boards side by side: the one furthest behind in virtual time runs next; a held board waits. */
export class Bench {
  constructor(boards) {
    this.boards = boards;
  }

  async run(untilFn, { timeoutMs = 60000, chunk = 2000 } = {}) {
    const t0 = Date.now();
    let spins = 0;
    while (!untilFn()) {
      if (Date.now() - t0 > timeoutMs) {
        const tail = this.boards.map((b) => `${b.name} @${(b.nanos / 1e6).toFixed(1)} ms pending ${b.pending.length} parked ${!!b.parked} fifo ${b.cdc.txFIFO.itemCount} waiting ${b.mcu.core.waiting} holds ${b.holds}: ${JSON.stringify(b.out.slice(-300))}`);
        throw new Error(`bench: timeout; ${tail.join('; ')}`);
      }
      const runnable = this.boards.filter((b) => !b.holds);
      if (runnable.length) {
        runnable.sort((a, b) => a.nanos - b.nanos);
        const b = runnable[0];
        const ahead = runnable.length > 1 ? runnable[1].nanos + 1e6 : b.nanos + 1e7;
        b.step(chunk, Math.max(ahead, b.nanos + 1000));
      }
      await null;                                    // let the wire's promises settle
      if (++spins % 64 === 0 || !runnable.length) await new Promise((r) => setImmediate(r));
    }
  }

  /** Wait for `text` in board `b`'s output after position `from`; returns the index after it. */
  async expect(b, text, from = 0, opts) {
    let at = -1;
    await this.run(() => (at = b.out.indexOf(text, from)) >= 0, opts);
    return at + text.length;
  }

  async boot(b) {
    await this.expect(b, '>>> ', 0, { timeoutMs: 60000 });
    b.send('\x01');
    await this.expect(b, 'raw REPL; CTRL-B to exit\r\n>');
  }

  /** Run `code` in `b`'s raw REPL; resolves {out, err}. */
  async exec(b, code, opts) {
    const start = b.out.length;
    b.send(code + '\x04');
    const ok = await this.expect(b, 'OK', start, opts);
    const end1 = await this.expect(b, '\x04', ok, opts);
    const end2 = await this.expect(b, '\x04', end1, opts);
    await this.expect(b, '>', end2, opts);
    return { out: b.out.slice(ok, end1 - 1), err: b.out.slice(end1, end2 - 1) };
  }
}
