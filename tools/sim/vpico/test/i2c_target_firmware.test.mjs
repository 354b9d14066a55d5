// The real rp2 firmware on both ends: machine.I2CTarget(1, mem=...) on one RP2040, machine.I2C(1) on another, in
// one node process, joined by the wire (i2c_wire.mjs). Skipped when the image is not built.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { extendI2C } from '../i2c_target.mjs';
import { connectController, localPort } from '../i2c_wire.mjs';
import { Bench, Board, imagePaths } from './two_boards.mjs';

const paths = imagePaths();

const TARGET_SETUP = `
import machine
mem = bytearray(b'0123456789abcdef')
got = []
def h(t):
    got.append((t.irq().flags(), t.memaddr))
tgt = machine.I2CTarget(1, addr=0x42, mem=mem, scl=machine.Pin(7), sda=machine.Pin(6))
tgt.irq(h, machine.I2CTarget.IRQ_END_WRITE | machine.I2CTarget.IRQ_END_READ)
print('ready')
`;

const MASTER = `
import machine
i2c = machine.I2C(1, scl=machine.Pin(7), sda=machine.Pin(6), freq=100000)
i2c.writeto_mem(0x42, 2, b'HELLO')
print(bytes(i2c.readfrom_mem(0x42, 0, 10)))
try:
    i2c.writeto_mem(0x43, 0, b'x')
except OSError as e:
    print('nack', e.args[0])
`;

test('machine.I2C writeto_mem/readfrom_mem reach machine.I2CTarget on another RP2040; the IRQ handler runs',
  { skip: paths ? false : 'no rp2 image (tools/rp2/build.sh stock)', timeout: 180000 }, async () => {
    const master = new Board('master', paths);
    const target = new Board('target', paths);
    extendI2C(master.mcu.i2c[1]);
    extendI2C(target.mcu.i2c[1]);
    const link = connectController(master.mcu.i2c[1], localPort(target.mcu.i2c[1]),
      { addresses: [0x42], hold: () => master.hold() });
    const bench = new Bench([master, target]);
    await bench.boot(master);
    await bench.boot(target);
    let r = await bench.exec(target, TARGET_SETUP);
    assert.equal(r.err, '');
    assert.equal(r.out.trim(), 'ready');
    r = await bench.exec(master, MASTER);
    assert.equal(r.err, '', r.err);
    assert.deepEqual(r.out.trim().split(/\r?\n/), ["b'01HELLO789'", 'nack 5']);
    r = await bench.exec(target, 'print(bytes(mem)); print(got)');
    assert.equal(r.err, '', r.err);
    const [mem, got] = r.out.trim().split(/\r?\n/);
    assert.equal(mem, "b'01HELLO789abcdef'");
    // END_WRITE (32) for the 5-byte write at 2, END_READ (16) for the read at 0; none for the address-only write.
    assert.equal(got, '[(32, 2), (16, 0)]');
    console.log(`wire: ${JSON.stringify(link.stats)}; target: ${JSON.stringify(target.mcu.i2c[1].stats)}`);
  });
