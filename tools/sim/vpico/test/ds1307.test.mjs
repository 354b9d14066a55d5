// The DS1307 model's datasheet rules, driven as the I2C router drives it (start/write/read/stop).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DS1307, fields } from '../devices/ds1307.mjs';

function chip() {
  const clock = { ms: 0 };
  return { clock, rtc: new DS1307(() => clock.ms) };
}

function writeRegs(rtc, at, bytes) {
  rtc.start(false);
  rtc.write(at);
  for (const b of bytes) rtc.write(b);
  rtc.stop();
}

function readRegs(rtc, at, n) {
  rtc.start(false);
  rtc.write(at);
  rtc.start(true);                          // repeated START, as readfrom_mem does
  const out = [];
  for (let i = 0; i < n; i++) out.push(rtc.read());
  rtc.stop();
  return out;
}

test('a first power-up is halted at 2000-01-01 00:00:00 with control 0x03', () => {
  const { clock, rtc } = chip();
  assert.deepEqual(readRegs(rtc, 0, 8), [0x80, 0, 0, 1, 1, 1, 0, 0x03]);
  clock.ms += 5000;
  assert.deepEqual(readRegs(rtc, 0, 1), [0x80]);           // CH: the time does not move
});

test('BCD counting carries a running clock into a new year, the day of week too', () => {
  const { clock, rtc } = chip();
  writeRegs(rtc, 0, [0x55, 0x59, 0x23, 0x04, 0x31, 0x12, 0x26]);   // Thu 2026-12-31 23:59:55
  clock.ms += 7000;
  assert.deepEqual(readRegs(rtc, 0, 7), [0x02, 0x00, 0x00, 0x05, 0x01, 0x01, 0x27]);
});

test('February 29th exists in leap years only', () => {
  const { clock, rtc } = chip();
  writeRegs(rtc, 0, [0x59, 0x59, 0x23, 0x01, 0x28, 0x02, 0x28]);   // 2028-02-28 23:59:59
  clock.ms += 1000;
  assert.deepEqual(readRegs(rtc, 4, 3), [0x29, 0x02, 0x28]);
  writeRegs(rtc, 0, [0x59, 0x59, 0x23, 0x01, 0x28, 0x02, 0x27]);   // 2027-02-28 23:59:59
  clock.ms += 1000;
  assert.deepEqual(readRegs(rtc, 4, 3), [0x01, 0x03, 0x27]);
});

test('12-hour mode: 11:59:59 PM becomes 12:00:00 AM of the next day', () => {
  const { clock, rtc } = chip();
  writeRegs(rtc, 0, [0x59, 0x59, 0x40 | 0x20 | 0x11, 0x01, 0x01, 0x01, 0x27]);
  clock.ms += 1000;
  assert.deepEqual(readRegs(rtc, 0, 5), [0x00, 0x00, 0x40 | 0x12, 0x02, 0x02]);
});

test('a seconds write resets the countdown: the next tick is a full second later', () => {
  const { clock, rtc } = chip();
  writeRegs(rtc, 0, [0x00, 0x00, 0x12]);
  clock.ms += 700;
  writeRegs(rtc, 0, [0x10]);
  clock.ms += 900;
  assert.deepEqual(readRegs(rtc, 0, 1), [0x10]);
  clock.ms += 100;
  assert.deepEqual(readRegs(rtc, 0, 1), [0x11]);
});

test('the pointer wraps from 0x3F to 0x00; RAM keeps what is written; masked bits read 0', () => {
  const { rtc } = chip();
  writeRegs(rtc, 0x3e, [0xaa, 0xbb]);
  assert.deepEqual(readRegs(rtc, 0x3e, 3), [0xaa, 0xbb, 0x80]);
  writeRegs(rtc, 7, [0xff]);
  assert.deepEqual(readRegs(rtc, 7, 1), [0x93]);
});

test('impossible values are left alone while the clock runs', () => {
  const { clock, rtc } = chip();
  writeRegs(rtc, 0, [0x00, 0x00, 0x00, 0x01, 0x30, 0x02, 0x27]);   // Feb 30
  assert.equal(fields(rtc.regs), null);
  clock.ms += 3000;
  assert.deepEqual(readRegs(rtc, 0, 1), [0x00]);
});

test('resume: on its battery the clock ran while the board was off', () => {
  const { rtc } = chip();
  const saved = Uint8Array.from([0x00, 0x00, 0x12, 0x03, 0x02, 0x12, 0x26, 0x03, ...new Array(56).fill(7)]);
  rtc.resume(saved, 3600 * 1000 + 500);
  assert.deepEqual(readRegs(rtc, 0, 3), [0x00, 0x00, 0x13]);
  assert.equal(rtc.sub, 500);
});
