// UF2 blocks land at their flash offsets; anything else is refused in one message.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadUF2, RP2040_FAMILY } from '../uf2.mjs';

function block(addr, data, { family = RP2040_FAMILY, flags = 0x2000 } = {}) {
  const b = Buffer.alloc(512);
  b.writeUInt32LE(0x0a324655, 0);
  b.writeUInt32LE(0x9e5d5157, 4);
  b.writeUInt32LE(flags, 8);
  b.writeUInt32LE(addr, 12);
  b.writeUInt32LE(data.length, 16);
  b.writeUInt32LE(family, 28);
  Buffer.from(data).copy(b, 32);
  b.writeUInt32LE(0x0ab16f30, 508);
  return b;
}

test('blocks are written where they say, the rest of flash untouched', () => {
  const flash = new Uint8Array(4096).fill(0xff);
  const r = loadUF2(Buffer.concat([block(0x10000100, [1, 2, 3]), block(0x10000000, [9])]), flash);
  assert.deepEqual(r, { blocks: 2, low: 0, high: 0x103 });
  assert.deepEqual([...flash.subarray(0x100, 0x104)], [1, 2, 3, 0xff]);
  assert.equal(flash[0], 9);
});

test('another family, an address outside flash and a file with no block are refused', () => {
  const flash = new Uint8Array(4096);
  assert.throws(() => loadUF2(block(0x10000000, [1], { family: 0x12345678 }), flash), /is not RP2040/);
  assert.throws(() => loadUF2(block(0x20000000, [1]), flash), /is not in flash/);
  assert.throws(() => loadUF2(Buffer.alloc(1024), flash), /no UF2 blocks/);
});
