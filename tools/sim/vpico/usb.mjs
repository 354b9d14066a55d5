/**
 * The USB host side of the Pico's CDC serial port (what /dev/ttyACM0 is on a real host).
 *
 * rp2040js's USBCDC enumerates the device and carries bytes both ways, but it answers every OUT read at once, with
 * an empty packet when it has nothing to send; the firmware re-arms the endpoint and USB interrupts take most of
 * the emulated CPU (the probe measured 3x the cycles for a busy loop). A real host NAKs until it has data, so this
 * host parks the read until there is a byte to send.
 */
import { USBCDC } from 'rp2040js';

export class CdcHost {
  /** onData(Uint8Array): bytes the board wrote; onConnected(): the board has enumerated and set DTR. */
  constructor(mcu, { onData, onConnected }) {
    this.cdc = new USBCDC(mcu.usbCtrl);
    this.pending = [];      // chunks (Uint8Array) the host has not handed to the FIFO yet
    this.head = 0;          // bytes of pending[0] already handed over
    this.parked = null;
    this.connected = false;
    this.bytesIn = 0;       // host -> board
    this.bytesOut = 0;      // board -> host
    this.cdc.onDeviceConnected = () => {
      this.connected = true;
      onConnected?.();
    };
    this.cdc.onSerialData = (buf) => {
      this.bytesOut += buf.length;
      onData(buf);
    };
    const answer = mcu.usbCtrl.onEndpointRead;        // USBCDC's handler: sends what its FIFO holds
    this.answer = answer;
    mcu.usbCtrl.onEndpointRead = (endpoint, size) => {
      if (endpoint === this.cdc.outEndpoint && this.cdc.txFIFO.empty) {
        this.parked = [endpoint, size];
        return;
      }
      answer(endpoint, size);
    };
  }

  /** Queue bytes for the board. */
  write(bytes) {
    if (bytes.length) this.pending.push(Uint8Array.from(bytes));
  }

  /** Move queued bytes into the CDC FIFO and answer a parked read; call once per run slice. */
  pump() {
    const fifo = this.cdc.txFIFO;
    let moved = 0;
    while (this.pending.length && !fifo.full) {
      const chunk = this.pending[0];
      this.cdc.sendSerialByte(chunk[this.head++]);
      moved++;
      if (this.head === chunk.length) {
        this.pending.shift();
        this.head = 0;
      }
    }
    this.bytesIn += moved;
    if (this.parked && !fifo.empty) {
      const [endpoint, size] = this.parked;
      this.parked = null;
      this.answer(endpoint, size);
    }
  }

  get busy() {
    return this.pending.length > 0 || !this.cdc.txFIFO.empty;
  }
}
