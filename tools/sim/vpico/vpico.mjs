/**
 * The virtual Pico's CPU side: boots a MicroPython rp2 image on rp2040js and carries its USB serial port on
 * stdin/stdout. Started by `python -m tools.sim.vpico` (__main__.py), which owns the pseudo-terminal; node has no
 * openpty, and the process that owns the pty must be the one that outlives a crash of the CPU.
 *
 *   node vpico.mjs --image firmware.uf2 --state DIR --bootrom rom.bin [--pace wall|fast] [--verbose]
 *                  [--uid 16HEX] [--device NAME]... [--no-device NAME]... [--opt NAME.KEY=VALUE]...
 *
 * stdin: bytes to the board's USB CDC (EOF: stop). stdout: bytes from it. stderr: log lines, `vpico: ready` once the
 * board has enumerated (a USB device appearing), `vpico: stopped (why)` at the end. Exit 75: a watchdog reset
 * (machine.reset(), a WDT not fed), to be started again.
 * DIR: flash.bin (the 2 MB flash, write-through), stats.json (emulated cycles and time, every second and at exit),
 * and what the devices keep (ds1307.json, led, ...).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Simulator, LogLevel } from 'rp2040js';
import { readBootrom } from './bootrom.mjs';
import { FlashStore } from './flash.mjs';
import { loadUF2, FLASH_BASE } from './uf2.mjs';
import { CdcHost } from './usb.mjs';
import { I2CRouter } from './i2c.mjs';
import { Runner } from './runner.mjs';
import { quietCore1Fifo, flashUniqueId } from './chip.mjs';
import { DEFAULT_DEVICES, DEVICES, load as loadDevice } from './devices/index.mjs';

// boards.py PICO: the wiring the firmware expects, and so the wiring of the virtual board.
export const PICO_PINS = {
  rtc_i2c: 0, rtc_sda: 4, rtc_scl: 5,
  hb_i2c: 1, hb_sda: 6, hb_scl: 7,
  sd_spi: 1, sd_sck: 10, sd_mosi: 11, sd_miso: 12, sd_cs: 13,
  adc: 26, led: 25,
};

/** The exit status that means "the chip reset itself: start me again" (__main__.py RESET_EXIT). */
const RESET_EXIT = 75;

function log(msg) {
  process.stderr.write(`vpico: ${msg}\n`);
}

class UsageError extends Error {}

function parseArgs(argv) {
  const a = { pace: 'wall', devices: [...DEFAULT_DEVICES], opts: {}, verbose: false };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new UsageError(`${flag} needs a value`);
      return argv[++i];
    };
    if (flag === '--image') a.image = value();
    else if (flag === '--state') a.state = value();
    else if (flag === '--bootrom') a.bootrom = value();
    else if (flag === '--pace') a.pace = value();
    else if (flag === '--verbose') a.verbose = true;
    else if (flag === '--uid') {
      a.uid = value();
      if (!/^[0-9a-f]{16}$/i.test(a.uid)) throw new UsageError(`--uid ${a.uid}: 16 hex digits`);
    }
    else if (flag === '--device') { const d = value(); if (!a.devices.includes(d)) a.devices.push(d); }
    else if (flag === '--no-device') { const d = value(); a.devices = a.devices.filter((x) => x !== d); }
    else if (flag === '--opt') {
      const text = value();
      const m = /^([a-z0-9_]+)\.([a-z0-9_]+)=(.*)$/i.exec(text);
      if (!m) throw new UsageError(`--opt ${text}: write DEVICE.KEY=VALUE (e.g. soil.value=2000)`);
      (a.opts[m[1]] ??= {})[m[2]] = m[3];
    } else throw new UsageError(`unknown argument ${flag}`);
  }
  for (const need of ['image', 'state', 'bootrom']) if (!a[need]) throw new UsageError(`--${need} is required`);
  for (const name of a.devices) {
    if (!DEVICES[name]) throw new UsageError(`--device ${name}: no such device (${Object.keys(DEVICES).join(', ')})`);
  }
  for (const name of Object.keys(a.opts)) {
    if (!a.devices.includes(name)) throw new UsageError(`--opt ${name}.*: no device ${name} on this board`);
  }
  return a;
}

/**
 * rp2040js's logger, to stderr (stdout is the USB line), each distinct message once. Its warnings (peripherals
 * it does not implement: QSPI pads, the SSI's unused registers, ...) come with --verbose only: the stock
 * firmware's boot alone makes twenty of them, none of which changes what the firmware sees.
 */
function makeLogger(verbose) {
  const seen = new Set();
  const once = (level) => (component, message) => {
    const line = `${level} [${component}] ${message}`;
    if (seen.has(line) || seen.size > 200) return;
    seen.add(line);
    log(`rp2040js: ${line}`);
  };
  return { debug() {}, info() {}, warn: verbose ? once('warn') : () => {}, error: once('error') };
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  fs.mkdirSync(args.state, { recursive: true });
  const sim = new Simulator();
  const mcu = sim.rp2040;
  const { clock } = sim;
  mcu.logger = makeLogger(args.verbose);
  const rom = readBootrom(args.bootrom);
  mcu.loadBootrom(rom);                        // resets the chip, flash included: before the flash is read
  const fifo = quietCore1Fifo(mcu);
  // machine.unique_id(): given, or 8 bytes of a hash of the state folder, so each virtual Pico is its own board
  // and keeps its id from run to run.
  const uid = args.uid ? Buffer.from(args.uid, 'hex')
    : crypto.createHash('sha256').update(fs.realpathSync(args.state)).digest().subarray(0, 8);
  flashUniqueId(mcu, uid);
  const flash = new FlashStore(mcu, path.join(args.state, 'flash.bin'), rom);
  const image = loadUF2(fs.readFileSync(args.image), mcu.flash);
  flash.writeBack(image.low, image.high - image.low);   // as the bootloader drive would: the image's bytes only

  const board = {
    mcu,
    clock,
    stateDir: args.state,
    pins: PICO_PINS,
    log,
    i2c: new I2CRouter(mcu, { 0: { sda: 4, scl: 5 }, 1: { sda: 6, scl: 7 } }, log),
    hold: () => runner.hold(),                 // PAIR (i2c_wire.mjs): the CPU waits on another board's answer
    kick: () => runner.kick(),                 // ... and wakes when a wire event arrives
  };
  const attached = [];
  for (const name of args.devices) {
    const mod = await loadDevice(name);
    attached.push([name, mod.attach(board, args.opts[name] || {}) || {}]);
  }

  let ready = false;
  const usb = new CdcHost(mcu, {
    onData: (buf) => process.stdout.write(buf),
    onConnected: () => {
      if (!ready) log('ready');
      ready = true;
    },
  });
  const runner = new Runner(mcu, clock, { pace: args.pace, flash, afterSlice: () => usb.pump() });
  // A watchdog reset (machine.reset(), or the WDT not fed in time) restarts the chip: this process saves what the
  // devices hold and exits with RESET_EXIT, and __main__.py starts a fresh one on the same flash and the same pty.
  mcu.peripherals[0x40058].onWatchdogTrigger = () => stop('watchdog reset', RESET_EXIT);

  const statsFile = path.join(args.state, 'stats.json');
  const wall0 = Date.now();
  const stats = () => {
    const s = {
      cycles: mcu.core.cycles, emulated_s: clock.nanos / 1e9, wall_s: (Date.now() - wall0) / 1000,
      usb_in: usb.bytesIn, usb_out: usb.bytesOut, sio_fifo_reads: fifo.reads, flash_erase: flash.ops.erase, flash_program: flash.ops.program,
    };
    fs.writeFileSync(`${statsFile}.tmp`, JSON.stringify(s));
    fs.renameSync(`${statsFile}.tmp`, statsFile);
  };
  const statsTimer = setInterval(stats, 1000);

  let stopping = false;
  const stop = (why, code = 0) => {
    if (stopping) return;
    stopping = true;
    runner.stop();
    clearInterval(statsTimer);
    for (const [name, dev] of attached) {
      try {
        dev.save?.();
        dev.close?.();
      } catch (e) {
        log(`${name}: ${e.message}`);
      }
    }
    stats();
    flash.close();
    log(`stopped (${why})`);
    process.exit(code);
  };
  process.stdin.on('data', (chunk) => {
    usb.write(chunk);
    runner.kick();
  });
  process.stdin.on('end', () => stop('end of input'));
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(sig, () => stop(sig));
  process.on('SIGUSR2', () => {          // a look inside when a board seems stuck (kill -USR2 <node pid>)
    const { core } = mcu;
    log(`state: pc=0x${core.PC.toString(16)} waiting=${core.waiting} primask=${core.PM} pending=0x${core.pendingInterrupts.toString(16)} `
      + `enabled=0x${core.enabledInterrupts.toString(16)} cycles=${core.cycles} nanos=${clock.nanos} next-alarm=${clock.nanosToNextAlarm} `
      + `usb parked=${!!usb.parked} fifo=${usb.cdc.txFIFO.itemCount} pending-chunks=${usb.pending.length}`);
  });

  mcu.core.PC = FLASH_BASE;                   // boot2 at the start of flash, as the ROM would jump there
  runner.start();
}

main().catch((e) => {
  if (e instanceof UsageError) process.stderr.write(`vpico-usage: ${e.message}\n`);   // __main__.py says it
  else log(`error: ${e.stack || e.message}`);
  process.exit(e instanceof UsageError ? 2 : 1);
});
