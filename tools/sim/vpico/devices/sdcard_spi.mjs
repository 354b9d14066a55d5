// An SD memory card in SPI mode, byte by byte, written from the SD Physical Layer Simplified Specification
// (section 7: SPI mode). One job: the card's side of the SPI protocol over a block store. It knows nothing of
// rp2040js; sdcard.mjs wires it to the emulated SPI peripheral and the CS pin.
//
//   const card = new SpiCard({ kind, store, faults, onPowerCut, stats })
//   card.select(csLow)      the chip-select line changed (a card ignores the clock while CS is high)
//   card.exchange(mosi)     one byte clocked: the byte the host sent in, the byte the card drives on MISO out
//
// store: { blocks, read(lba, buf512), write(lba, data512), writePartial(lba, data512, keep, tail) }
// faults(): the current faults, read at every command: { removed, write_error, read_error, read_only,
//   power_cut_after: { nbytes, tail } | null }. onPowerCut(keep, tail) is called once when a cut fires.
//
// What the card does (every rule below is the specification's unless it says "model"):
// - Power-up: the card starts in SD mode and needs 74 clocks before its first command. CMD0 with CS low and a
//   valid CRC puts it in SPI mode (R1 = idle); in SD mode a CMD0 with a bad CRC, or any other command, gets no
//   answer (MISO stays high).
// - CRC: off in SPI mode except for CMD8 (always checked) until CMD59 turns it on; a bad CRC answers R1 with
//   COM_CRC_ERROR and the command is not run. With CRC on, data blocks are checked too (data response 0x0B).
// - CMD8 (SEND_IF_COND) answers R7, echoing the voltage and the check pattern; a version 1 card ('sdsc-v1')
//   answers "illegal command". ACMD41 (after CMD55) starts initialisation: R1 stays "idle" for `initPolls` calls,
//   then 0; an SDHC card never leaves idle when the host did not set HCS (bit 30). CMD58 reads the OCR (the busy
//   bit 31 is set once the card is ready, CCS bit 30 on an SDHC card). In the idle state the card accepts only
//   CMD0, CMD8, CMD55, ACMD41, CMD58 and CMD59: anything else is "illegal command" (R1 0x05).
// - CMD9 / CMD10: R1, then the CSD / CID as a data block (token 0xFE, 16 bytes, CRC16).
// - CMD16: an SDSC card takes 1-512 (the length of the next reads: READ_BL_PARTIAL is 1), an SDHC card has
//   512-byte blocks whatever the argument. Model: anything else, and writes with a length other than 512,
//   answer PARAMETER_ERROR.
// - CMD17 / CMD18: R1, `nac` bytes 0xFF, token 0xFE, the block, its CRC16; CMD18 goes on block after block until
//   CMD12, which answers after one stuff byte (R1b, `busyStop` busy bytes). An SDHC card takes block numbers, an
//   SDSC card byte addresses (reads may not cross a block: ADDRESS_ERROR). An address past the end answers
//   PARAMETER_ERROR (a block past the end during CMD18: data error token 0x08, out of range).
// - CMD24 / CMD25: R1, then data blocks behind token 0xFE (CMD24) or 0xFC (CMD25, ended by the stop token 0xFD),
//   each answered by its data response (0x05 accepted, 0x0B CRC error, 0x0D write error) and `busy` bytes 0x00.
//   A block is on the card (store.write) when its data response 0x05 is sent.
// - CMD13: R2 (R1 and the status byte). CMD12 outside a multiple-block read, CMD1, and any command or ACMD not
//   listed here: "illegal command" (model: the card implements what the micropython-lib driver and FatFs use).
//   During CMD18 a command other than CMD0, CMD12 or CMD13 ends the transfer and answers "illegal command".
// - R1 bits: 0 idle, 1 erase reset, 2 illegal command, 3 CRC error, 4 erase sequence, 5 address, 6 parameter.
// Faults: removed (no answer at all; reinserted, the card is powered up again and needs CMD0), read_error (data
// error token 0x01 instead of a block), write_error and read_only (data response 0x0D; read_only also sets the
// CSD's TMP_WRITE_PROTECT), power_cut_after (after that many more bytes of block data, the block in progress
// keeps only a part and onPowerCut fires: the card answers nothing after it).

import { BLOCK, crc7, crc16, csdFor, cidFor, ocrFor, OCR_VDD } from './sdcard_regs.mjs';

export const R1_IDLE = 0x01;
export const R1_ERASE_RESET = 0x02;
export const R1_ILLEGAL = 0x04;
export const R1_CRC = 0x08;
export const R1_ERASE_SEQ = 0x10;
export const R1_ADDRESS = 0x20;
export const R1_PARAMETER = 0x40;

export const TOKEN_SINGLE = 0xfe;              // start block: CMD17/18/24, CSD, CID
export const TOKEN_MULTI = 0xfc;               // start block: CMD25
export const TOKEN_STOP = 0xfd;                // stop tran: ends CMD25
export const DATA_ACCEPTED = 0x05;
export const DATA_CRC_ERROR = 0x0b;
export const DATA_WRITE_ERROR = 0x0d;
export const ERROR_TOKEN = 0x01;               // data error token: error
export const ERROR_TOKEN_RANGE = 0x08;         // data error token: out of range

const POWER_UP_CLOCKS = 74;
const IDLE_CMDS = new Set([0, 8, 55, 58, 59]);  // CMD accepted in the idle state (and ACMD41)

// A queue of bytes the card will drive on MISO, one per clock; idle: 0xFF.
class Out {
  constructor() { this.buf = new Uint8Array(1024); this.head = 0; this.tail = 0; this.shifted = 0; }
  get empty() { return this.head === this.tail; }
  get length() { return this.tail - this.head; }
  clear() { this.head = this.tail = 0; }
  push(...bytes) { for (const b of bytes) this._put(b); }
  fill(byte, n) { for (let i = 0; i < n; i++) this._put(byte); }
  bytes(arr) { for (let i = 0; i < arr.length; i++) this._put(arr[i]); }
  _put(b) {
    if (this.tail === this.buf.length) {
      if (this.head) { this.buf.copyWithin(0, this.head, this.tail); this.tail -= this.head; this.head = 0; }
      else { const bigger = new Uint8Array(this.buf.length * 2); bigger.set(this.buf); this.buf = bigger; }
    }
    this.buf[this.tail++] = b;
  }
  shift() { this.shifted++; return this.buf[this.head++]; }
}

export class SpiCard {
  constructor({ kind = 'sdhc', store, faults = () => ({}), onPowerCut = () => {}, stats = null,
                initPolls = 2, nac = 1, ncr = 1, busy = 2, busyStop = 0 } = {}) {
    if (!['sdhc', 'sdsc', 'sdsc-v1'].includes(kind)) throw new Error(`unknown card kind ${kind} (sdhc, sdsc, sdsc-v1)`);
    this.kind = kind;
    this.store = store;
    this.faults = faults;
    this.onPowerCut = onPowerCut;
    this.initPolls = initPolls;
    this.nac = nac;
    this.ncr = ncr;
    this.busy = busy;
    this.busyStop = busyStop;
    this.stats = stats || newStats();
    this.cid = cidFor();
    this.out = new Out();
    this.block = new Uint8Array(BLOCK + 2);    // a data block being received (and its CRC)
    this.selected = false;
    this.dead = false;                         // after a power cut: nothing more, ever (the process ends)
    this.cut = null;                           // { left, tail }: an armed power cut
    this._cutSeen = null;
    this.readDoneAt = 0;
    this.lastError = false;
    this.removedNow = false;
    this.powerOn();
  }

  // --- power and faults ------------------------------------------------------------------------------------
  powerOn() {
    this.clocks = 0;
    this.spiMode = false;
    this.ready = false;
    this.crcOn = false;
    this.app = false;
    this.polls = 0;
    this.blockLen = BLOCK;
    this.state = 'cmd';                        // cmd | read_multi | write_token | write_data
    this.cmdBuf = new Uint8Array(6);
    this.cmdLen = 0;
    this.out.clear();
  }

  _faults() {
    const f = this.faults() || {};
    if (!!f.removed !== !!this.removedNow) {
      if (f.removed) this.stats.removals++;
      this.powerOn();                           // pulled: no power; pushed back in: powered up, in SD mode
    }
    this.removedNow = !!f.removed;
    const spec = f.power_cut_after;
    if (spec !== this._cutSeen) {               // a new arming from the control file (or a disarming)
      this._cutSeen = spec;
      this.cut = spec ? { left: Math.max(0, spec.nbytes | 0), tail: spec.tail || 'prefix' } : null;
    }
    return f;
  }

  select(low) {
    if (!!low !== this.selected) this._faults();   // faults are read at every CS edge and every command
    this.selected = !!low;
  }

  // --- the byte clock --------------------------------------------------------------------------------------
  exchange(mosi) {
    if (this.dead) return 0xff;
    if (this.removedNow) {                      // an empty slot: look again when the host starts a command
      if (this.selected && (mosi & 0xc0) === 0x40) this._faults();
      if (this.removedNow) return 0xff;
    }
    if (!this.spiMode && this.clocks < POWER_UP_CLOCKS) {
      this.clocks += 8;                         // the power-up clocks count with CS high or low
      return 0xff;
    }
    if (!this.selected) return 0xff;
    const miso = this.out.empty ? this._idleByte() : this.out.shift();
    this._receive(mosi);
    return miso;
  }

  _idleByte() {
    if (this.state === 'read_multi' && this.cmdLen === 0) {  // the next block of a CMD18, as soon as it is asked
      this._queueReadBlock();
      return this.out.empty ? 0xff : this.out.shift();
    }
    return 0xff;
  }

  _receive(b) {
    if (this.state === 'write_token') return this._writeToken(b);
    if (this.state === 'write_data') return this._writeData(b);
    if (this.cmdLen === 0) {
      if ((b & 0xc0) !== 0x40) return;          // not a start bit + transmission bit: the host is clocking
      if (this.state !== 'read_multi') this.out.clear();
    }
    this.cmdBuf[this.cmdLen++] = b;
    if (this.cmdLen === 6) {
      this.cmdLen = 0;
      this._command();
    }
  }

  // --- commands --------------------------------------------------------------------------------------------
  _command() {
    const f = this._faults();
    if (f.removed) return;
    const c = this.cmdBuf;
    const index = c[0] & 0x3f;
    const arg = ((c[1] << 24) | (c[2] << 16) | (c[3] << 8) | c[4]) >>> 0;
    const crcOk = ((crc7(c, 5) << 1) | 1) === (c[5] | 1);
    const app = this.app;
    this.app = false;
    const name = (app ? 'ACMD' : 'CMD') + index;
    this.stats.commands[name] = (this.stats.commands[name] || 0) + 1;
    this.stats.last.push(name);
    if (this.stats.last.length > 16) this.stats.last.shift();

    if (!this.spiMode) {                        // SD mode: only a correct CMD0 with CS low is heard
      if (index === 0 && crcOk) { this.powerOn(); this.spiMode = true; this.clocks = POWER_UP_CLOCKS; this._r1(0); }
      return;
    }
    if (!crcOk && (this.crcOn || index === 8)) {
      this.stats.crcErrors++;
      return this._r1(R1_CRC);
    }
    if (this.state === 'read_multi') {
      if (index === 12) return this._stopRead();
      this.state = 'cmd';
      this.out.clear();
      if (index !== 0 && index !== 13) return this._r1(R1_ILLEGAL);
    }
    if (index === 0) { this.powerOn(); this.spiMode = true; this.clocks = POWER_UP_CLOCKS; return this._r1(0); }
    if (!this.ready && !(IDLE_CMDS.has(index) || (app && index === 41))) return this._r1(R1_ILLEGAL);
    if (app) {
      if (index === 41) return this._acmd41(arg);
      return this._r1(R1_ILLEGAL);
    }
    switch (index) {
      case 8: return this._cmd8(arg);
      case 9: return this._register(csdFor(this.kind, this.store.blocks, { tmpWriteProtect: !!f.read_only }));
      case 10: return this._register(this.cid);
      case 13: return this._r1(0, this._status(f));
      case 16: return this._cmd16(arg);
      case 17: return this._read(arg, false, f);
      case 18: return this._read(arg, true, f);
      case 24: return this._write(arg, false);
      case 25: return this._write(arg, true);
      case 55: this.app = true; return this._r1(0);
      case 58: return this._r1(0, ...u32(ocrFor(this.kind, this.ready)));
      case 59: this.crcOn = !!(arg & 1); return this._r1(0);
      default: return this._r1(R1_ILLEGAL);
    }
  }

  _r1(bits, ...more) {
    this.out.fill(0xff, this.ncr);
    this.out.push((this.ready ? 0 : R1_IDLE) | bits, ...more);
  }

  _status(f) {                                  // R2's second byte: WP_VIOLATION, ERROR (cleared when read)
    const status = (f.read_only ? 0x20 : 0) | (this.lastError ? 0x04 : 0);
    this.lastError = false;
    return status;
  }

  _cmd8(arg) {
    if (this.kind === 'sdsc-v1') return this._r1(R1_ILLEGAL);
    const vhs = (arg >> 8) & 0x0f;
    const accepted = vhs === 0x1 ? 0x1 : 0x0;   // 2.7-3.6 V is the only range this card supports
    this._r1(0, 0x00, 0x00, accepted, arg & 0xff);
  }

  _acmd41(arg) {
    const hcs = !!(arg & 0x40000000);
    if (!this.ready && !(this.kind === 'sdhc' && !hcs)) {
      this.polls++;
      if (this.polls >= this.initPolls) this.ready = true;
    }
    this._r1(0);
  }

  _cmd16(arg) {
    if (this.kind === 'sdhc') return this._r1(0);
    if (arg < 1 || arg > BLOCK) return this._r1(R1_PARAMETER);
    this.blockLen = arg;
    this._r1(0);
  }

  _register(reg) {
    this._r1(0);
    this.out.fill(0xff, this.nac);
    this.out.push(TOKEN_SINGLE);
    this.out.bytes(reg);
    this.out.push(...u16(crc16(reg)));
  }

  // The byte address of a read or write, or null after answering the error.
  _address(arg, len) {
    const byteAddr = this.kind === 'sdhc' ? arg * BLOCK : arg;
    if (byteAddr + len > this.store.blocks * BLOCK) { this._r1(R1_PARAMETER); return null; }
    if (Math.floor(byteAddr / BLOCK) !== Math.floor((byteAddr + len - 1) / BLOCK)) { this._r1(R1_ADDRESS); return null; }
    return byteAddr;
  }

  // --- reads -----------------------------------------------------------------------------------------------
  _read(arg, multi, f) {
    const len = this.kind === 'sdhc' ? BLOCK : this.blockLen;
    const addr = this._address(arg, len);
    if (addr === null) return;
    this._r1(0);
    this.readAddr = addr;
    this.readLen = len;
    if (multi) { this.state = 'read_multi'; this.stats.multiReads++; }
    this._queueReadBlock(f);
  }

  _queueReadBlock(f = this._faults()) {
    this.out.fill(0xff, this.nac);
    if (f.removed) return;
    if (this.readAddr + this.readLen > this.store.blocks * BLOCK) {
      this.state = 'cmd';
      return this.out.push(ERROR_TOKEN_RANGE);
    }
    if (f.read_error) {
      this.stats.readErrors++;
      this.lastError = true;
      if (this.state === 'read_multi') this.state = 'cmd';
      return this.out.push(ERROR_TOKEN);
    }
    const lba = Math.floor(this.readAddr / BLOCK);
    const data = new Uint8Array(BLOCK);
    this.store.read(lba, data);
    const part = data.subarray(this.readAddr % BLOCK, this.readAddr % BLOCK + this.readLen);
    this.out.push(TOKEN_SINGLE);
    this.out.bytes(part);
    this.out.push(...u16(crc16(part)));
    this.stats.blocksRead++;
    this.readDoneAt = this.out.shifted + this.out.length;   // when its last byte has gone out
    this.readAddr += this.readLen;
  }

  _stopRead() {
    this.state = 'cmd';
    if (this.out.shifted < this.readDoneAt) this.stats.blocksRead--;   // the block CMD12 cut off was not read
    const stuff = this.out.empty ? 0xff : this.out.shift();
    this.out.clear();
    this.out.push(stuff);                       // the stuff byte after CMD12 (the host skips it)
    this._r1(0);
    this.out.fill(0x00, this.busyStop);
  }

  // --- writes ----------------------------------------------------------------------------------------------
  _write(arg, multi) {
    const addr = this._address(arg, BLOCK);
    if (addr === null) return;
    if (this.kind !== 'sdhc' && this.blockLen !== BLOCK) return this._r1(R1_PARAMETER);  // WRITE_BL_PARTIAL is 0
    this._r1(0);
    this.writeLba = addr / BLOCK;
    this.writeMulti = multi;
    this.state = 'write_token';
    if (multi) this.stats.multiWrites++;
  }

  _writeToken(b) {
    if (b === 0xff) return;                     // the host clocks (Nwr) before the token
    if (this.writeMulti && b === TOKEN_STOP) {  // stop tran: one byte, then busy
      this.state = 'cmd';
      this.out.push(0xff);
      this.out.fill(0x00, this.busy);
      return;
    }
    if (b === (this.writeMulti ? TOKEN_MULTI : TOKEN_SINGLE)) { this.state = 'write_data'; this.got = 0; }
  }

  _writeData(b) {
    this.block[this.got++] = b;
    if (this.got < BLOCK + 2) return;
    const f = this._faults();
    if (f.removed) { this.state = 'cmd'; return; }
    const data = this.block.subarray(0, BLOCK);
    const lba = this.writeLba;
    if (this.cut && this.cut.left < BLOCK) {    // the power goes while this block is programmed
      const { left, tail } = this.cut;
      this.cut = null;
      this.dead = true;
      this.store.writePartial(lba, data, left, tail);
      this.stats.powerCut = { lba, kept: left, tail };
      this.onPowerCut(left, tail);
      return;
    }
    let response = DATA_ACCEPTED;
    if (this.crcOn && crc16(data) !== ((this.block[BLOCK] << 8) | this.block[BLOCK + 1])) response = DATA_CRC_ERROR;
    else if (f.write_error || f.read_only) response = DATA_WRITE_ERROR;
    if (response === DATA_ACCEPTED) {
      this.store.write(lba, data);
      if (this.cut) this.cut.left -= BLOCK;
      this.stats.blocksWritten++;
      this.writeLba++;
    } else {
      this.stats.writeErrors++;
      this.lastError = true;
      if (this.writeMulti) this.writeLba++;
    }
    this.out.push(response);
    this.out.fill(0x00, this.busy);
    this.state = this.writeMulti ? 'write_token' : 'cmd';
  }
}

export function newStats() {
  return { commands: {}, last: [], blocksRead: 0, blocksWritten: 0, multiReads: 0, multiWrites: 0,
           readErrors: 0, writeErrors: 0, crcErrors: 0, removals: 0, powerCut: null };
}

function u32(v) { return [(v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff]; }
function u16(v) { return [(v >> 8) & 0xff, v & 0xff]; }

export { OCR_VDD };
