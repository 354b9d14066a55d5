// The card's memory: a file of 512-byte blocks (one job: blocks in a file, and a blank card formatted like one
// from a shop).
//
//   const store = openImage(path, capacity, { format: true })
//   store.blocks; store.read(lba, buf); store.write(lba, data); store.writePartial(lba, data, keep, tail)
//   store.close()
//
// Writes go straight to the file (fs.writeSync: in the kernel's page cache the moment the call returns, so a
// process killed with SIGKILL right after keeps them). A missing file is a blank card: the file is made at the
// capacity and, with `format`, given what a shop card has: an MBR with one FAT partition (1 MiB aligned on cards of
// 8 MiB or more, at sector 32 below) formatted by `mkfs.fat` (Debian's dosfstools; FAT12, FAT16 or FAT32 as
// mkfs.fat chooses for the size, partition type to match).

import fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import { BLOCK } from './sdcard_regs.mjs';

export class ImageError extends Error {}

const MKFS_CANDIDATES = ['mkfs.fat', '/usr/sbin/mkfs.fat', '/sbin/mkfs.fat'];

function findMkfs() {
  for (const cand of MKFS_CANDIDATES) {
    try {
      execFileSync(cand, ['--help'], { stdio: 'ignore' });
      return cand;
    } catch (e) {
      if (e.code !== 'ENOENT' && e.status !== undefined) return cand;   // it ran (--help may exit non-zero)
    }
  }
  return null;
}

function formatBlank(path, blocks, volumeId) {
  const mkfs = findMkfs();
  if (!mkfs) {
    throw new ImageError('mkfs.fat not found: a blank card is formatted with it (bash tools/ensure-dosfstools.sh, '
      + 'or apt-get install dosfstools)');
  }
  const start = blocks >= 16384 ? 2048 : 32;
  const size = blocks - start;
  if (size < 64) throw new ImageError(`a ${blocks * BLOCK}-byte card is too small for a FAT partition`);
  const kib = Math.floor(size / 2);
  try {
    execFileSync(mkfs, ['--offset', String(start), '-h', String(start), '-i', volumeId,
      path, String(kib)], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    throw new ImageError(`mkfs.fat failed: ${String(e.stderr || e.message).trim().split('\n').pop()}`);
  }
  const fd = fs.openSync(path, 'r+');
  try {
    const boot = Buffer.alloc(BLOCK);
    fs.readSync(fd, boot, 0, BLOCK, start * BLOCK);
    const fat32 = boot.toString('latin1', 82, 90) === 'FAT32   ';
    const fat12 = boot.toString('latin1', 54, 62) === 'FAT12   ';
    // 0x01 FAT12, 0x04 FAT16 < 32 MiB, 0x06 FAT16, 0x0C FAT32 with LBA
    const type = fat32 ? 0x0c : fat12 ? 0x01 : size < 65536 ? 0x04 : 0x06;
    const mbr = Buffer.alloc(BLOCK);
    const entry = 446;
    mbr[entry] = 0x00;                          // not bootable
    mbr.fill(0xff, entry + 1, entry + 4);       // CHS start: unused (LBA)
    mbr[entry + 4] = type;
    mbr.fill(0xff, entry + 5, entry + 8);       // CHS end: unused
    mbr.writeUInt32LE(start, entry + 8);        // first sector (LBA)
    mbr.writeUInt32LE(kib * 2, entry + 12);     // sectors
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    fs.writeSync(fd, mbr, 0, BLOCK, 0);
  } finally {
    fs.closeSync(fd);
  }
}

export function openImage(path, capacity, { format = true, volumeId = '50110013', seed = 1 } = {}) {
  const blocks = capacity / BLOCK;
  if (!fs.existsSync(path)) {
    const tmp = `${path}.new`;
    fs.writeFileSync(tmp, '');
    fs.truncateSync(tmp, capacity);
    try {
      if (format) formatBlank(tmp, blocks, volumeId);
    } catch (e) {
      fs.rmSync(tmp, { force: true });
      throw e;
    }
    fs.renameSync(tmp, path);
  }
  const have = fs.statSync(path).size;
  if (have !== capacity) {
    throw new ImageError(`${path} holds ${have} bytes, not the ${capacity} asked for: remove it for a new card, `
      + 'or ask for its capacity');
  }
  const fd = fs.openSync(path, 'r+');
  let rng = seed >>> 0 || 1;
  const garbage = () => { rng ^= rng << 13; rng ^= rng >>> 17; rng ^= rng << 5; rng >>>= 0; return rng & 0xff; };
  return {
    path,
    blocks,
    read(lba, buf) {
      fs.readSync(fd, buf, 0, BLOCK, lba * BLOCK);
    },
    write(lba, data) {
      fs.writeSync(fd, data, 0, BLOCK, lba * BLOCK);
    },
    // A block cut off while programmed: its first `keep` bytes are the new ones; the rest is the old content
    // (tail 'prefix'), zero bytes ('zeros') or seeded pseudo-random bytes ('garbage').
    writePartial(lba, data, keep, tail = 'prefix') {
      const block = Buffer.alloc(BLOCK);
      fs.readSync(fd, block, 0, BLOCK, lba * BLOCK);
      block.set(data.subarray(0, keep), 0);
      if (tail === 'zeros') block.fill(0, keep);
      else if (tail === 'garbage') for (let i = keep; i < BLOCK; i++) block[i] = garbage();
      fs.writeSync(fd, block, 0, BLOCK, lba * BLOCK);
    },
    close() {
      fs.closeSync(fd);
    },
  };
}
