// A host for the card's unit tests: the SD SPI byte protocol from the host's side, driven the way
// micropython-lib's `sdcard` driver drives it (command, poll for R1 up to 100 bytes, extra response bytes, CS
// released with one more byte; data blocks after a 0xFE token; writes with a token, the block, two CRC bytes,
// the data response and busy polling; CMD12 after a skipped stuff byte).

import { crc7, crc16 } from '../devices/sdcard_regs.mjs';

export class Host {
  constructor(card) {
    this.card = card;
    this.cs = false;
  }

  select(low) { this.cs = low; this.card.select(low); }

  xfer(b = 0xff) { return this.card.exchange(b); }

  clocks(nbytes) { for (let i = 0; i < nbytes; i++) this.xfer(0xff); }

  frame(index, arg, crc) {
    const buf = new Uint8Array([0x40 | index, arg >>> 24 & 0xff, arg >>> 16 & 0xff, arg >>> 8 & 0xff, arg & 0xff, 0]);
    buf[5] = crc === undefined ? (crc7(buf, 5) << 1) | 1 : crc;
    return buf;
  }

  // Returns { r1, extra }: r1 is -1 when nothing answered within 100 bytes.
  cmd(index, arg = 0, { extra = 0, release = true, skip1 = false, crc } = {}) {
    this.select(true);
    for (const b of this.frame(index, arg, crc)) this.xfer(b);
    if (skip1) this.xfer();
    for (let i = 0; i < 100; i++) {
      const r1 = this.xfer();
      if (!(r1 & 0x80)) {
        const more = [];
        for (let j = 0; j < extra; j++) more.push(this.xfer());
        if (release) this.release();
        return { r1, extra: more };
      }
    }
    this.release();
    return { r1: -1, extra: [] };
  }

  release() { this.select(false); this.xfer(); }

  // A data block after its token: { token, data, crcOk } (token is the error token when one came instead).
  readData(len) {
    this.select(true);
    for (let i = 0; i < 100; i++) {
      const t = this.xfer();
      if (t === 0xfe) {
        const data = new Uint8Array(len);
        for (let j = 0; j < len; j++) data[j] = this.xfer();
        const crc = (this.xfer() << 8) | this.xfer();
        this.release();
        return { token: t, data, crcOk: crc === crc16(data) };
      }
      if (t !== 0xff) { this.release(); return { token: t, data: null, crcOk: false }; }
    }
    this.release();
    return { token: -1, data: null, crcOk: false };
  }

  // Sends one data block; returns { response, busy } (busy: how many 0x00 bytes before the card was done).
  writeData(token, data, crc = 0xffff) {
    this.select(true);
    this.xfer(token);
    for (const b of data) this.xfer(b);
    this.xfer(crc >> 8);
    this.xfer(crc & 0xff);
    const response = this.xfer();
    let busy = 0;
    if ((response & 0x1f) === 0x05) while (this.xfer() === 0x00) busy++;
    this.release();
    return { response, busy };
  }

  stopTran() {
    this.select(true);
    this.xfer(0xfd);
    this.xfer();
    let busy = 0;
    while (this.xfer() === 0x00) busy++;
    this.release();
    return busy;
  }

  // The driver's init: 16 bytes with CS high, CMD0, CMD8, then CMD58 / CMD55 / ACMD41 until ready, CMD9, CMD16.
  init({ hcs = true } = {}) {
    this.select(false);
    this.clocks(16);
    let r = -1;
    for (let i = 0; i < 5 && r !== 1; i++) r = this.cmd(0).r1;
    if (r !== 1) throw new Error('no SD card');
    const r8 = this.cmd(8, 0x01aa, { extra: 4 });
    const v2 = r8.r1 === 0x01;
    for (let i = 0; i < 100; i++) {
      if (v2) this.cmd(58, 0, { extra: 4 });
      this.cmd(55);
      if (this.cmd(41, v2 && hcs ? 0x40000000 : 0).r1 === 0) {
        const ocr = v2 ? this.cmd(58, 0, { extra: 4 }).extra : [0];
        const csd = this.csd();
        if (this.cmd(16, 512).r1 !== 0) throw new Error("can't set 512 block size");
        return { v2, ocr, ccs: !!(ocr[0] & 0x40), ...csd };
      }
    }
    throw new Error('timeout waiting for the card');
  }

  csd() {
    if (this.cmd(9, 0, { release: false }).r1 !== 0) throw new Error('no response to CMD9');
    const { data: csd, crcOk } = this.readData(16);
    let sectors;
    if ((csd[0] & 0xc0) === 0x40) sectors = ((csd[7] << 16 | csd[8] << 8 | csd[9]) + 1) * 1024;
    else {
      const cSize = (csd[6] & 0b11) << 10 | csd[7] << 2 | csd[8] >> 6;
      const mult = (csd[9] & 0b11) << 1 | csd[10] >> 7;
      const blLen = csd[5] & 0b1111;
      sectors = (cSize + 1) * 2 ** (mult + 2) * 2 ** blLen / 512;
    }
    return { csd, sectors, csdCrcOk: crcOk && (crc7(csd, 15) << 1 | 1) === csd[15] };
  }
}
