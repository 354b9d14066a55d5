// The wire between two virtual Picos: one board's I2C controller carried to another board's I2C target, each
// board an rp2040js RP2040, in one node process or two.
//
// A controller's transaction is a sequence of bus events (START + address, data bytes, repeated START, reads,
// STOP). The controller side (`connectController`) takes rp2040js's controller hooks of one RPI2C for the
// addresses it serves and turns them into calls on a *port*; the target side is an RPI2CTarget (i2c_target.mjs),
// reached through a port:
//
//   port.start(address, read, repeated) -> Promise<ack>     the address phase: a dead peer is a NACK
//   port.write(byte)                                        posted: a DW_apb_i2c target ACKs data in hardware
//   port.read(ack) -> Promise<byte>                         one byte out of the target, then our ACK/NACK
//   port.stop() -> Promise                                  resolves when the target has taken every byte
//
// Lock step: while a port call is outstanding the controller's board is held (`hold()`: its CPU executes nothing
// and its clock stands still), as a stretched SCL holds a real controller's transaction; the firmware sees the
// transaction take no emulated time, whatever the other process costs in wall time. Data bytes are posted (the
// controller side ACKs them at once and the target takes them in order, stretching when its RX FIFO is full) and
// synchronised at the STOP or repeated START, so a 96-byte write costs two round trips, not 97. The one thing a
// posted write cannot show is a target that NACKs data (IC_SLV_DATA_NACK_ONLY, disabled mid-transfer): the
// controller sees ACKs. MicroPython's I2CTarget never does either.
//
// Across processes the port is a Unix stream socket (`listenTarget` on the target's board, `socketPort` on the
// controller's): small binary messages, replies in order. No socket (the other board's process is not running)
// and a connection lost mid-transaction both read as on a real wire with the other board unpowered: the address is
// NACKed, a byte being read reads as 0xff.
//
//   controller -> target            target -> controller
//   'S' a_hi a_lo flags             'A' ack              flags: bit 0 read, bit 1 repeated START
//   'W' byte                        (none)
//   'R' ack                         'D' byte
//   'P'                             'p'

import fs from 'node:fs';
import net from 'node:net';

const S = 0x53, W = 0x57, R = 0x52, P = 0x50, A = 0x41, D = 0x44, Pr = 0x70;
const MSG_LEN = { [S]: 4, [W]: 2, [R]: 2, [P]: 1 };

/** Serialise bus events onto one RPI2CTarget: each waits for the one before (a held byte holds the bus), and for
 * the target's interrupt handler to have seen it. A byte takes 9 SCL periods on a real wire (the address 10 with
 * START and ACK), time in which the target's ISR runs; the emulated wire itself takes no time, so without spacing a
 * controller delivers a STOP and the next START before the target's handler ran once, which no target sees on a
 * real bus (readfrom_mem then read from the wrong address). So the next event waits until the target is idle with
 * no enabled I2C interrupt pending (its handler is done: the usual case, well under a byte time), or until the
 * event's bus time at `khz` has passed on the target's clock (a target busy with interrupts off: as on a real bus,
 * the hardware goes on without the software). `kick()` wakes the target's run loop; khz 0: no spacing (tests
 * that drive the registers by hand). */
export class TargetEndpoint {
  constructor(target, { khz = 100, kick = () => {} } = {}) {
    this.target = target;
    this.queue = [];
    this.busy = false;
    this.kick = kick;
    this.core = target.rp2040.core;
    this.clock = khz ? target.rp2040.clock : null;
    this.bitNs = khz ? 1e6 / khz : 0;
    this.readyAt = 0;
    this.alarm = this.clock ? this.clock.createAlarm(() => this.pump()) : null;
    this.polling = false;
  }

  settled() {
    return this.core.waiting && !this.target.intStatus;
  }

  wait() {
    this.alarm.schedule(this.readyAt - this.clock.nanos);
    if (!this.polling) {
      this.polling = true;
      setImmediate(() => {
        this.polling = false;
        this.pump();
      });
    }
  }

  /** Queue an event; `reply(value)` is called when the target answers (ack, byte, or undefined). */
  post(kind, args, reply) {
    this.queue.push({ kind, args, reply });
    if (!this.busy) this.pump();
  }

  spend(bits) {
    if (this.clock) this.readyAt = this.clock.nanos + bits * this.bitNs;
  }

  pump() {
    while (this.queue.length && !this.busy) {
      if (this.clock && this.clock.nanos < this.readyAt && !this.settled()) {
        this.wait();                 // the target runs (its ISR) meanwhile
        return;
      }
      if (this.alarm) this.alarm.cancel();
      const { kind, args, reply } = this.queue.shift();
      const t = this.target;
      if (kind === 'start') {
        this.spend(10);
        reply && reply(t.busStart(args[0], args[1], args[2]));
        continue;
      }
      if (kind === 'stop') {
        this.spend(2);
        t.busStop();
        reply && reply();
        continue;
      }
      if (kind === 'idle') {
        t.busIdle();
        continue;
      }
      this.busy = true;
      let sync = true;
      const done = (value) => {
        this.busy = false;
        this.spend(9);
        reply && reply(value);
        if (!sync) this.pump();
      };
      if (kind === 'write') t.busWrite(args[0], done);
      else t.busRead(args[0], done);
      sync = false;
    }
    this.kick();                     // an interrupt may be pending now: do not let the board sleep on it
  }

  /** Forget what is queued (the controller went away): the target sees the bus go quiet, no STOP. */
  drop() {
    for (const { kind, reply } of this.queue) {
      if (reply) reply(kind === 'start' ? false : kind === 'read' ? 0xff : undefined);
    }
    this.queue = [];
    if (this.alarm) this.alarm.cancel();
    this.target.busIdle();         // releases a held byte (busy ends with it)
  }
}

/** A port onto a target in the same process (two RP2040 instances in one node process). */
export function localPort(target, opts) {
  const ep = new TargetEndpoint(target, opts);
  return {
    start: (address, read, repeated) => new Promise((resolve) => ep.post('start', [address, read, repeated], resolve)),
    write: (byte) => ep.post('write', [byte], null),
    read: (ack) => new Promise((resolve) => ep.post('read', [ack], resolve)),
    stop: () => new Promise((resolve) => ep.post('stop', [], resolve)),
    endpoint: ep,
  };
}

/** Take `i2c`'s controller hooks for `addresses` (a Set or array) and carry them to `port`. Transactions to any
 * other address go to the hooks that were there before (a router's, the published defaults). `hold()` stops the
 * controller's board until the returned function is called. Returns {stats, restore()}. */
export function connectController(i2c, port, { addresses, hold = () => () => {} } = {}) {
  const ours = new Set(addresses);
  const prev = {
    onStart: i2c.onStart, onConnect: i2c.onConnect, onWriteByte: i2c.onWriteByte,
    onReadByte: i2c.onReadByte, onStop: i2c.onStop,
  };
  const stats = { transactions: 0, nacks: 0, bytesWritten: 0, bytesRead: 0, heldMs: 0, waits: 0 };
  let mine = false;        // the transaction in progress is addressed to the port
  let talked = false;      // the port saw a START since the last STOP
  let repeated = false;

  const wait = (promise, then) => {
    const release = hold();
    const t0 = performance.now();
    stats.waits++;
    promise.then((value) => {
      stats.heldMs += performance.now() - t0;
      release();
      then(value);
    });
  };

  i2c.onStart = (restart) => {
    repeated = !!restart;
    if (!restart) mine = false;
    i2c.completeStart();
  };
  i2c.onConnect = (address, mode) => {
    const read = mode === 1;
    if (!ours.has(address)) {
      mine = false;
      return prev.onConnect.call(i2c, address, mode);
    }
    mine = true;
    talked = true;
    stats.transactions++;
    wait(port.start(address, read, repeated), (ack) => {
      if (!ack) stats.nacks++;
      i2c.completeConnect(!!ack);
    });
  };
  i2c.onWriteByte = (value) => {
    if (!mine) return prev.onWriteByte.call(i2c, value);
    stats.bytesWritten++;
    port.write(value & 0xff);
    i2c.completeWrite(true);
  };
  i2c.onReadByte = (ack) => {
    if (!mine) return prev.onReadByte.call(i2c, ack);
    stats.bytesRead++;
    wait(port.read(!!ack), (value) => i2c.completeRead(value & 0xff));
  };
  i2c.onStop = () => {
    if (!talked) return prev.onStop.call(i2c);
    talked = false;
    mine = false;
    wait(port.stop(), () => i2c.completeStop());
  };
  return {
    stats,
    restore() {
      Object.assign(i2c, prev);
    },
  };
}

// --- across processes: a Unix stream socket ----------------------------------------------------------------------

/** Serve `target` (an RPI2CTarget) on the Unix socket `path` (a stale socket file is replaced). Returns
 * {close(), stats}. */
export function listenTarget(target, path, { log = () => {}, khz = 100, kick } = {}) {
  const ep = new TargetEndpoint(target, { khz, kick });
  const stats = { connections: 0, messages: 0 };
  try {
    fs.unlinkSync(path);
  } catch (e) {
    if (e.code !== 'ENOENT') throw e;
  }
  const server = net.createServer((sock) => {
    stats.connections++;
    sock.setNoDelay?.(true);
    let buf = Buffer.alloc(0);
    let alive = true;
    const send = (bytes) => {
      if (alive) sock.write(Buffer.from(bytes));
    };
    sock.on('data', (chunk) => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      let i = 0;
      while (i < buf.length) {
        const kind = buf[i];
        const n = MSG_LEN[kind];
        if (!n) {
          log(`i2c wire: bad message 0x${kind.toString(16)}; closing the connection`);
          sock.destroy();
          return;
        }
        if (i + n > buf.length) break;
        stats.messages++;
        if (kind === S) {
          const address = (buf[i + 1] << 8) | buf[i + 2];
          const flags = buf[i + 3];
          ep.post('start', [address, !!(flags & 1), !!(flags & 2)], (ack) => send([A, ack ? 1 : 0]));
        } else if (kind === W) {
          ep.post('write', [buf[i + 1]], null);
        } else if (kind === R) {
          ep.post('read', [!!buf[i + 1]], (value) => send([D, value & 0xff]));
        } else {
          ep.post('stop', [], () => send([Pr]));
        }
        i += n;
      }
      buf = buf.subarray(i);
    });
    const gone = () => {
      if (!alive) return;
      alive = false;
      ep.drop();                 // the controller's board lost power: no STOP, the next START resets
    };
    sock.on('close', gone);
    sock.on('error', gone);
  });
  server.listen(path);
  return {
    stats,
    server,
    close() {
      server.close();
      try {
        fs.unlinkSync(path);
      } catch {
        // already gone
      }
    },
  };
}

/** A port onto the target served at the Unix socket `path`. It connects at a START when not connected; no socket,
 * a refused or lost connection is a NACK (reads give 0xff). */
export function socketPort(path, { log = () => {} } = {}) {
  let sock = null;
  let connecting = null;
  let pending = [];     // resolvers for replies, in order
  let buf = Buffer.alloc(0);
  const stats = { connects: 0, refused: 0, lost: 0 };

  const fail = (why) => {
    if (sock) stats.lost++;
    sock = null;
    const waiting = pending;
    pending = [];
    for (const p of waiting) p.resolve(p.kind === A ? 0 : p.kind === D ? 0xff : undefined);
    if (why) log(why);
  };

  const connect = () => {
    if (sock) return Promise.resolve(true);
    if (connecting) return connecting;
    connecting = new Promise((resolve) => {
      const s = net.createConnection(path);
      s.setNoDelay?.(true);
      s.once('connect', () => {
        stats.connects++;
        sock = s;
        connecting = null;
        resolve(true);
      });
      s.on('data', (chunk) => {
        buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
        let i = 0;
        while (i < buf.length) {
          const kind = buf[i];
          const n = kind === Pr ? 1 : 2;
          if (i + n > buf.length) break;
          const p = pending.shift();
          if (p) p.resolve(kind === Pr ? undefined : buf[i + 1]);
          i += n;
        }
        buf = buf.subarray(i);
      });
      s.on('error', () => {
        if (connecting) {
          stats.refused++;
          connecting = null;
          resolve(false);
        } else if (sock === s) {
          fail();
        }
      });
      s.on('close', () => {
        if (sock === s) fail();
      });
    });
    return connecting;
  };

  const request = (bytes, kind) => new Promise((resolve) => {
    if (!sock) {
      resolve(kind === A ? 0 : kind === D ? 0xff : undefined);
      return;
    }
    pending.push({ kind, resolve });
    sock.write(Buffer.from(bytes));
  });

  return {
    stats,
    async start(address, read, repeated) {
      if (!(await connect())) return false;
      return !!(await request([S, (address >> 8) & 0xff, address & 0xff, (read ? 1 : 0) | (repeated ? 2 : 0)], A));
    },
    write(byte) {
      if (sock) sock.write(Buffer.from([W, byte & 0xff]));
    },
    read(ack) {
      return request([R, ack ? 1 : 0], D);
    },
    stop() {
      return request([P], Pr);
    },
    close() {
      if (sock) sock.destroy();
      sock = null;
    },
  };
}
