// The SD card model (tools/sim/vpico/devices/sdcard*.mjs), driven byte by byte as micropython-lib's sdcard driver
// drives it. Run: node --test tools/sim/vpico/test/
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';

import { makeCard, parseSize, faultFile } from '../devices/sdcard.mjs';
import { crc7, crc16, csdFor, capacityError } from '../devices/sdcard_regs.mjs';
import { SpiCard, newStats } from '../devices/sdcard_spi.mjs';
import { Host } from './sd_host.mjs';

const MB = 1024 * 1024;
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'card-test-'));
const opened = [];
test.after(() => {
  for (const dev of opened) dev.save();
  fs.rmSync(scratch, { recursive: true, force: true });
});
let n = 0;

function newCard(opts = {}) {
  const dir = path.join(scratch, `card${n++}`);
  const cuts = [];
  const dev = makeCard({ dir, capacity: 1 * MB, onPowerCut: (kept, tail) => cuts.push([kept, tail]), ...opts });
  opened.push(dev);
  return { dev, host: new Host(dev.card), dir, cuts, faults: (f) => setFaults(dir, f) };
}

function setFaults(dir, f) {
  const file = path.join(dir, 'faults.json');
  fs.writeFileSync(`${file}.tmp`, JSON.stringify(f));
  fs.renameSync(`${file}.tmp`, file);
  // the mtime may not change within one clock tick: the size and inode (a new file) do
}

function pattern(seed) {
  const b = new Uint8Array(512);
  for (let i = 0; i < 512; i++) b[i] = (i * 7 + seed) & 0xff;
  return b;
}

function readBlock(host, lba, sdhc = true) {
  assert.equal(host.cmd(17, sdhc ? lba : lba * 512, { release: false }).r1, 0);
  return host.readData(512);
}

test('CRC7 and CRC16 match the values the specification gives', () => {
  assert.equal((crc7(new Uint8Array([0x40, 0, 0, 0, 0])) << 1) | 1, 0x95);          // CMD0
  assert.equal((crc7(new Uint8Array([0x48, 0, 0, 0x01, 0xaa])) << 1) | 1, 0x87);    // CMD8, 0x1AA
  assert.equal((crc7(new Uint8Array([0x51, 0, 0, 0, 0])) << 1) | 1, 0x55);          // CMD17, address 0
  assert.equal(crc16(new Uint8Array(512).fill(0xff)), 0x7fa1);                      // a block of 0xFF
});

test('power-up: no answer before 74 clocks, nor to a CMD0 with a bad CRC in SD mode, nor with CS high', () => {
  const { host } = newCard();
  host.select(true);
  for (const b of host.frame(0, 0)) host.xfer(b);                // 48 clocks only: the card is still powering up
  for (let i = 0; i < 20; i++) assert.equal(host.xfer(), 0xff);
  assert.equal(host.cmd(0, 0, { crc: 0x01 }).r1, -1);            // SD mode checks CRC: ignored
  assert.equal(host.cmd(8, 0x1aa).r1, -1);                       // and hears nothing but CMD0
  host.select(false);
  for (const b of host.frame(0, 0)) host.xfer(b);                // CS high: not for this card
  for (let i = 0; i < 10; i++) assert.equal(host.xfer(), 0xff);
  assert.equal(host.cmd(0).r1, 0x01);                            // CS low, valid CRC: SPI mode, idle
});

test('the driver\'s init: CMD8 echo, ACMD41 idle until ready, OCR with CCS, CSD v2 capacity, CMD16', () => {
  const { host, dev } = newCard({ capacity: 16 * MB });
  host.select(false);
  host.clocks(16);
  assert.equal(host.cmd(0).r1, 0x01);
  assert.deepEqual(host.cmd(8, 0x1aa, { extra: 4 }), { r1: 0x01, extra: [0x00, 0x00, 0x01, 0xaa] });
  assert.deepEqual(host.cmd(8, 0x2c5, { extra: 4 }).extra, [0, 0, 0, 0xc5]);  // 0x2: not 2.7-3.6 V
  assert.equal(host.cmd(17, 0).r1, 0x05);                        // idle: illegal command
  const ocr0 = host.cmd(58, 0, { extra: 4 });
  assert.equal(ocr0.r1, 0x01);
  assert.equal(ocr0.extra[0] & 0x80, 0);                         // still powering up
  assert.equal(host.cmd(41, 0x40000000).r1, 0x05);               // CMD41 without CMD55: illegal in SPI mode
  host.cmd(55);
  assert.equal(host.cmd(41, 0x40000000).r1, 0x01);               // first ACMD41: idle
  host.cmd(55);
  assert.equal(host.cmd(41, 0x40000000).r1, 0x00);               // ready
  assert.deepEqual(host.cmd(58, 0, { extra: 4 }).extra, [0xc0, 0xff, 0x80, 0x00]);   // busy done, CCS, 2.7-3.6 V
  const { sectors, csdCrcOk, csd } = host.csd();
  assert.equal(csd[0] >> 6, 1);                                  // CSD 2.0
  assert.equal(sectors, 16 * MB / 512);
  assert.ok(csdCrcOk);
  assert.equal(host.cmd(16, 512).r1, 0);
  assert.equal(dev.stats.commands.ACMD41, 2);
});

test('driver init on each kind: sdhc (block addresses), sdsc (byte addresses, CSD v1), sdsc-v1 (no CMD8)', () => {
  for (const [kind, v2, ccs] of [['sdhc', true, true], ['sdsc', true, false], ['sdsc-v1', false, false]]) {
    const { host } = newCard({ kind, capacity: 2 * MB });
    const info = host.init();
    assert.equal(info.v2, v2, kind);
    assert.equal(info.ccs, ccs, kind);
    assert.equal(info.sectors, 4096, kind);
    assert.equal(info.csd[0] >> 6, kind === 'sdhc' ? 1 : 0, kind);
    const data = pattern(3);
    const addr = ccs ? 7 : 7 * 512;
    assert.equal(host.cmd(24, addr).r1, 0);
    assert.equal(host.writeData(0xfe, data).response & 0x1f, 0x05);
    assert.deepEqual(readBlock(host, 7, ccs).data, data, kind);
  }
});

test('an SDHC card stays idle when the host does not say it handles high capacity (HCS)', () => {
  const { host } = newCard({ kind: 'sdhc' });
  assert.throws(() => host.init({ hcs: false }), /timeout/);
});

test('CSD v1 capacity formula and a capacity it cannot express', () => {
  for (const mb of [1, 16, 64, 1024, 2048]) {
    const blocks = mb * MB / 512;
    const csd = csdFor('sdsc', blocks);
    const cSize = (csd[6] & 0b11) << 10 | csd[7] << 2 | csd[8] >> 6;
    const mult = (csd[9] & 0b11) << 1 | csd[10] >> 7;
    assert.equal((cSize + 1) * 2 ** (mult + 2) * 2 ** (csd[5] & 15), mb * MB);
  }
  assert.match(capacityError('sdhc', 1000 * 512), /512 KiB/);
  assert.match(capacityError('sdsc', 513), /multiple of 512/);
  assert.match(capacityError('sdsc', 12291 * 512), /cannot be written/);   // 3 * 4097 blocks: no C_SIZE fits
  assert.throws(() => newCard({ capacity: 1000 * 512 }), /512 KiB/);
});

test('CMD10 gives the CID behind a data token with valid CRCs', () => {
  const { host } = newCard();
  host.init();
  assert.equal(host.cmd(10, 0, { release: false }).r1, 0);
  const { data, crcOk } = host.readData(16);
  assert.ok(crcOk);
  assert.equal(String.fromCharCode(...data.subarray(3, 8)), 'VPICO');
  assert.equal((crc7(data, 15) << 1) | 1, data[15]);
});

test('single-block write and read: data response, busy, CRC16 on the read, on the card file at once', () => {
  const { host, dir } = newCard();
  host.init();
  const data = pattern(1);
  assert.equal(host.cmd(24, 100).r1, 0);
  const w = host.writeData(0xfe, data);
  assert.equal(w.response & 0x1f, 0x05);
  assert.equal(w.busy, 2);
  const r = readBlock(host, 100);
  assert.equal(r.token, 0xfe);
  assert.ok(r.crcOk);
  assert.deepEqual(r.data, data);
  const img = fs.readFileSync(path.join(dir, 'card.img'));
  assert.deepEqual(new Uint8Array(img.subarray(100 * 512, 101 * 512)), data);
});

test('multiple-block write (0xFC ... 0xFD) and read (CMD18 ... CMD12 after a stuff byte)', () => {
  const { host, dev } = newCard();
  host.init();
  assert.equal(host.cmd(25, 10).r1, 0);
  for (let i = 0; i < 3; i++) assert.equal(host.writeData(0xfc, pattern(i)).response & 0x1f, 0x05);
  assert.equal(host.stopTran(), 2);
  assert.equal(dev.stats.blocksWritten, 3);
  assert.equal(host.cmd(18, 10, { release: false }).r1, 0);
  for (let i = 0; i < 3; i++) {
    const r = host.readData(512);
    assert.ok(r.crcOk);
    assert.deepEqual(r.data, pattern(i));
  }
  assert.equal(host.cmd(12, 0, { skip1: true }).r1, 0);
  assert.equal(dev.stats.blocksRead, 3);                          // the block CMD12 cut off is not counted
  assert.equal(host.cmd(13, 0, { extra: 1 }).r1, 0);              // back in the transfer state
  assert.deepEqual(readBlock(host, 11).data, pattern(1));
});

test('addresses: past the end is a parameter error, a read across an SDSC block an address error', () => {
  const { host } = newCard();
  host.init();
  assert.equal(host.cmd(17, 2048).r1, 0x40);                     // a 1 MB card has blocks 0-2047
  assert.equal(host.cmd(24, 5000).r1, 0x40);
  const sdsc = newCard({ kind: 'sdsc' }).host;
  sdsc.init();
  assert.equal(sdsc.cmd(16, 16).r1, 0);                          // partial reads: 16 bytes
  assert.equal(sdsc.cmd(17, 510).r1, 0x20);                      // 510..525 crosses block 0's end
  assert.equal(sdsc.cmd(17, 32, { release: false }).r1, 0);
  const r = sdsc.readData(16);
  assert.ok(r.crcOk);
  assert.equal(sdsc.cmd(24, 0).r1, 0x40);                        // writes are whole blocks only
  assert.equal(sdsc.cmd(16, 1024).r1, 0x40);
});

test('CRC checking: CMD8 always, others after CMD59, data blocks after CMD59 (0x0B)', () => {
  const { host, dev } = newCard();
  host.init();
  assert.equal(host.cmd(8, 0x1aa, { crc: 0x01, extra: 4 }).r1, 0x08);
  assert.equal(host.cmd(13, 0, { crc: 0x01, extra: 1 }).r1, 0x00);   // CRC off: not checked
  assert.equal(host.cmd(59, 1).r1, 0);
  assert.equal(host.cmd(13, 0, { crc: 0x01, extra: 1 }).r1, 0x08);
  const data = pattern(9);
  assert.equal(host.cmd(24, 3).r1, 0);
  assert.equal(host.writeData(0xfe, data, 0x1234).response & 0x1f, 0x0b);
  assert.equal(host.cmd(24, 3).r1, 0);
  assert.equal(host.writeData(0xfe, data, crc16(data)).response & 0x1f, 0x05);
  assert.equal(dev.stats.crcErrors, 2);
});

test('unknown commands and ACMDs are illegal; CMD12 outside a multiple read too', () => {
  const { host } = newCard();
  host.init();
  assert.equal(host.cmd(1).r1, 0x04);
  assert.equal(host.cmd(12, 0, { skip1: true }).r1, 0x04);
  assert.equal(host.cmd(42).r1, 0x04);
  host.cmd(55);
  assert.equal(host.cmd(51).r1, 0x04);
});

test('fault removed: an empty slot (MISO stays 0xFF); pushed back in it needs CMD0 and an init again', () => {
  const { host, faults, dev } = newCard();
  host.init();
  faults({ removed: true });
  assert.equal(host.cmd(13).r1, -1);
  assert.equal(host.cmd(0).r1, -1);
  faults({ removed: false });
  assert.equal(host.cmd(0).r1, -1);                              // powered up by this CMD0's clocks: not heard
  assert.equal(host.cmd(0).r1, 0x01);                            // the driver's second attempt
  assert.equal(host.cmd(17, 0).r1, 0x05);                        // idle again
  host.init();
  assert.equal(readBlock(host, 0).token, 0xfe);
  assert.equal(dev.stats.removals, 1);
});

test('fault write_error: data response 0x0D and the block unchanged; read_only also sets TMP_WRITE_PROTECT', () => {
  const { host, faults } = newCard();
  host.init();
  assert.equal(host.cmd(24, 5).r1, 0);
  host.writeData(0xfe, pattern(1));
  faults({ write_error: true });
  assert.equal(host.cmd(24, 5).r1, 0);
  assert.equal(host.writeData(0xfe, pattern(2)).response & 0x1f, 0x0d);
  assert.equal(host.cmd(25, 5).r1, 0);
  assert.equal(host.writeData(0xfc, pattern(2)).response & 0x1f, 0x0d);
  host.stopTran();
  assert.deepEqual(readBlock(host, 5).data, pattern(1));
  assert.deepEqual(host.cmd(13, 0, { extra: 1 }).extra, [0x04]);  // R2: ERROR
  faults({ read_only: true });
  assert.equal(host.csd().csd[14] & 0x10, 0x10);                 // CSD bit 12: TMP_WRITE_PROTECT
  assert.equal(host.cmd(24, 5).r1, 0);
  assert.equal(host.writeData(0xfe, pattern(3)).response & 0x1f, 0x0d);
  assert.deepEqual(host.cmd(13, 0, { extra: 1 }).extra, [0x24]);  // WP_VIOLATION + ERROR
  faults({});
  assert.equal(host.cmd(24, 5).r1, 0);
  assert.equal(host.writeData(0xfe, pattern(3)).response & 0x1f, 0x05);
});

test('fault read_error: the data error token 0x01 instead of the block, single and multiple reads', () => {
  const { host, faults, dev } = newCard();
  host.init();
  faults({ read_error: true });
  assert.equal(host.cmd(17, 0, { release: false }).r1, 0);
  assert.equal(host.readData(512).token, 0x01);
  assert.equal(host.cmd(18, 0, { release: false }).r1, 0);
  assert.equal(host.readData(512).token, 0x01);
  faults({});
  assert.equal(readBlock(host, 0).token, 0xfe);
  assert.equal(dev.stats.readErrors, 2);
});

test('fault power_cut_after: the block in progress keeps only its first bytes, then the card is dead', () => {
  for (const [tail, check] of [['prefix', (b, old) => b.subarray(300).every((x, i) => x === old[300 + i])],
                               ['zeros', (b) => b.subarray(300).every((x) => x === 0)],
                               ['garbage', (b) => b.subarray(300).some((x) => x !== 0 && x !== 0xff)]]) {
    const { host, faults, dir, cuts, dev } = newCard();
    host.init();
    assert.equal(host.cmd(24, 9).r1, 0);
    host.writeData(0xfe, new Uint8Array(512).fill(0xaa));
    faults({ power_cut_after: { nbytes: 512 + 300, tail }, removed: false });
    assert.equal(host.cmd(25, 8).r1, 0);
    assert.equal(host.writeData(0xfc, pattern(1)).response & 0x1f, 0x05);   // block 8: whole
    const w = host.writeData(0xfc, pattern(2));                             // block 9: cut at byte 300
    assert.equal(w.response, 0xff);                                          // no data response: power gone
    assert.deepEqual(cuts, [[300, tail]]);
    assert.deepEqual(dev.stats.powerCut, { lba: 9, kept: 300, tail });
    const img = fs.readFileSync(path.join(dir, 'card.img'));
    assert.deepEqual(new Uint8Array(img.subarray(8 * 512, 9 * 512)), pattern(1));
    const b9 = new Uint8Array(img.subarray(9 * 512, 10 * 512));
    assert.deepEqual(b9.subarray(0, 300), pattern(2).subarray(0, 300));
    assert.ok(check(b9, new Uint8Array(512).fill(0xaa)), tail);
    assert.equal(host.cmd(0).r1, -1);                                        // dead
    const left = JSON.parse(fs.readFileSync(path.join(dir, 'faults.json'), 'utf8'));
    assert.deepEqual(left, { removed: false });                              // the one shot is taken out
    const state = JSON.parse(fs.readFileSync(path.join(dir, 'state.json'), 'utf8'));
    assert.equal(state.powerCut.lba, 9);
    dev.save();
    const again = makeCard({ dir, capacity: 1 * MB });                        // the reboot: the same card
    const h2 = new Host(again.card);
    h2.init();
    assert.deepEqual(readBlock(h2, 8).data, pattern(1));
    again.close();
  }
});

test('fault "full" is not a card\'s state: ignored (use a small capacity)', () => {
  const { host, faults } = newCard();
  host.init();
  faults({ full: true });
  assert.equal(host.cmd(24, 1).r1, 0);
  assert.equal(host.writeData(0xfe, pattern(1)).response & 0x1f, 0x05);
});

test('a blank card comes with an MBR and one FAT partition that fsck.fat accepts', () => {
  for (const mb of [1, 16]) {
    const { dir, dev } = newCard({ capacity: mb * MB });
    const img = fs.readFileSync(path.join(dir, 'card.img'));
    assert.equal(img.length, mb * MB);
    assert.equal(img.readUInt16LE(510), 0xaa55);
    const start = img.readUInt32LE(446 + 8);
    const count = img.readUInt32LE(446 + 12);
    assert.equal(start, mb >= 8 ? 2048 : 32);
    assert.ok(start + count <= mb * MB / 512);
    assert.ok([0x01, 0x04, 0x06, 0x0c].includes(img[446 + 4]));
    const boot = img.subarray(start * 512, start * 512 + 512);
    assert.equal(boot.readUInt16LE(510), 0xaa55);
    assert.equal(boot.readUInt16LE(11), 512);                    // bytes per sector
    assert.equal(boot.readUInt32LE(28), start);                  // hidden sectors = the partition's offset
    const part = path.join(dir, 'part.img');
    fs.writeFileSync(part, img.subarray(start * 512, (start + count) * 512));
    let fsck = null;
    for (const cand of ['fsck.fat', '/usr/sbin/fsck.fat', '/sbin/fsck.fat']) {
      try { execFileSync(cand, ['-n', part], { stdio: 'pipe' }); fsck = 'ok'; break; }
      catch (e) { if (e.code !== 'ENOENT') { fsck = String(e.stdout) + String(e.stderr); break; } }
    }
    if (fsck !== null) assert.equal(fsck, 'ok');
    dev.save();
  }
});

test('an existing card keeps its content, and a different capacity for it is refused in one line', () => {
  const { dir, host, dev } = newCard();
  host.init();
  assert.equal(host.cmd(24, 77).r1, 0);
  host.writeData(0xfe, pattern(5));
  dev.save();
  assert.throws(() => makeCard({ dir, capacity: 2 * MB }), /holds 1048576 bytes, not the 2097152/);
  const again = makeCard({ dir, capacity: 1 * MB });
  const h = new Host(again.card);
  h.init();
  assert.deepEqual(readBlock(h, 77).data, pattern(5));
  again.close();
});

test('state.json tells what the card saw', async () => {
  const { host, dir, dev } = newCard();
  host.init();
  readBlock(host, 1);
  dev.save();
  const state = JSON.parse(fs.readFileSync(path.join(dir, 'state.json'), 'utf8'));
  assert.equal(state.initialised, true);
  assert.equal(state.blocksRead, 1);
  assert.equal(state.commands.CMD17, 1);
  assert.equal(state.last.at(-1), 'CMD17');
  assert.equal(state.capacity, 1 * MB);
  dev.save();
});

test('sizes and the fault file', () => {
  assert.equal(parseSize('16M'), 16 * MB);
  assert.equal(parseSize('512k'), 512 * 1024);
  assert.equal(parseSize('1048576'), MB);
  assert.throws(() => parseSize('lots'), /not a size/);
  const dir = fs.mkdtempSync(path.join(scratch, 'ff-'));
  const ff = faultFile(path.join(dir, 'faults.json'));
  assert.deepEqual(ff.read(), {});
  fs.writeFileSync(path.join(dir, 'faults.json'), '{"removed": tr');
  assert.deepEqual(ff.read(), {});                               // half-written: ignored
  setFaults(dir, { removed: true });
  assert.deepEqual(ff.read(), { removed: true });
  fs.rmSync(path.join(dir, 'faults.json'));
  assert.deepEqual(ff.read(), {});
});

test('the protocol over a store in memory (no file): the model is independent of its storage', () => {
  const mem = new Uint8Array(1024 * 512);
  const store = { blocks: 1024, read: (lba, buf) => buf.set(mem.subarray(lba * 512, lba * 512 + 512)),
    write: (lba, d) => mem.set(d, lba * 512), writePartial: () => {} };
  const card = new SpiCard({ kind: 'sdhc', store, stats: newStats() });
  const host = new Host(card);
  host.init();
  assert.equal(host.csd().sectors, 1024);
  assert.equal(host.cmd(24, 1023).r1, 0);
  host.writeData(0xfe, pattern(4));
  assert.deepEqual(mem.subarray(1023 * 512), pattern(4));
});
