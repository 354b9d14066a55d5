/**
 * `--device wire`: this board's end of an I2C wire to another virtual Pico (a redundant pair's heartbeat wire:
 * boards.py PICO hb_i2c = I2C1 on GP6/GP7). One board is the target, the other the controller:
 *
 *   --device wire --opt wire.listen=SOCK                   the target's side: machine.I2CTarget(1, ...) answers
 *   --device wire --opt wire.peer=SOCK [--opt wire.address=8]
 *                                                          the controller's side: machine.I2C(1) transfers to
 *                                                          `address` go to the board listening on SOCK
 *   --opt wire.bus=1                                       the peripheral (default 1, the pair's wire)
 *   --opt wire.khz=100                                     the bus speed that spaces events on a busy target
 *
 * On the controller's board a file DIR/wire.cut (DIR: its state folder) cuts the wire while it exists: every START
 * to the peer is NACKed and the peer hears nothing, as with SDA/SCL pulled off (both boards stay up).
 *
 * SOCK is a Unix socket path (i2c_wire.mjs has the protocol). Both sides get the I2C target mode and the
 * controller fixes of i2c_target.mjs on that peripheral. A controller whose peer is not running sees a NACK on the
 * address (machine.I2C raises OSError(EIO), as on a Pico whose standby is unpowered); it reconnects at the next
 * START once the peer is back. While a transfer waits for the peer the controller's CPU and clock stand still
 * (board.hold()), as a stretched SCL holds the transfer. Transfers to other addresses on the bus stay with the
 * board's I2C router (chips registered on it).
 */
import fs from 'node:fs';
import path from 'node:path';

import { extendI2C } from '../i2c_target.mjs';
import { connectController, listenTarget, socketPort } from '../i2c_wire.mjs';

function int(opts, key, dflt) {
  if (opts[key] === undefined) return dflt;
  const v = Number(opts[key]);
  if (!Number.isInteger(v) || v < 0) throw new Error(`--opt wire.${key}=${opts[key]}: a whole number`);
  return v;
}

export function attach(board, opts) {
  const bus = int(opts, 'bus', 1);
  if (bus > 1) throw new Error(`--opt wire.bus=${bus}: the RP2040 has I2C0 and I2C1`);
  if (!opts.listen === !opts.peer) throw new Error('--device wire: give --opt wire.listen=SOCK (target) or wire.peer=SOCK (controller)');
  const i2c = extendI2C(board.mcu.i2c[bus]);
  const log = (m) => board.log(`wire: ${m}`);
  if (opts.listen) {
    const server = listenTarget(i2c, opts.listen, { khz: int(opts, 'khz', 100), kick: board.kick || (() => {}), log });
    log(`I2C${bus} target side on ${opts.listen}`);
    return {
      close() {
        server.close();
      },
    };
  }
  const address = int(opts, 'address', 8);
  const port = socketPort(opts.peer, { log });
  // DIR/wire.cut present: the wire is cut at this board (every START to the peer is NACKed, the peer hears nothing).
  const cut = path.join(board.stateDir, 'wire.cut');
  const start = port.start;
  port.start = (...a) => (fs.existsSync(cut) ? Promise.resolve(false) : start(...a));
  const link = connectController(i2c, port, { addresses: [address], hold: board.hold || (() => () => {}) });
  log(`I2C${bus} 0x${address.toString(16)} -> ${opts.peer}`);
  // DIR/wire.json: what the wire cost (transactions, wall ms the CPU stood still waiting for the peer).
  const file = path.join(board.stateDir, 'wire.json');
  const save = () => {
    fs.writeFileSync(`${file}.tmp`, JSON.stringify({ ...link.stats, ...port.stats, emulated_s: board.clock.nanos / 1e9 }));
    fs.renameSync(`${file}.tmp`, file);
  };
  const timer = setInterval(save, 1000);
  timer.unref();
  return {
    save,
    close() {
      clearInterval(timer);
      port.close();
    },
  };
}
