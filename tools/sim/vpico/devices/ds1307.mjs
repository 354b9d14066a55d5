/**
 * The Maxim DS1307 real-time clock at 0x68 on I2C0 (GP4 SDA, GP5 SCL on the Pico: boards.py PICO), as a register
 * array plus the datasheet's rules: the same rules as tools/sim/chips/ds1307.py, which the CPython and WebAssembly
 * boards use, written again here because this model lives in the emulator's process (node), not in a Python.
 *
 *   0x00  CH | 10 s | s        CH = clock halt: 1 stops the oscillator
 *   0x01  10 min | min
 *   0x02  12/24 | PM/10 h | 10 h | h      bit 6 = 12-hour mode, then bit 5 = PM
 *   0x03  day of week 1..7     0x04 date   0x05 month   0x06 year 00..99 (2000..2099, every 4th a leap year)
 *   0x07  OUT | SQWE | RS1 RS0 (control)
 *   0x08..0x3F  56 bytes of battery-backed RAM
 *
 * - One register pointer, set by the first byte of a write, incremented after each byte, wrapping 0x3F -> 0x00.
 * - Every START copies the running time into the registers (the secondary buffer): a burst read is coherent.
 * - Writing the seconds register resets the countdown chain. Bits that read 0 are masked on write.
 * - Impossible values (month 0x13, Feb 30) are left alone while the clock runs: undefined on the chip.
 * - Time runs on the emulated clock (board.clock.nanos), which follows the wall clock with --pace wall.
 *
 * State: DIR/ds1307.json (the 64 registers, the wall time they were saved at). The battery keeps them between runs:
 * at start the clock runs on by the wall time the board was off. It is written at the end of every write
 * transaction and at save(), so a power cut (the emulator killed) keeps what the chip had. No file, or
 * --opt ds1307.battery=new: a first power-up (CH set, 2000-01-01 00:00:00, control 0x03, RAM random).
 * --opt ds1307.time=2026-12-01T12:00:00 (UTC; or `now`): a chip set and running at that time.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

export const ADDRESS = 0x68;
const CH = 0x80;
const HOUR_12 = 0x40;
const HOUR_PM = 0x20;
const DAY = 86400;
const CENTURY = 36525;
const WRITE_MASK = [0xff, 0x7f, 0x7f, 0x07, 0x3f, 0x1f, 0xff, 0x93];
const ZERO_TIME = [0x80, 0x00, 0x00, 0x01, 0x01, 0x01, 0x00];
const MONTH_START = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334, 365];

const bcd = (v) => (Math.floor(v / 10) << 4) | (v % 10);
const dec = (b) => ((b >> 4) > 9 || (b & 15) > 9 ? -1 : (b >> 4) * 10 + (b & 15));
const monthDays = (y, m) => (m === 2 && y % 4 === 0 ? 29 : MONTH_START[m] - MONTH_START[m - 1]);
const dayNumber = (y, m, d) => y * 365 + Math.floor((y + 3) / 4) + MONTH_START[m - 1] + d - 1 + (m > 2 && y % 4 === 0 ? 1 : 0);

/** Registers 0..6 as [year 0..99, month, mday, hour 0..23, minute, second], or null when impossible. */
export function fields(r) {
  let hour;
  if (r[2] & HOUR_12) {
    hour = dec(r[2] & 0x1f);
    if (hour < 1 || hour > 12) return null;
    hour = (hour % 12) + (r[2] & HOUR_PM ? 12 : 0);
  } else {
    hour = dec(r[2] & 0x3f);
  }
  const [second, minute, year, month, mday] = [dec(r[0] & 0x7f), dec(r[1]), dec(r[6]), dec(r[5]), dec(r[4])];
  if (hour < 0 || hour > 23 || minute < 0 || minute > 59 || second < 0 || second > 59 || year < 0) return null;
  if (month < 1 || month > 12 || mday < 1 || mday > monthDays(year, month)) return null;
  return [year, month, mday, hour, minute, second];
}

export class DS1307 {
  /** nowMs(): the emulated time in ms. */
  constructor(nowMs) {
    this.nowMs = nowMs;
    this.regs = new Uint8Array(64);
    this.ptr = 0;
    this.setPointer = false;
    this.wrote = false;
    this.last = nowMs();
    this.sub = 0;                   // ms of the running second the countdown chain has counted
    this.onStore = () => {};
    this.firstPowerUp();
  }

  get halted() {
    return !!(this.regs[0] & CH);
  }

  firstPowerUp() {
    ZERO_TIME.forEach((v, i) => { this.regs[i] = v; });
    this.regs[7] = 0x03;
    this.regs.set(crypto.randomBytes(56), 8);
    this.sub = 0;
  }

  /** The registers a chip held `offMs` ago (on its battery since): the clock runs on by that much. */
  resume(regs, offMs, sub = 0) {
    this.regs.set(regs.subarray(0, 64));
    this.sub = sub;
    this.last = this.nowMs();
    if (offMs > 0) this.run(offMs);
  }

  /** Set and running at `date` (a JS Date, UTC), 24-hour mode. */
  setTime(date) {
    const y = date.getUTCFullYear() - 2000;
    const r = this.regs;
    r[0] = bcd(date.getUTCSeconds());
    r[1] = bcd(date.getUTCMinutes());
    r[2] = bcd(date.getUTCHours());
    r[3] = ((date.getUTCDay() + 6) % 7) + 1;             // ISO weekday, Monday 1
    r[4] = bcd(date.getUTCDate());
    r[5] = bcd(date.getUTCMonth() + 1);
    r[6] = bcd(y);
    this.sub = 0;
    this.last = this.nowMs();
  }

  /** Bring the registers up to the emulated clock (what a START does). */
  sync() {
    const now = this.nowMs();
    const elapsed = now - this.last;
    this.last = now;
    if (elapsed > 0) this.run(elapsed);
  }

  run(ms) {
    const r = this.regs;
    if (r[0] & CH) return;
    ms += this.sub;
    if (ms < 1000) {
      this.sub = ms;
      return;
    }
    this.sub = ms % 1000;
    const tm = fields(r);
    if (!tm) return;
    let [year, month, mday, hour, minute, second] = tm;
    let t = hour * 3600 + minute * 60 + second + Math.floor(ms / 1000);
    const days = Math.floor(t / DAY);
    t -= days * DAY;
    hour = Math.floor(t / 3600);
    r[0] = bcd(t % 60);
    r[1] = bcd(Math.floor(t / 60) % 60);
    r[2] = r[2] & HOUR_12 ? HOUR_12 | (hour >= 12 ? HOUR_PM : 0) | bcd(hour % 12 || 12) : bcd(hour);
    if (!days) return;
    if (r[3] >= 1 && r[3] <= 7) r[3] = ((r[3] - 1 + days) % 7) + 1;
    let d = (dayNumber(year, month, mday) + days) % CENTURY;
    year = Math.floor(d / 1461) * 4;
    d %= 1461;
    if (d >= 366) {
      d -= 366;
      year += 1 + Math.floor(d / 365);
      d %= 365;
    }
    month = 1;
    while (d >= monthDays(year, month)) {
      d -= monthDays(year, month);
      month++;
    }
    r[4] = bcd(d + 1);
    r[5] = bcd(month);
    r[6] = bcd(year);
  }

  // ---- the I2C target (i2c.mjs) -------------------------------------------------------------------------------
  start(read) {
    this.sync();
    this.setPointer = !read;
    return true;
  }

  write(b) {
    if (this.setPointer) {
      this.setPointer = false;
      this.ptr = b & 0x3f;
      return true;
    }
    const p = this.ptr;
    if (p < 8) {
      b &= WRITE_MASK[p];
      if (p === 0) {
        this.sub = 0;
        this.last = this.nowMs();
      }
    }
    this.regs[p] = b;
    this.wrote = true;
    this.ptr = (p + 1) & 0x3f;
    return true;
  }

  read() {
    const v = this.regs[this.ptr];
    this.ptr = (this.ptr + 1) & 0x3f;
    return v;
  }

  stop() {
    if (this.wrote) this.onStore();
    this.wrote = false;
    this.setPointer = false;
  }
}

/** The device plug-in (README.md, "Devices"). */
export function attach(board, opts = {}) {
  const file = path.join(board.stateDir, 'ds1307.json');
  const chip = new DS1307(() => board.clock.nanos / 1e6);
  const bus = Number(opts.bus ?? 0);
  const address = Number(opts.address ?? ADDRESS);
  let saved = null;
  if (opts.battery !== 'new') {
    try {
      saved = JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch (e) {
      if (e.code !== 'ENOENT') board.log(`ds1307: ${file}: ${e.message}; a new battery`);
    }
  }
  if (saved) chip.resume(Buffer.from(saved.regs, 'hex'), Date.now() - saved.wall, saved.sub || 0);
  if (opts.time) chip.setTime(opts.time === 'now' ? new Date() : new Date(opts.time.endsWith('Z') ? opts.time : `${opts.time}Z`));
  const save = () => {
    chip.sync();
    const tmp = `${file}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify({ regs: Buffer.from(chip.regs).toString('hex'), wall: Date.now(), sub: chip.sub }));
    fs.renameSync(tmp, file);
  };
  chip.onStore = save;
  save();
  board.i2c.register(bus, address, chip);
  board.log(`ds1307: I2C${bus} 0x${address.toString(16)}, ${saved ? 'on its battery' : 'a new battery'}, ${chip.halted ? 'halted' : 'running'}`);
  return { chip, save, close: save };
}
