"""The board's program: read config.json, start the board (startup.py, dropped after start-up), loop.

main.py imports it (a board runs main.py only as source, and compiling this on the board would cost 432 B of heap
more than loading it as .mpy).

The counterpart of tools/sim/vboard/board.py on a real board (README.md in this folder: flashing, config, FAT vs littlefs).
`start()` and `loop()` can be driven step by step (tests/test_micropython_port.py runs it under the real
MicroPython interpreter on a simulated `machine`).
"""

import gc
import sys
import time

import machine
from micropython import const

_RESET_DELAY_MS = const(5000)


def _log(msg):
    # On a board stderr is the same USB line as the frames; a log line carries no '$', so the gateway's framer
    # discards it (counted as line noise) and a serial monitor shows it.
    print("soil: " + msg, file=sys.stderr)


def start(cfg=None, serial=None):
    """Read config.json (unless `cfg` is given), build everything and start it (startup.py), then drop the modules
    only start-up runs (once: their code is garbage from here on), on a board without a pair the pair's module too.
    Returns (hal, collector)."""
    import startup
    c = None
    try:
        hal, c = startup.start(cfg, serial, _log)
        return hal, c
    finally:
        for name in startup.BOOT_ONLY + (startup.PAIR_ONLY if c is not None and c.pair is None else ()):
            _drop(name)
        gc.collect()


def _drop(name):
    """Forget module `name`: from sys.modules and from its package's attributes, which refer to it too."""
    sys.modules.pop(name, None)
    dot = name.rfind(".")
    if dot > 0:
        package = sys.modules.get(name[:dot])
        if package is not None and hasattr(package, name[dot + 1:]):
            delattr(package, name[dot + 1:])


def loop(hal, c, steps=None):
    """collector.step(), feed the watchdog, sleep until the next thing is due. `steps`: stop after that many."""
    n = 0
    while steps is None or n < steps:
        c.step()
        hal.wdt.feed()
        # Wake for the next sample, but at least every 20 ms while frames are in flight or queued (acks, resends,
        # the rest of a partly written frame), every 100 ms otherwise (the link's input, the role's timers).
        wait = min(c.ms_until_sample(), 20 if c.uplink.busy() else 100)
        if wait > 0:
            time.sleep_ms(wait)
        n += 1


def main(serial=None):
    """Start and run the board for good; `serial`: (rx, tx) streams instead of USB (the simulated board's)."""
    try:
        hal, c = start(None, serial)   # start-up reads config.json and keeps none of it beyond what it built
    except KeyboardInterrupt:
        raise
    except (ValueError, OSError, RuntimeError) as e:
        # A wrong setting, a missing DS1307 or card reader, a wire without pull-ups: the user's to fix, said in one
        # line (the message names the setting or the bus address), then tried again, as after any reset.
        _reset("cannot start: %s" % (e,))
    try:
        loop(hal, c)
    except KeyboardInterrupt:
        # Ctrl-C from mpremote / a serial monitor: back to the REPL, with no reset. Nor one from the watchdog: a
        # started machine.WDT cannot be stopped through MicroPython's API and nothing feeds it at the REPL, so a Pico
        # would reset 8 s into a `make flash` or a REPL session. Clearing ENABLE (bit 30) in the chip's watchdog CTRL
        # register (the pin map's wdt_ctrl; None where the chip cannot) stops it; the next machine.WDT sets it again.
        if hal.wdt_ctrl is not None:
            machine.mem32[hal.wdt_ctrl] &= ~0x40000000
        raise
    except Exception as e:       # noqa: BLE001 - anything else ends in a clean restart
        # Why reset: after an unexpected error the RAM state (window, journal indices) cannot be trusted, while the
        # card can: the journal's recovery at boot is built for exactly this, and nothing unacknowledged is lost
        # (every reading is on the card before it is sent). This one is a bug: its traceback goes out too.
        sys.print_exception(e)
        _reset("fatal: %r" % (e,))


def _reset(why):
    """Log `why`, wait, reset. Why wait first: the message gets out over USB; a fault that recurs at every boot
    does not spin the boot counter and rewrite the card's slot file many times a second; and mpremote gets a window
    to interrupt. The wait stays below the watchdog's period on every board (the watchdog would reset it anyway,
    without the message)."""
    _log("%s; reset in %d ms" % (why, _RESET_DELAY_MS))
    time.sleep_ms(_RESET_DELAY_MS)
    machine.reset()

