/**
 * The RP2040's mask ROM (revision B1). rp2040js needs it to run the SDK's ROM calls (memcpy, the flash routines,
 * the float library); its npm package does not ship it, so tools/rp2/build.sh takes it, as data, from rp2040js's
 * git source (demo/bootrom.ts) into the cache, and this module reads it from there.
 */
import fs from 'node:fs';

export const BOOTROM_WORDS = 4096;

/** The 16 KB ROM file as the Uint32Array mcu.loadBootrom wants. */
export function readBootrom(path) {
  const bytes = fs.readFileSync(path);
  if (bytes.length !== BOOTROM_WORDS * 4) throw new Error(`${path}: ${bytes.length} bytes, a B1 bootrom has 16384`);
  const words = new Uint32Array(BOOTROM_WORDS);
  for (let i = 0; i < BOOTROM_WORDS; i++) words[i] = bytes.readUInt32LE(i * 4);
  return words;
}

/**
 * The address of a ROM function by its two-letter code ('RE' = flash_range_erase, 'RP' = flash_range_program),
 * through the table the ROM points at from 0x14, as the SDK's rom_func_lookup reads it (datasheet 2.8.3).
 */
export function romFunction(rom, code) {
  const half = (a) => ((a & 2) ? rom[a >> 2] >>> 16 : rom[a >> 2] & 0xffff);
  const want = code.charCodeAt(0) | (code.charCodeAt(1) << 8);
  for (let p = half(0x14); ; p += 4) {
    const c = half(p);
    if (c === 0) throw new Error(`ROM function ${code} not found`);
    if (c === want) return half(p + 2) & ~1;
  }
}
