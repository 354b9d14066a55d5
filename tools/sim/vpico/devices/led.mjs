/**
 * The Pico's LED on GP25 (boards.py PICO "led": Pin("LED")). Its state is the pin's output, shown two ways:
 * DIR/led holds `on` or `off` (rewritten at each change, so a test or a person can look), and with
 * --opt led.log=1 each change is a log line. `changes` counts them.
 */
import fs from 'node:fs';
import path from 'node:path';

export function attach(board, opts = {}) {
  const pin = Number(opts.pin ?? 25);
  const gpio = board.mcu.gpio[pin];
  const file = path.join(board.stateDir, 'led');
  const state = { on: false, changes: 0 };
  const show = () => fs.writeFileSync(file, state.on ? 'on\n' : 'off\n');
  gpio.addListener(() => {
    const on = gpio.outputEnable && gpio.outputValue;
    if (on === state.on) return;
    state.on = on;
    state.changes++;
    show();
    if (opts.log) board.log(`led: ${on ? 'on' : 'off'}`);
  });
  show();
  return { state };
}
