/**
 * The CPU loop: rp2040js executes one instruction per call, and this decides how many, and when.
 *
 * rp2040js's own Simulator.execute() runs flat out and jumps the clock over every WFI, so a board sleeping in
 * time.sleep_ms(1000) would sample thousands of times a wall second. --pace wall (default) keeps emulated time at or
 * behind the wall clock: the core runs while it has work; when it waits for an interrupt the clock may jump only
 * up to the wall time, and the loop sleeps (on a node timer) until then, so the board's 1 s sampling is 1 s for the
 * gateway. Code that is CPU-bound runs at whatever speed the host gives (0.1-0.2x a real RP2040 here), so the
 * emulated clock lags then, and catches up in the next sleep. --pace fast jumps over every sleep (benchmarks).
 *
 * Per instruction the loop also checks the two flash ROM routines (flash.mjs), which it performs itself.
 */
const CYCLE_NANOS = 1e9 / 125e6;          // 125 MHz, the Pico's clk_sys as MicroPython sets it
const BATCH = 20000;                      // instructions between checks of the wall clock
const SLICE_MS = 10;                      // at most this much wall time before node's event loop runs again
const MAX_SLEEP_MS = 50;                  // an idle board is looked at this often (input also wakes it)

export class Runner {
  /** afterSlice(): called after each slice (USB pumping). */
  constructor(mcu, clock, { pace = 'wall', flash, afterSlice = () => {} }) {
    if (pace !== 'wall' && pace !== 'fast') throw new Error(`--pace ${pace}: wall or fast`);
    this.mcu = mcu;
    this.clock = clock;
    this.pace = pace;
    this.flash = flash;
    this.afterSlice = afterSlice;
    this.timer = null;
    this.running = false;
    this.holds = 0;                       // hold(): the CPU stands still (a controller waiting on a wire)
    this.wallStart = performance.now();
    this.nanosStart = clock.nanos;
    this.step = this.step.bind(this);
  }

  start() {
    this.running = true;
    this.schedule(0);
  }

  stop() {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** Stop the CPU and its clock until the returned release() (PAIR: an I2C transfer waiting for a board in another
   * process, as a stretched SCL holds it). Node's event loop keeps running. */
  hold() {
    this.holds++;
    let open = true;
    return () => {
      if (!open) return;
      open = false;
      if (--this.holds === 0 && this.running) {
        if (this.stalled) {                            // the step chain ended at the hold: start it again
          this.stalled = false;
          setImmediate(this.step);
        } else {
          this.kick();                                 // a sleeping chain runs now; a scheduled one is on its way
        }
      }
    };
  }

  /** Input arrived: run now instead of at the end of the current sleep. */
  kick() {
    if (this.running && this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
      setImmediate(this.step);
    }
  }

  schedule(ms) {
    if (!this.running) return;
    if (ms <= 0) setImmediate(this.step);
    else this.timer = setTimeout(() => { this.timer = null; this.step(); }, ms);
  }

  /** Emulated nanoseconds the clock may reach now. */
  limit() {
    if (this.pace === 'fast') return Infinity;
    return this.nanosStart + (performance.now() - this.wallStart) * 1e6;
  }

  step() {
    if (!this.running) return;
    if (this.holds) {                     // release() starts the chain again
      this.stalled = true;
      return;
    }
    const { mcu, clock, flash } = this;
    const { core } = mcu;
    const erasePC = flash.erasePC;
    const programPC = flash.programPC;
    const sliceEnd = performance.now() + SLICE_MS;
    let idleNanos = -1;                   // >= 0: the core sleeps until then (beyond what the wall allows)
    do {
      const limit = this.limit();
      for (let i = 0; i < BATCH && !this.holds; i++) {
        if (core.waiting) {
          const next = clock.nanosToNextAlarm;
          if (next <= 0 && !clock.nextAlarm) {         // nothing scheduled: only input can wake it
            if (limit !== Infinity && limit > clock.nanos) clock.tick(limit - clock.nanos);   // time passes
            idleNanos = Infinity;
            break;
          }
          if (clock.nanos + next > limit) {            // wall pace: sleep for real until then
            if (limit > clock.nanos) clock.tick(limit - clock.nanos);
            idleNanos = clock.nanos + clock.nanosToNextAlarm;
            break;
          }
          clock.tick(next);
        } else {
          const pc = core.PC;
          if (pc === erasePC || pc === programPC) {
            flash.intercept(pc);
          } else {
            clock.tick(core.executeInstruction() * CYCLE_NANOS);
          }
        }
      }
    } while (idleNanos < 0 && !this.holds && performance.now() < sliceEnd);
    this.afterSlice();
    if (this.holds) {
      this.stalled = true;
      return;
    }
    if (idleNanos < 0) {
      this.schedule(0);
    } else if (!core.waiting) {
      this.schedule(0);                   // the slice's USB pump woke the core
    } else if (idleNanos === Infinity) {
      this.schedule(MAX_SLEEP_MS);
    } else {
      this.schedule(Math.min(MAX_SLEEP_MS, Math.max(1, (idleNanos - this.limit()) / 1e6)));
    }
  }
}
