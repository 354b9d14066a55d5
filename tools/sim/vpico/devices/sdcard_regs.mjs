// The SD card's registers and checksums, as the SD Physical Layer Simplified Specification lays them out
// (section 5: OCR, CID, CSD; section 4.5: CRC7 and CRC16). One job: bytes of registers, no protocol.
//
//   crc7(bytes, n)          the 7-bit CRC of commands and of the CID/CSD (polynomial x^7 + x^3 + 1)
//   crc16(bytes)            the 16-bit CRC of data blocks (CRC-CCITT, polynomial x^16 + x^12 + x^5 + 1, seed 0)
//   csdFor(kind, blocks, flags)   the 16-byte CSD: version 2.0 for 'sdhc', version 1.0 for 'sdsc' / 'sdsc-v1'
//   cidFor(serial)          the 16-byte CID
//   ocrFor(kind, ready)     the 32-bit OCR: the 2.7-3.6 V window, CCS (bit 30) and the power-up status (bit 31)
//   capacityError(kind, bytes)  why a capacity cannot be written into that CSD, or null

export const BLOCK = 512;

export function crc7(bytes, n = bytes.length) {
  let crc = 0;
  for (let i = 0; i < n; i++) {
    let b = bytes[i];
    for (let bit = 0; bit < 8; bit++) {
      crc <<= 1;
      if ((b ^ crc) & 0x80) crc ^= 0x09;
      b <<= 1;
    }
    crc &= 0x7f;
  }
  return crc;
}

export function crc16(bytes) {
  let crc = 0;
  for (let i = 0; i < bytes.length; i++) {
    crc ^= bytes[i] << 8;
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

// A 128-bit register as the specification numbers it: bit 127 is the first bit sent (byte 0, bit 7).
function setField(reg, hi, lo, value) {
  for (let bit = lo; bit <= hi; bit++) {
    const byte = (127 - bit) >> 3;
    const mask = 1 << (bit & 7);
    if ((value >> (bit - lo)) & 1) reg[byte] |= mask;
    else reg[byte] &= ~mask;
  }
}

function sealed(reg) {
  reg[15] = (crc7(reg, 15) << 1) | 1;        // CRC [7:1], and bit 0 is always 1
  return reg;
}

// CSD version 1.0 (SDSC): capacity = (C_SIZE + 1) * 2^(C_SIZE_MULT + 2) * 2^READ_BL_LEN, C_SIZE < 4096,
// C_SIZE_MULT < 8. READ_BL_LEN is 9 (512 B) up to 1 GB, 10 for 2 GB (section 5.3.2).
function csdV1Geometry(blocks) {
  for (const blLen of [9, 10]) {
    const units = blocks / (1 << (blLen - 9));
    for (let mult = 0; mult < 8; mult++) {
      const cSize = units / (1 << (mult + 2)) - 1;
      if (Number.isInteger(cSize) && cSize >= 0 && cSize < 4096) return { blLen, mult, cSize };
    }
  }
  return null;
}

export function capacityError(kind, bytes) {
  if (!Number.isInteger(bytes) || bytes <= 0 || bytes % BLOCK) return `capacity must be a positive multiple of ${BLOCK} bytes`;
  if (kind === 'sdhc') {
    if (bytes % (512 * 1024)) return 'an SDHC card\'s capacity is a multiple of 512 KiB (CSD 2.0 C_SIZE)';
    if (bytes > 32 * 1024 ** 3) return 'an SDHC card holds at most 32 GiB';
    return null;
  }
  if (bytes > 2 * 1024 ** 3) return 'an SDSC card holds at most 2 GiB (use kind=sdhc)';
  if (!csdV1Geometry(bytes / BLOCK)) return `${bytes} bytes cannot be written as (C_SIZE+1) * 2^(C_SIZE_MULT+2) * 2^READ_BL_LEN`;
  return null;
}

export function csdFor(kind, blocks, { tmpWriteProtect = false } = {}) {
  const reg = new Uint8Array(16);
  setField(reg, 119, 112, 0x0e);             // TAAC: 1.0 ms
  setField(reg, 111, 104, 0x00);             // NSAC
  setField(reg, 103, 96, 0x32);              // TRAN_SPEED: 25 MHz
  setField(reg, 83, 80, 9);                  // READ_BL_LEN: 512 B (overwritten below for a 2 GB SDSC)
  setField(reg, 46, 46, 1);                  // ERASE_BLK_EN
  setField(reg, 45, 39, 0x7f);               // SECTOR_SIZE: 128 write blocks
  setField(reg, 28, 26, 2);                  // R2W_FACTOR: writes take 4x a read
  setField(reg, 25, 22, 9);                  // WRITE_BL_LEN: 512 B
  setField(reg, 12, 12, tmpWriteProtect ? 1 : 0);   // TMP_WRITE_PROTECT
  if (kind === 'sdhc') {
    setField(reg, 127, 126, 1);              // CSD_STRUCTURE: version 2.0
    setField(reg, 95, 84, 0x5b5);            // CCC: classes 0, 2, 4, 5, 7, 8, 10
    setField(reg, 69, 48, blocks / 1024 - 1);  // C_SIZE: capacity = (C_SIZE + 1) * 512 KiB
  } else {
    const g = csdV1Geometry(blocks);
    setField(reg, 127, 126, 0);              // CSD_STRUCTURE: version 1.0
    setField(reg, 119, 112, 0x26);           // TAAC: 1.5 ms
    setField(reg, 95, 84, 0x5b5);
    setField(reg, 83, 80, g.blLen);
    setField(reg, 79, 79, 1);                // READ_BL_PARTIAL: always 1 on an SD card
    setField(reg, 73, 62, g.cSize);          // C_SIZE
    setField(reg, 61, 50, 0xfff);            // VDD_R/W_CURR_MIN/MAX: the largest currents
    setField(reg, 49, 47, g.mult);           // C_SIZE_MULT
  }
  return sealed(reg);
}

export function cidFor(serial = 0x5011d00d) {
  const reg = new Uint8Array(16);
  const text = (hi, s) => { for (let i = 0; i < s.length; i++) setField(reg, hi - 8 * i, hi - 8 * i - 7, s.charCodeAt(i)); };
  setField(reg, 127, 120, 0x00);             // MID: no manufacturer (a simulated card)
  text(119, 'VP');                           // OID
  text(103, 'VPICO');                        // PNM
  setField(reg, 63, 56, 0x10);               // PRV: 1.0
  setField(reg, 55, 24, serial >>> 0);       // PSN
  setField(reg, 19, 12, 26);                 // MDT year: 2000 + 26
  setField(reg, 11, 8, 12);                  // MDT month
  return sealed(reg);
}

export const OCR_BUSY = 0x80000000;          // bit 31: power-up finished (0 while the card is initialising)
export const OCR_CCS = 0x40000000;           // bit 30: card capacity status (1: SDHC/SDXC, block addressing)
export const OCR_VDD = 0x00ff8000;           // bits 23-15: 2.7-3.6 V

export function ocrFor(kind, ready) {
  return ((ready ? OCR_BUSY : 0) | (ready && kind === 'sdhc' ? OCR_CCS : 0) | OCR_VDD) >>> 0;
}
