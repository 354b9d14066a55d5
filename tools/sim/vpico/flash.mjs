/**
 * The Pico's 2 MB QSPI flash, kept in a file so it persists between runs like a real board's.
 *
 * rp2040js runs code from flash but its SSI (the flash interface) is a stub: an erase or a program would vanish,
 * and LittleFS would never mount. Every flash write the firmware makes goes through two ROM routines
 * (flash_range_erase 'RE' and flash_range_program 'RP'; pico-sdk hardware_flash calls them with XIP off), so the
 * run loop stops at their entry points and FlashStore does the work on mcu.flash, then returns to the caller.
 *
 * Write-through: each erase or program is written to the file at once (the bytes it changed, at their offset), so
 * killing the emulator (a power cut) loses exactly what a real power cut loses: the operation in progress, never a
 * finished one. NOR rules: erase sets to 0xFF, program can only clear bits (AND).
 */
import fs from 'node:fs';
import { romFunction } from './bootrom.mjs';

export const FLASH_SIZE = 2 * 1024 * 1024;

export class FlashStore {
  /** Open (or create, erased) `file` and copy it into mcu.flash. */
  constructor(mcu, file, rom) {
    this.mcu = mcu;
    this.file = file;
    this.erasePC = romFunction(rom, 'RE');
    this.programPC = romFunction(rom, 'RP');
    this.ops = { erase: 0, program: 0 };
    const fresh = !fs.existsSync(file);
    this.fd = fs.openSync(file, fresh ? 'w+' : 'r+');
    if (fresh) {
      mcu.flash.fill(0xff, 0, FLASH_SIZE);
      this.writeBack(0, FLASH_SIZE);
    } else {
      const n = fs.readSync(this.fd, mcu.flash, 0, FLASH_SIZE, 0);
      if (n < FLASH_SIZE) mcu.flash.fill(0xff, n, FLASH_SIZE);
    }
    this.fresh = fresh;
  }

  /** Write mcu.flash[offset, offset+length) to the file. */
  writeBack(offset, length) {
    fs.writeSync(this.fd, this.mcu.flash, offset, length, offset);
  }

  /**
   * Called by the run loop before each instruction whose PC is erasePC or programPC: do the ROM routine's work
   * (arguments in r0-r2, as the ROM's ABI has them) and return to the caller (LR).
   */
  intercept(pc) {
    const { core } = this.mcu;
    const r = core.registers;
    const offset = r[0] >>> 0;
    if (pc === this.erasePC) {          // flash_range_erase(addr, count, block_size, block_cmd)
      const count = r[1] >>> 0;
      this.check(offset, count, 'erase');
      this.mcu.flash.fill(0xff, offset, offset + count);
      this.writeBack(offset, count);
      this.ops.erase++;
    } else {                            // flash_range_program(addr, data, count)
      const src = r[1] >>> 0;
      const count = r[2] >>> 0;
      this.check(offset, count, 'program');
      for (let i = 0; i < count; i++) this.mcu.flash[offset + i] &= this.mcu.readUint8(src + i);
      this.writeBack(offset, count);
      this.ops.program++;
    }
    core.PC = core.LR & ~1;
  }

  check(offset, count, what) {
    if (offset + count > FLASH_SIZE) throw new Error(`flash ${what} at 0x${offset.toString(16)}+${count}: past 2 MB`);
  }

  close() {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
  }
}
