// I2C target (slave) mode for rp2040js 1.4.1's I2C peripheral, and the controller-mode gaps a real machine.I2C
// runs into against a target that is another emulated chip. Written from the RP2040 datasheet, chapter 4.3
// (DW_apb_i2c): 4.3.10.1 slave mode operation, 4.3.17 the register list.
//
// rp2040js's RPI2C is a controller only: IC_CON's mode bits, IC_SAR, RD_REQ, RX_DONE and the slave side of
// START_DET/STOP_DET are never used, IC_INTR_MASK writes are ignored (so no I2C interrupt ever reaches the NVIC),
// and a write to IC_DATA_CMD always starts a controller transaction. This module extends ONE instance of the
// published class (`extendI2C(mcu.i2c[1])`: the object keeps its identity in the bus map, its prototype becomes a
// subclass of RPI2C), so the project runs on rp2040js 1.4.1 as published.
//
// The target side is driven by "bus events" that a wire delivers on behalf of a remote controller (i2c_wire.mjs):
//
//   busStart(address, read, repeated) -> ack       START or repeated START with an address (synchronous: the
//                                                   DW_apb_i2c ACKs its address in hardware, no software involved)
//   busWrite(byte, done(ack))                       a data byte from the controller; `done` may come later: with
//                                                   IC_CON.RX_FIFO_FULL_HLD_CTRL and a full RX FIFO the target
//                                                   holds SCL low (clock stretching) until the firmware reads
//   busRead(ack, done(byte))                        the controller clocks a byte out of us and then ACKs it (more
//                                                   to come) or NACKs it (the last); with the TX FIFO empty the
//                                                   target raises RD_REQ and stretches until the firmware writes
//                                                   IC_DATA_CMD
//   busStop()                                       STOP
//   busIdle()                                       the controller vanished mid-transaction (its board lost power):
//                                                   no STOP is seen, held bytes are dropped; the next START resets
//
// What MicroPython v1.27's ports/rp2/machine_i2c_target.c relies on, and so what is modelled:
// - slave mode when IC_CON.MASTER_MODE = 0 and IC_SLAVE_DISABLE = 0, address match against IC_SAR (7 bit; 10 bit
//   when IC_CON.IC_10BITADDR_SLAVE, the wire carries the full address), general call (address 0) when
//   IC_ACK_GENERAL_CALL;
// - RX FIFO (16) with RX_FULL as a level (raw bit set while IC_RXFLR > IC_RX_TL, as the datasheet says: "cleared
//   by hardware when the buffer level goes below the threshold"), RX_OVER when full without the hold bit;
// - RD_REQ per byte requested while the TX FIFO is empty; a byte written to IC_DATA_CMD in slave mode goes to the
//   TX FIFO (the CMD bit is ignored) and answers a held read; data left in the TX FIFO when a read is addressed is
//   flushed with TX_ABRT / ABRT_SLVFLUSH_TXFIFO (datasheet 4.3.10.1.2 step 4), and while TX_ABRT is raw-set the
//   TX FIFO takes no data until IC_CLR_TX_ABRT is read;
// - RX_DONE when the controller NACKs a byte we sent (the last of a read);
// - START_DET at every START or repeated START on the bus, RESTART_DET at a repeated START while addressed,
//   STOP_DET at a STOP (only while addressed when IC_CON.STOP_DET_IFADDRESSED), ACTIVITY;
// - IC_INTR_MASK, IC_INTR_STAT, IC_RAW_INTR_STAT, IC_CLR_* (incl. IC_CLR_RESTART_DET), IC_STATUS.SLV_ACTIVITY,
//   IC_ENABLE_STATUS, IC_SLV_DATA_NACK_ONLY, IC_ACK_GENERAL_CALL; the combined interrupt line to the NVIC.
//
// Controller-mode gaps fixed here (pico-sdk's i2c_write_blocking_internal relies on them):
// - after an abort (a NACKed address, a NACKed byte) the TX FIFO is flushed, so TX_EMPTY (a level in hardware:
//   TX FIFO at or below IC_TX_TL) is set: rp2040js left it clear, and the SDK's wait for TX_EMPTY ran into its
//   timeout (ETIMEDOUT instead of the EIO a real Pico gives for a missing device);
// - IC_TX_ABRT_SOURCE is cleared by IC_CLR_TX_ABRT / IC_CLR_INTR only, not by reading it (datasheet 4.3.17);
// - IC_INTR_MASK is writable (a controller with interrupts, e.g. a DMA driver, needs it too).
//
// Not modelled: 10-bit address phases on the wire (the address arrives whole), SDA hold/setup timing, bus speed,
// DMA handshakes, IC_SLV_RX_DATA_LOST, arbitration between two controllers.

import { RPI2C } from 'rp2040js';

// Registers (datasheet 4.3.17). rp2040js implements the others.
const IC_CON = 0x00;
const IC_SAR = 0x08;
const IC_DATA_CMD = 0x10;
const IC_INTR_MASK = 0x30;
const IC_CLR_INTR = 0x40;
const IC_CLR_RD_REQ = 0x50;
const IC_CLR_TX_ABRT = 0x54;
const IC_ENABLE = 0x6c;
const IC_STATUS = 0x70;
const IC_TX_ABRT_SOURCE = 0x80;
const IC_SLV_DATA_NACK_ONLY = 0x84;
const IC_ACK_GENERAL_CALL = 0x98;
const IC_ENABLE_STATUS = 0x9c;
const IC_CLR_RESTART_DET = 0xa8;

// IC_CON
const MASTER_MODE = 1 << 0;
const IC_10BITADDR_SLAVE = 1 << 3;
const IC_SLAVE_DISABLE = 1 << 6;
const STOP_DET_IFADDRESSED = 1 << 7;
const RX_FIFO_FULL_HLD_CTRL = 1 << 9;

// IC_STATUS
const SLV_ACTIVITY = 1 << 6;
const ACTIVITY = 1 << 0;

// IC_RAW_INTR_STAT / IC_INTR_MASK / IC_INTR_STAT
const R_RX_OVER = 1 << 1;
const R_RX_FULL = 1 << 2;
const R_TX_EMPTY = 1 << 4;
const R_RD_REQ = 1 << 5;
const R_TX_ABRT = 1 << 6;
const R_RX_DONE = 1 << 7;
const R_ACTIVITY = 1 << 8;
const R_STOP_DET = 1 << 9;
const R_START_DET = 1 << 10;
const R_GEN_CALL = 1 << 11;
const R_RESTART_DET = 1 << 12;
const INTR_ALL = 0x1fff;

// IC_TX_ABRT_SOURCE
const ABRT_SLVFLUSH_TXFIFO = 1 << 13;
const ABRT_SBYTE_NORSTRT = 1 << 9;   // the one bit IC_CLR_TX_ABRT leaves
const TX_FLUSH_CNT_SHIFT = 23;

const ENABLE = 1 << 0;

/** RPI2C with target mode. Use extendI2C(instance): rp2040js builds its peripherals itself. */
export class RPI2CTarget extends RPI2C {
  initTarget() {
    this.slvDataNackOnly = 0;
    this.ackGeneralCall = 1;        // reset value 1
    this.addressed = false;          // a START to our address, until STOP (or the controller's loss)
    this.reading = false;            // addressed for read (slave-transmitter)
    this.generalCall = false;
    this.heldWrite = null;           // {byte, done}: a byte waiting for room in the RX FIFO (SCL held low)
    this.heldRead = null;            // {ack, done}: a read waiting for the firmware's byte (RD_REQ, SCL low)
    this.stats = { starts: 0, nacks: 0, written: 0, read: 0, rdReq: 0, stretched: 0 };
    return this;
  }

  /** In slave mode: IC_CON.MASTER_MODE clear and IC_SLAVE_DISABLE clear (datasheet: they must agree). */
  get targetMode() {
    return !(this.control & MASTER_MODE) && !(this.control & IC_SLAVE_DISABLE);
  }

  get targetEnabled() {
    return !!(this.enable & ENABLE) && this.targetMode;
  }

  // --- levels the firmware polls ------------------------------------------------------------------------------

  updateRxFull() {
    if (this.rxFIFO.itemCount > this.rxThreshold) this.setInterrupts(R_RX_FULL);
    else this.clearInterrupts(R_RX_FULL);
  }

  setInterrupts(mask) {
    // rp2040js tests `intRaw & mask`, so with several bits one already set leaves the others clear.
    if ((this.intRaw & mask) !== mask) {
      this.intRaw |= mask;
      this.checkInterrupts();
    }
  }

  abort(reason) {
    super.abort(reason);
    // The FIFO is flushed: TX_EMPTY is a level (TX FIFO at or below IC_TX_TL), so it is set now.
    if (this.txFIFO.itemCount <= this.txThreshold) this.setInterrupts(R_TX_EMPTY);
  }

  // --- the bus side: events from a remote controller ---------------------------------------------------------

  busStart(address, read, repeated) {
    if (!this.targetEnabled) return false;
    this.setInterrupts(R_START_DET | R_ACTIVITY);
    const wasAddressed = this.addressed;
    this.releaseHeld();
    const sar = this.control & IC_10BITADDR_SLAVE ? this.slaveAddress & 0x3ff : this.slaveAddress & 0x7f;
    const general = address === 0 && !read && !!(this.ackGeneralCall & 1);
    if (address !== sar && !general) {
      this.addressed = false;
      this.stats.nacks++;
      return false;
    }
    if (repeated && wasAddressed) this.setInterrupts(R_RESTART_DET);
    this.addressed = true;
    this.reading = read;
    this.generalCall = general;
    this.stats.starts++;
    if (read && !this.txFIFO.empty) {
      // "If there is any data remaining in the TX FIFO before receiving the read request, then DW_apb_i2c asserts
      // a TX_ABRT interrupt to flush the old data from the TX FIFO."
      this.abortSource = ABRT_SLVFLUSH_TXFIFO | (this.txFIFO.itemCount << TX_FLUSH_CNT_SHIFT);
      this.txFIFO.reset();
      this.setInterrupts(R_TX_ABRT);
    }
    return true;
  }

  busWrite(byte, done) {
    if (!this.addressed || this.reading || !this.targetEnabled || (this.slvDataNackOnly & 1)) {
      done(false);
      return;
    }
    if (this.generalCall) this.setInterrupts(R_GEN_CALL);
    if (this.rxFIFO.full) {
      if (this.control & RX_FIFO_FULL_HLD_CTRL) {
        this.stats.stretched++;
        this.heldWrite = { byte, done };   // released by a read of IC_DATA_CMD
        return;
      }
      this.setInterrupts(R_RX_OVER);        // the byte is lost, the controller still sees an ACK
      done(true);
      return;
    }
    this.rxFIFO.push(byte & 0xff);
    this.stats.written++;
    this.updateRxFull();
    done(true);
  }

  busRead(ack, done) {
    if (!this.addressed || !this.reading || !this.targetEnabled) {
      done(0xff);                            // nobody drives SDA: the pull-up reads as ones
      return;
    }
    if (!this.txFIFO.empty) {
      this.sendByte(ack, done);
      return;
    }
    this.stats.rdReq++;
    this.heldRead = { ack, done };          // released by a write of IC_DATA_CMD
    this.setInterrupts(R_RD_REQ);
  }

  busStop() {
    this.releaseHeld();
    if (!this.targetEnabled) {
      this.addressed = false;
      return;
    }
    if (this.addressed || !(this.control & STOP_DET_IFADDRESSED)) this.setInterrupts(R_STOP_DET);
    this.addressed = false;
    this.reading = false;
    this.generalCall = false;
  }

  busIdle() {
    this.releaseHeld();
    this.addressed = false;
    this.reading = false;
  }

  sendByte(ack, done) {
    const value = this.txFIFO.pull() & 0xff;
    this.stats.read++;
    if (!ack) this.setInterrupts(R_RX_DONE);  // the controller NACKed our byte: the transmission is done
    done(value);
  }

  releaseHeld() {
    // A START or STOP ends what was held: a real controller cannot send either while SCL is held low, so this only
    // happens when a wire gives up on a target (its answer lost); the held byte reads as ones.
    if (this.heldRead) {
      const { done } = this.heldRead;
      this.heldRead = null;
      done(0xff);
    }
    if (this.heldWrite) {
      const { done } = this.heldWrite;
      this.heldWrite = null;
      done(false);
    }
  }

  // --- registers -----------------------------------------------------------------------------------------------

  readUint32(offset) {
    if (!this.targetMode) {
      if (offset === IC_TX_ABRT_SOURCE) return this.abortSource;   // not clear-on-read
      if (offset === IC_CLR_RESTART_DET) return this.clearInterrupts(R_RESTART_DET);
      if (offset === IC_SLV_DATA_NACK_ONLY) return this.slvDataNackOnly;
      if (offset === IC_ACK_GENERAL_CALL) return this.ackGeneralCall;
      if (offset === IC_CLR_INTR) {
        const r = super.readUint32(offset);
        return this.clearInterrupts(R_RESTART_DET) | r;
      }
      return super.readUint32(offset);
    }
    switch (offset) {
      case IC_DATA_CMD: {
        if (this.rxFIFO.empty) return super.readUint32(offset);   // RX_UNDER, 0
        const value = this.rxFIFO.pull() & 0xff;
        if (this.heldWrite) {
          const { byte, done } = this.heldWrite;
          this.heldWrite = null;
          this.rxFIFO.push(byte & 0xff);
          this.stats.written++;
          done(true);
        }
        this.updateRxFull();
        return value;
      }
      case IC_STATUS:
        return (super.readUint32(offset) & ~(SLV_ACTIVITY | ACTIVITY)) |
          (this.addressed ? SLV_ACTIVITY | ACTIVITY : 0);
      case IC_TX_ABRT_SOURCE:
        return this.abortSource;
      case IC_CLR_INTR: {
        const r = super.readUint32(offset) | this.clearInterrupts(R_RESTART_DET);
        this.updateRxFull();
        return r;
      }
      case IC_CLR_RESTART_DET:
        return this.clearInterrupts(R_RESTART_DET);
      case IC_CLR_RD_REQ:
        return this.clearInterrupts(R_RD_REQ);
      case IC_CLR_TX_ABRT:
        return super.readUint32(offset);
      case IC_SLV_DATA_NACK_ONLY:
        return this.slvDataNackOnly;
      case IC_ACK_GENERAL_CALL:
        return this.ackGeneralCall;
      case IC_ENABLE_STATUS:
        return this.enable & ENABLE;
      default:
        return super.readUint32(offset);
    }
  }

  writeUint32(offset, value) {
    switch (offset) {
      case IC_INTR_MASK:
        this.intEnable = value & INTR_ALL;
        this.checkInterrupts();
        return;
      case IC_SLV_DATA_NACK_ONLY:
        this.slvDataNackOnly = value & 1;
        return;
      case IC_ACK_GENERAL_CALL:
        this.ackGeneralCall = value & 1;
        return;
      case IC_CON:
      case IC_SAR:
        super.writeUint32(offset, value);
        return;
      case IC_ENABLE:
        if (this.targetMode) {
          if (!(value & ENABLE)) {
            this.releaseHeld();
            this.addressed = false;
          }
          // No controller commands in slave mode: keep rp2040js's controller state machine out of it.
          this.enable = value & ENABLE;
          if (!(value & ENABLE)) {
            this.txFIFO.reset();
            this.rxFIFO.reset();
            this.updateRxFull();
          }
          return;
        }
        super.writeUint32(offset, value);
        return;
      case IC_DATA_CMD:
        if (this.targetMode) {
          // Slave-transmitter data: into the TX FIFO (bit 8, CMD, does not set a direction for a slave).
          if (this.intRaw & R_TX_ABRT) return;          // flushed state until IC_CLR_TX_ABRT is read
          if (this.txFIFO.full) {
            this.setInterrupts(R_TX_OVER_BIT);
            return;
          }
          this.txFIFO.push(value & 0xff);
          this.clearInterrupts(R_TX_EMPTY);
          if (this.heldRead) {
            const { ack, done } = this.heldRead;
            this.heldRead = null;
            this.sendByte(ack, done);
          }
          if (this.txFIFO.itemCount <= this.txThreshold) this.setInterrupts(R_TX_EMPTY);
          return;
        }
        super.writeUint32(offset, value);
        return;
      default:
        super.writeUint32(offset, value);
    }
  }
}

const R_TX_OVER_BIT = 1 << 3;

/** Give one rp2040js RPI2C instance (mcu.i2c[0] or [1]) target mode and the controller fixes. Idempotent. */
export function extendI2C(i2c) {
  if (i2c instanceof RPI2CTarget) return i2c;
  Object.setPrototypeOf(i2c, RPI2CTarget.prototype);
  return i2c.initTarget();
}
