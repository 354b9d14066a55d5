/**
 * Two corners of the RP2040 that rp2040js leaves out and the rp2 firmware touches.
 *
 * - The inter-core FIFO (SIO FIFO_ST 0x50, FIFO_RD 0x58). rp2040js emulates core 0 only and answers these with
 *   0xffffffff, each read with a console warning. An honest "empty" answer (core 1 held in reset) hangs the rp2
 *   firmware as soon as mpremote connected (in multicore_fifo_pop_blocking: pico-sdk waits for a core that is not there),
 *   so the reads keep rp2040js's answer, without the warning (the firmware's flash writes make several each), and
 *   are counted (stats.json sio_fifo_reads) so a loop spinning on them would show.
 * - The flash chip's 64-bit unique ID (command 0x4B through the SSI, pico-sdk flash_get_unique_id), which is what
 *   machine.unique_id() returns. rp2040js's SSI echoes nothing, so every virtual Pico would be 0000000000000000
 *   and two of them on one gateway the same board. The SSI here answers the ID after the command and its four dummy
 *   bytes, one byte per byte clocked, like a W25Q16JV.
 */
const FIFO_ST = 0x50;
const FIFO_RD = 0x58;
const SSI_DR0 = 0x60;
const CMD_READ_UNIQUE_ID = 0x4b;
const UID_OFFSET = 5;             // command + 4 dummy bytes, then 8 bytes of ID

export function quietCore1Fifo(mcu) {
  const { sio } = mcu;
  const read = sio.readUint32.bind(sio);
  const counter = { reads: 0 };
  sio.readUint32 = (offset) => {
    if (offset === FIFO_ST || offset === FIFO_RD) {
      counter.reads++;
      return 0xffffffff;
    }
    return read(offset);
  };
  return counter;
}

/** uid: 8 bytes (a Buffer) machine.unique_id() will return. */
export function flashUniqueId(mcu, uid) {
  const ssi = mcu.peripherals[0x18000];   // XIP_SSI_BASE 0x18000000
  const read = ssi.readUint32.bind(ssi);
  const write = ssi.writeUint32.bind(ssi);
  let clocked = -1;               // bytes of a 0x4B command clocked so far, -1 outside one
  let answered = 0;
  ssi.writeUint32 = (offset, value) => {
    if (offset === SSI_DR0) {
      if (clocked < 0 && value === CMD_READ_UNIQUE_ID) {
        clocked = 0;
        answered = 0;
      } else if (clocked >= 0) {
        clocked++;
      }
    }
    write(offset, value);
  };
  ssi.readUint32 = (offset) => {
    if (offset !== SSI_DR0 || clocked < 0) return read(offset);
    const i = answered++;
    if (answered >= UID_OFFSET + uid.length) clocked = -1;
    return i >= UID_OFFSET ? uid[i - UID_OFFSET] : 0;
  };
}
