/**
 * UF2, the format a Pico's bootloader drive takes (github.com/microsoft/uf2): 512-byte blocks, each carrying up to
 * 476 bytes for one flash address. Dragging firmware.uf2 onto RPI-RP2 writes exactly those bytes and nothing else,
 * so the filesystem further up in flash survives a re-flash; loadUF2 does the same to the emulated flash.
 */
const MAGIC0 = 0x0a324655;
const MAGIC1 = 0x9e5d5157;
const MAGIC_END = 0x0ab16f30;
const FLAG_NOT_MAIN_FLASH = 0x00000001;
const FLAG_FAMILY_ID = 0x00002000;
export const RP2040_FAMILY = 0xe48bff56;
export const FLASH_BASE = 0x10000000;

/**
 * Write every block of `uf2` (a Buffer) into `flash` (the Uint8Array behind address 0x10000000).
 * Returns { blocks, low, high }: the flash offsets written. Throws on a file that is not an RP2040 UF2.
 */
export function loadUF2(uf2, flash) {
  let blocks = 0;
  let low = Infinity;
  let high = 0;
  for (let off = 0; off + 512 <= uf2.length; off += 512) {
    if (uf2.readUInt32LE(off) !== MAGIC0 || uf2.readUInt32LE(off + 4) !== MAGIC1) continue;
    if (uf2.readUInt32LE(off + 508) !== MAGIC_END) throw new Error(`UF2 block at byte ${off}: bad end magic`);
    const flags = uf2.readUInt32LE(off + 8);
    if (flags & FLAG_NOT_MAIN_FLASH) continue;
    if ((flags & FLAG_FAMILY_ID) && uf2.readUInt32LE(off + 28) !== RP2040_FAMILY) {
      throw new Error(`UF2 block at byte ${off}: family 0x${uf2.readUInt32LE(off + 28).toString(16)} is not RP2040`);
    }
    const addr = uf2.readUInt32LE(off + 12) - FLASH_BASE;
    const size = uf2.readUInt32LE(off + 16);
    if (addr < 0 || size > 476 || addr + size > flash.length) {
      throw new Error(`UF2 block at byte ${off}: address 0x${(addr + FLASH_BASE).toString(16)} is not in flash`);
    }
    flash.set(uf2.subarray(off + 32, off + 32 + size), addr);
    low = Math.min(low, addr);
    high = Math.max(high, addr + size);
    blocks++;
  }
  if (!blocks) throw new Error('no UF2 blocks (is it a firmware.uf2?)');
  return { blocks, low, high };
}
