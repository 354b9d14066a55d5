// I2C target mode on rp2040js (i2c_target.mjs) and the wire (i2c_wire.mjs), driven through the registers the way
// MicroPython v1.27's ports/rp2/machine_i2c_target.c (target) and pico-sdk's hardware_i2c (controller) drive them.
// Run: node --test tools/sim/vpico/test/
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { RP2040 } from 'rp2040js';

import { extendI2C } from '../i2c_target.mjs';
import { connectController, listenTarget, localPort, socketPort } from '../i2c_wire.mjs';

// Register offsets and bits (RP2040 datasheet 4.3.17).
const CON = 0x00, TAR = 0x04, SAR = 0x08, DATA_CMD = 0x10, INTR_STAT = 0x2c, INTR_MASK = 0x30, RAW = 0x34;
const RX_TL = 0x38, TX_TL = 0x3c, CLR_INTR = 0x40, CLR_RD_REQ = 0x50, CLR_TX_ABRT = 0x54, CLR_RX_DONE = 0x58;
const CLR_STOP_DET = 0x60, CLR_START_DET = 0x64, ENABLE = 0x6c, STATUS = 0x70, RXFLR = 0x78, ABRT_SRC = 0x80;
const CLR_RESTART_DET = 0xa8;
const RX_FULL = 1 << 2, TX_EMPTY = 1 << 4, RD_REQ = 1 << 5, TX_ABRT = 1 << 6, RX_DONE = 1 << 7;
const STOP_DET = 1 << 9, START_DET = 1 << 10, RESTART_DET = 1 << 12;
const RFNE = 1 << 3, TFNF = 1 << 1, SLV_ACTIVITY = 1 << 6;
const I2C1_IRQ = 24;

function board() {
  const mcu = new RP2040();
  const i2c = extendI2C(mcu.i2c[1]);
  return { mcu, i2c, r: (o) => i2c.readUint32(o), w: (o, v) => i2c.writeUint32(o, v) };
}

/** i2c_target_init() of machine_i2c_target.c, register for register. */
function targetInit(b, addr) {
  b.w(ENABLE, 0);
  b.w(CON, (1 << 9) | (1 << 7));       // RX_FIFO_FULL_HLD_CTRL | STOP_DET_IFADDRESSED: slave mode
  b.w(SAR, addr);
  b.w(TX_TL, 1);
  b.w(RX_TL, 0);
  b.r(CLR_INTR);
  b.w(INTR_MASK, START_DET | STOP_DET | RX_DONE | TX_ABRT | RD_REQ | RX_FULL);
  b.w(ENABLE, 1);
}

/** A memory-mode target driver in JS: the handler flow of machine_i2c_target.c + extmod's state machine, so the
 * peripheral is exercised the way the real firmware exercises it. */
function memTarget(b, mem) {
  const d = { state: 'idle', port: 'idle', addr: 0, count: 0, events: [], stopPending: false };
  const event = (e) => d.events.push(e);
  const reset = () => {
    if (d.state === 'reading') event('end_read');
    else if (d.state === 'match_write' || d.state === 'writing') event('end_write');
    d.state = 'idle';
  };
  const match = (read) => {
    reset();
    d.state = read ? 'match_read' : 'match_write';
  };
  const readBytes = () => {
    const out = [];
    while (out.length < 4 && (b.r(STATUS) & RFNE)) out.push(b.r(DATA_CMD) & 0xff);
    b.w(INTR_MASK, b.r(INTR_MASK) | RX_FULL);
    checkStopPending();
    return out;
  };
  const checkStopPending = () => {
    if (d.active || !d.stopPending || (b.r(STATUS) & RFNE)) return;
    d.stopPending = false;
    d.port = 'idle';
    reset();
  };
  const writeRequest = () => {
    for (const v of readBytes()) {
      if (d.state === 'match_write') {
        d.state = 'addr';
        d.addr = 0;
        d.count = 1;
      }
      if (d.state === 'addr' && d.count) {
        d.addr = v % mem.length;
        d.count = 0;
      } else {
        d.state = 'writing';
        mem[d.addr] = v;
        d.addr = (d.addr + 1) % mem.length;
      }
    }
  };
  const readRequest = () => {
    d.state = 'reading';
    const v = mem[d.addr];
    d.addr = (d.addr + 1) % mem.length;
    if (b.r(STATUS) & TFNF) b.w(DATA_CMD, v);
    b.w(INTR_MASK, b.r(INTR_MASK) | RD_REQ);
  };
  d.service = () => {
    if (!(b.mcu.core.pendingInterrupts & (1 << I2C1_IRQ))) return false;
    d.active = true;
    const st = b.r(INTR_STAT);
    if (st & TX_ABRT) b.r(CLR_TX_ABRT);
    if (st & START_DET) {
      b.r(CLR_START_DET);
      if (d.port !== 'idle') {
        reset();
        d.port = 'idle';
      }
    }
    if (st & RX_FULL) {
      b.w(INTR_MASK, b.r(INTR_MASK) & ~RX_FULL);
      if (d.port !== 'writing') match(false);
      writeRequest();
      d.port = 'writing';
    }
    if (st & (RD_REQ | RX_DONE)) {
      b.r(CLR_RX_DONE);
      b.r(CLR_RD_REQ);
      b.w(INTR_MASK, b.r(INTR_MASK) & ~RD_REQ);
      if (d.port !== 'reading') match(true);
      readRequest();
      d.port = 'reading';
    }
    if (st & STOP_DET) {
      b.r(CLR_STOP_DET);
      if (d.port === 'idle') match(false);
      if (b.r(STATUS) & RFNE) d.stopPending = true;
      else {
        reset();
        d.port = 'idle';
      }
    }
    d.active = false;
    checkStopPending();
    return true;
  };
  return d;
}

/** pico-sdk's i2c_write_blocking_internal / i2c_read_blocking_internal as async JS over the registers; `idle()`
 * lets the other side run between polls. Returns the byte count or 'EIO'. */
async function sdkWrite(b, addr, bytes, nostop, idle, restart = false) {
  b.w(ENABLE, 0);
  b.w(TAR, addr);
  b.w(ENABLE, 1);
  for (let i = 0; i < bytes.length; i++) {
    const last = i === bytes.length - 1;
    b.w(DATA_CMD, ((i === 0 && restart) ? 1 << 10 : 0) | ((last && !nostop) ? 1 << 9 : 0) | bytes[i]);
    await until(() => b.r(RAW) & TX_EMPTY, idle);
    const reason = b.r(ABRT_SRC);
    if (reason) {
      b.r(CLR_TX_ABRT);
      await until(() => b.r(RAW) & STOP_DET, idle);
      b.r(CLR_STOP_DET);
      return 'EIO';
    }
    if (last && !nostop) {
      await until(() => b.r(RAW) & STOP_DET, idle);
      b.r(CLR_STOP_DET);
    }
  }
  return bytes.length;
}

async function sdkRead(b, addr, n, idle, restart = true) {
  b.w(ENABLE, 0);
  b.w(TAR, addr);
  b.w(ENABLE, 1);
  const out = [];
  for (let i = 0; i < n; i++) {
    b.w(DATA_CMD, ((i === 0 && restart) ? 1 << 10 : 0) | (i === n - 1 ? 1 << 9 : 0) | (1 << 8));
    let abort = false;
    await until(() => {
      if (b.r(RAW) & TX_ABRT) {
        abort = true;
        b.r(CLR_TX_ABRT);
      }
      return abort || b.r(RXFLR);
    }, idle);
    if (abort) return 'EIO';
    out.push(b.r(DATA_CMD) & 0xff);
  }
  return out;
}

async function until(cond, idle, limit = 20000) {
  for (let i = 0; i < limit; i++) {
    if (cond()) return;
    idle();
    await new Promise((r) => setImmediate(r));
  }
  throw new Error('timeout');
}

test('address match, START_DET and the interrupt line to the NVIC', () => {
  const t = board();
  targetInit(t, 0x42);
  assert.equal(t.i2c.busStart(0x43, false, false), false, 'another address is NACKed');
  assert.ok(t.r(RAW) & START_DET, 'START_DET is set for any START on the bus');
  t.r(CLR_START_DET);
  assert.equal(t.i2c.busStart(0x42, false, false), true);
  assert.ok(t.r(INTR_STAT) & START_DET);
  assert.ok(t.mcu.core.pendingInterrupts & (1 << I2C1_IRQ), 'I2C1_IRQ pending');
  assert.ok(t.r(STATUS) & SLV_ACTIVITY);
  t.i2c.busStart(0x42, true, true);
  assert.ok(t.r(RAW) & RESTART_DET, 'RESTART_DET at a repeated START while addressed');
  t.r(CLR_RESTART_DET);
  assert.equal(t.r(RAW) & RESTART_DET, 0);
  t.i2c.busStop();
  assert.ok(t.r(RAW) & STOP_DET);
  t.r(CLR_STOP_DET);
  t.i2c.busStart(0x10, false, false);
  t.i2c.busStop();
  assert.equal(t.r(RAW) & STOP_DET, 0, 'STOP_DET_IFADDRESSED: no STOP_DET when another target was addressed');
  t.r(CLR_INTR);
  assert.equal(t.mcu.core.pendingInterrupts & (1 << I2C1_IRQ), 0, 'the line drops when nothing is pending');
});

test('a controller (master mode) never matches: the target side NACKs', () => {
  const t = board();
  t.w(SAR, 0x42);
  t.w(ENABLE, 1);
  assert.equal(t.i2c.busStart(0x42, false, false), false);
});

test('RX FIFO: RX_FULL as a level, clock stretching on a full FIFO with RX_FIFO_FULL_HLD_CTRL', () => {
  const t = board();
  targetInit(t, 0x42);
  t.i2c.busStart(0x42, false, false);
  const acks = [];
  for (let i = 0; i < 17; i++) t.i2c.busWrite(i, (ack) => acks.push([i, ack]));
  assert.equal(acks.length, 16, 'the 17th byte is held (SCL low) while the FIFO is full');
  assert.equal(t.r(RXFLR), 16);
  assert.ok(t.r(RAW) & RX_FULL);
  assert.equal(t.r(DATA_CMD), 0);
  assert.deepEqual(acks[16], [16, true], 'reading one byte releases the held one');
  for (let i = 1; i < 17; i++) {
    assert.ok(t.r(RAW) & RX_FULL, 'still above RX_TL');
    assert.equal(t.r(DATA_CMD), i);
  }
  assert.equal(t.r(RAW) & RX_FULL, 0, 'cleared by hardware once the FIFO is at RX_TL');
});

test('RD_REQ holds a read until the firmware writes IC_DATA_CMD; RX_DONE at the NACKed last byte', () => {
  const t = board();
  targetInit(t, 0x42);
  assert.ok(t.i2c.busStart(0x42, true, false));
  let got = null;
  t.i2c.busRead(true, (v) => { got = v; });
  assert.equal(got, null);
  assert.ok(t.r(INTR_STAT) & RD_REQ);
  t.r(CLR_RD_REQ);
  t.w(DATA_CMD, 0x1a5);                 // the CMD bit means nothing to a slave
  assert.equal(got, 0xa5);
  t.i2c.busRead(false, (v) => { got = v; });
  t.w(DATA_CMD, 0x5a);
  assert.equal(got, 0x5a);
  assert.ok(t.r(RAW) & RX_DONE);
});

test('data left in the TX FIFO is flushed with TX_ABRT at the next read; no data until IC_CLR_TX_ABRT', () => {
  const t = board();
  targetInit(t, 0x42);
  t.w(DATA_CMD, 0x11);                  // stale: e.g. the byte pushed for RX_DONE by machine_i2c_target.c
  t.i2c.busStart(0x42, true, false);
  assert.ok(t.r(RAW) & TX_ABRT);
  assert.ok(t.r(ABRT_SRC) & (1 << 13), 'ABRT_SLVFLUSH_TXFIFO');
  let got = null;
  t.i2c.busRead(false, (v) => { got = v; });
  t.w(DATA_CMD, 0x22);
  assert.equal(got, null, 'the write is dropped in the flushed state');
  t.r(CLR_TX_ABRT);
  t.w(DATA_CMD, 0x33);
  assert.equal(got, 0x33);
});

test('controller: a NACKed address sets TX_ABRT with ABRT_7B_ADDR_NOACK and TX_EMPTY; the source survives reads', () => {
  const m = board();
  m.w(ENABLE, 0);
  m.w(TAR, 0x42);
  m.w(ENABLE, 1);
  m.w(DATA_CMD, 0x200 | 0x00);          // default hooks: nobody ACKs
  assert.ok(m.r(RAW) & TX_EMPTY, 'TX_EMPTY after the abort flushed the FIFO');
  assert.ok(m.r(RAW) & TX_ABRT);
  assert.equal(m.r(ABRT_SRC) & 1, 1);
  assert.equal(m.r(ABRT_SRC) & 1, 1, 'IC_TX_ABRT_SOURCE is not clear-on-read');
  m.r(CLR_TX_ABRT);
  assert.equal(m.r(ABRT_SRC), 0);
  assert.ok(m.r(RAW) & STOP_DET);
});

async function pairExchange(portFor, { hold } = {}) {
  const m = board();
  const t = board();
  targetInit(t, 8);
  const mem = new Uint8Array(144);
  const drv = memTarget(t, mem);
  const link = connectController(m.i2c, portFor(t.i2c), { addresses: [8], hold });
  const idle = () => { while (drv.service()); };
  const beat = Array.from(Buffer.from('B1,bed-1-a,3,17,1764700000,1,active*0badf00d\n'));
  assert.equal(await sdkWrite(m, 8, [0, ...beat], false, idle), beat.length + 1);
  await until(() => drv.events.includes('end_write'), idle);
  assert.deepEqual(Array.from(mem.subarray(0, beat.length)), beat);
  mem.set(Buffer.from('S1,watching,0,0*12345678\n'), 96);
  assert.equal(await sdkWrite(m, 8, [96], true, idle), 1);          // readfrom_mem: address, no STOP
  const got = await sdkRead(m, 8, 48, idle, true);                  // repeated START, 48 bytes, STOP
  await until(() => drv.events.includes('end_read'), idle);
  assert.deepEqual(got, Array.from(mem.subarray(96, 144)));
  assert.deepEqual(drv.events, ['end_write', 'end_read'],
    'one END_WRITE for the beat, none for the address-only write, one END_READ');
  assert.equal(await sdkWrite(m, 9, [0, 1], false, idle), 'EIO', 'no target at 9');
  return { m, t, link };
}

test('two RP2040 instances in one process: writeto_mem and readfrom_mem through the wire', async () => {
  const { link, t } = await pairExchange((ti) => localPort(ti, { khz: 0 }));
  assert.equal(link.stats.transactions, 3);
  assert.ok(t.i2c.stats.rdReq >= 48, 'every byte read raised RD_REQ');
});

test('across a Unix socket; a dead peer is a NACK (EIO), a peer that comes back is heard again', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pair-wire-'));
  const sockPath = path.join(dir, 'hb.sock');
  let server = null;
  const port = socketPort(sockPath);
  try {
    await pairExchange((ti) => {
      server = listenTarget(ti, sockPath, { khz: 0 });
      return port;
    });
    server.close();
    port.close();
    const m = board();
    connectController(m.i2c, port, { addresses: [8] });
    assert.equal(await sdkWrite(m, 8, [0, 1, 2], false, () => {}), 'EIO', 'nobody listens: NACK');
    const t = board();
    targetInit(t, 8);
    const mem = new Uint8Array(16);
    const drv = memTarget(t, mem);
    server = listenTarget(t.i2c, sockPath, { khz: 0 });
    assert.equal(await sdkWrite(m, 8, [2, 7, 7], false, () => { while (drv.service()); }), 3);
    assert.deepEqual(Array.from(mem.subarray(2, 4)), [7, 7]);
  } finally {
    server && server.close();
    port.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
