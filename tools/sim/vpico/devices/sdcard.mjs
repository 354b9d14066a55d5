// The virtual Pico's SD card: an SD card in SPI mode on SPI1 (SCK GP10, MOSI GP11, MISO GP12), chip select on GP13,
// as firmware/micropython/boards.py wires the Pico. The protocol is sdcard_spi.mjs, the blocks sdcard_image.mjs;
// this file plugs them into the emulated RP2040 and into the card's folder.
//
//   --device sdcard [--opt sdcard.capacity=16M] [--opt sdcard.kind=sdhc|sdsc|sdsc-v1] [--opt sdcard.dir=PATH]
//
// The card's folder (default <board state>/sd) holds:
//   card.img     the card's blocks (made and FAT-formatted when missing: a card from a shop)
//   faults.json  faults a test flips while the board runs, read at every command and CS edge (same names as the
//                file-level card, tools/sim/host/sdcard.py): {"removed": true}, {"write_error": true},
//                {"read_error": true}, {"read_only": true}, {"power_cut_after": {"nbytes": N, "tail": "prefix"}};
//                "full" is a filesystem's state, not a card's: give the card a small capacity instead.
//                Write it atomically (a temporary file, then rename). A power cut that fired is taken out of it.
//   state.json   what the card saw, for tests: commands by name, blocks read and written, errors, the last
//                commands, whether it is initialised, the power cut that fired (rewritten at most every 50 ms,
//                and when the board stops)
//
// The card answers only while GP10-12 are given to SPI (GPIO function 1) and SPI1 is in mode 0 or 3 with 8-bit
// frames: a firmware that wires the card elsewhere finds an empty slot, as it would on a real board.

import fs from 'node:fs';
import path from 'node:path';
import { SpiCard, newStats } from './sdcard_spi.mjs';
import { openImage } from './sdcard_image.mjs';
import { capacityError } from './sdcard_regs.mjs';

export const SPI_BUS = 1;
export const PIN_SCK = 10;
export const PIN_MOSI = 11;
export const PIN_MISO = 12;
export const PIN_CS = 13;
const FUNC_SPI = 1;
const STATE_EVERY_MS = 50;
const DEFAULT_HZ = 1e6;                  // SPI clock when the divisor is not set yet

export class OptionError extends Error {}

export function parseSize(text) {
  const m = /^\s*(\d+)\s*([kmg]?)(i?b)?\s*$/i.exec(String(text));
  if (!m) throw new OptionError(`sdcard: capacity ${JSON.stringify(text)} is not a size (16M, 512K, 2G, bytes)`);
  return Number(m[1]) * { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2].toLowerCase()];
}

// faults.json, read again only when its (mtime, size, inode) changed: one stat per look.
export function faultFile(file) {
  let sig = null;
  let faults = {};
  return {
    file,
    read() {
      let st;
      try {
        st = fs.statSync(file);
      } catch {
        if (sig !== null) { sig = null; faults = {}; }
        return faults;
      }
      const now = `${st.mtimeMs}/${st.size}/${st.ino}`;
      if (now === sig) return faults;
      try {
        const parsed = JSON.parse(fs.readFileSync(file, 'utf8'));
        if (parsed && typeof parsed === 'object') faults = parsed;
        sig = now;
      } catch {
        // half-written or not JSON: look again when it changes
      }
      return faults;
    },
    forget(key) {                               // a one-shot fault fired: take it out of the file
      try {
        const cur = JSON.parse(fs.readFileSync(file, 'utf8'));
        delete cur[key];
        fs.writeFileSync(`${file}.tmp`, JSON.stringify(cur));
        fs.renameSync(`${file}.tmp`, file);
      } catch {
        // no file or not JSON: nothing to take out
      }
    },
  };
}

export function makeCard({ dir, capacity = 16 * 1024 ** 2, kind = 'sdhc', onPowerCut = () => {}, timing = {},
                           log = () => {} }) {
  const problem = capacityError(kind, capacity);
  if (problem) throw new OptionError(`sdcard: ${problem}`);
  fs.mkdirSync(dir, { recursive: true });
  const store = openImage(path.join(dir, 'card.img'), capacity);
  const faults = faultFile(path.join(dir, 'faults.json'));
  const stats = newStats();
  const statePath = path.join(dir, 'state.json');
  let timer = null;
  let closed = false;
  const writeState = () => {
    if (timer) { clearTimeout(timer); timer = null; }
    const state = { kind, capacity, blocks: store.blocks, spi_mode: card.spiMode, initialised: card.ready,
      removed: card.removedNow, ...stats };
    fs.writeFileSync(`${statePath}.tmp`, JSON.stringify(state, null, 1));
    fs.renameSync(`${statePath}.tmp`, statePath);
  };
  const touched = () => {
    if (!timer) {
      timer = setTimeout(writeState, STATE_EVERY_MS);
      if (timer.unref) timer.unref();
    }
  };
  const card = new SpiCard({
    kind, store, stats, ...timing,
    faults: () => faults.read(),
    onPowerCut: (kept, tail) => {
      faults.forget('power_cut_after');
      writeState();
      log(`sdcard: power cut while block ${stats.powerCut.lba} was programmed (${kept} of 512 bytes kept, ${tail})`);
      onPowerCut(kept, tail);
    },
  });
  const original = card.exchange.bind(card);
  card.exchange = (b) => { touched(); return original(b); };
  writeState();
  return {
    card, store, stats, dir,
    save: writeState,
    close() {
      if (closed) return;
      closed = true;
      writeState();
      store.close();
    },
  };
}

// The device plug-in: attach(board, opts) -> { save, close }.
export function attach(board, opts = {}) {
  const mcu = board.mcu;
  const dir = opts.dir ? path.resolve(opts.dir) : path.join(board.stateDir, 'sd');
  const capacity = opts.capacity !== undefined ? parseSize(opts.capacity) : 16 * 1024 ** 2;
  const kind = opts.kind || 'sdhc';
  if (!['sdhc', 'sdsc', 'sdsc-v1'].includes(kind)) throw new OptionError(`sdcard: kind ${kind} is not sdhc, sdsc or sdsc-v1`);
  const log = board.log || (() => {});
  const cutPower = board.powerCut
    ? (why) => board.powerCut(why)
    : () => process.kill(process.pid, 'SIGKILL');
  const dev = makeCard({ dir, capacity, kind, log,
    onPowerCut: (kept, tail) => cutPower(`sd card power cut (${kept} bytes of the block kept, ${tail})`) });
  const spi = mcu.spi[SPI_BUS];
  const wired = () => mcu.gpio[PIN_SCK].functionSelect === FUNC_SPI && mcu.gpio[PIN_MOSI].functionSelect === FUNC_SPI
    && mcu.gpio[PIN_MISO].functionSelect === FUNC_SPI && spi.dataBits === 8 && (spi.spiMode === 0 || spi.spiMode === 3);
  // A byte takes its eight SPI clocks: the reply comes back through a clock alarm, so the transmit FIFO fills and
  // its DMA request drops as on the chip. (Completing at once starves the receive DMA channel: rp2040js runs the
  // transmit channel's next transfer, due at the same instant, before the receive one, the receive FIFO overflows
  // after 8 bytes and a 512-byte DMA read never ends.)
  const clock = board.clock || mcu.clock;
  let reply = 0xff;
  const done = clock.createAlarm(() => spi.completeTransmit(reply));
  spi.onTransmit = (value) => {
    reply = wired() ? dev.card.exchange(value) : 0xff;
    done.schedule(Math.round(8e9 / (spi.clockFrequency || DEFAULT_HZ)));
  };
  const cs = mcu.gpio[PIN_CS];
  dev.card.select(!cs.outputValue && cs.outputEnable);
  const unlisten = cs.addListener(() => dev.card.select(cs.outputEnable && !cs.outputValue));
  log(`sdcard: ${kind} ${capacity} bytes on SPI${SPI_BUS} (CS GP${PIN_CS}), ${path.join(dir, 'card.img')}`);
  return {
    save: dev.save,
    close() { unlisten(); dev.close(); },
    card: dev.card,
  };
}
