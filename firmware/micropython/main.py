"""MicroPython entry point: read config.json, build the hardware once, hand it to the portable core, loop.

The counterpart of tools/vboard.py on a real board (README.md in this folder: flashing, config, FAT vs littlefs).
`run()` can be imported and driven step by step (tests/test_micropython_port.py runs it under the real
MicroPython interpreter on a simulated `machine`).
"""

import json
import sys
import time

import machine

CONFIG = "config.json"
RESET_DELAY_MS = 5000
WDT_MS = 8000


def load_config(path=CONFIG):
    with open(path) as f:
        cfg = json.load(f)
    if "board" not in cfg:
        raise ValueError("%s: 'board' (the board id) is required" % path)
    return cfg


def _log(msg):
    # On a board stderr is the same USB line as the frames; a log line carries no '$', so the gateway's framer
    # discards it (counted as line noise) and a serial monitor shows it.
    print("soil: " + msg, file=sys.stderr)


def build(cfg, serial=None):
    """Build the HAL, the RTC driver, the journal, the boot counter, the collector and its role. Returns
    (hal, collector)."""
    import boards
    from hal import HAL
    from soil import VERSION, identity
    from soil.collector import Collector
    from soil.ds1307 import DS1307
    from soil.journal import Journal

    hal = HAL(boards.pins_for(cfg), serial)
    if not hal.card.mounted:
        _log("no SD card at boot (%r): readings wait in RAM" % (hal.card.error,))
    rtc = DS1307(hal.i2c)        # raises "no DS1307 at 0x68: check SDA/SCL and pull-ups"
    journal = Journal(hal.card, max_bytes=cfg.get("journal_max", 262144), policy=cfg.get("full_policy",
                                                                                         "drop_oldest"))
    boot, stores = identity.next_boot(rtc, hal.card)
    if not stores:
        _log("boot counter %d could not be stored (no NVRAM, no card)" % boot)
    role = cfg.get("role", "single")
    interval = cfg.get("interval_ms", 1000)
    c = Collector(cfg["board"], boot, rtc, hal.adc, journal, hal.link, hal.ticks_ms, hal.ticks_diff, role=role,
                  interval_ms=interval, window=cfg.get("window", 24), led=hal.led, fw=VERSION, log=_log)
    if role == "master" or role == "standby":
        from soil import heartbeat as hb
        from soil.redundancy import MasterRole, StandbyRole
        address = cfg.get("hb_address", hb.ADDRESS)
        beat_ms = cfg.get("hb_interval_ms", 3000)
        if role == "standby":
            timeout = cfg.get("hb_timeout_ms", 10000)
            witness = cfg.get("witness_timeout_ms", 3000)
            mem = bytearray(hb.MEM_SIZE)
            target = hal.heartbeat_target(address, mem)
            c.ring_limit = (timeout + witness + 2 * beat_ms) // interval + 8
            c.role_logic = StandbyRole(c, hb.Mailbox(target, mem, machine.I2CTarget.IRQ_END_WRITE),
                                       timeout_ms=timeout, witness_timeout_ms=witness)
        else:
            c.ring_limit = 4 * 7 * 1000 // interval + 16     # 4 x the standby's hand-back margin (7 s)
            c.role_logic = MasterRole(c, hal.heartbeat_i2c(), address, beat_ms)
    return hal, c


def start(cfg, serial=None):
    hal, c = build(cfg, serial)
    hal.start_watchdog(cfg.get("wdt_ms", WDT_MS))
    c.start()                    # opens the journal (recovery), the role's first look at the wire, sends H
    hal.wdt.feed()
    return hal, c


def loop(hal, c, steps=None):
    """collector.step(), feed the watchdog, sleep until the next thing is due. `steps`: stop after that many."""
    n = 0
    while steps is None or n < steps:
        c.step()
        hal.wdt.feed()
        # Wake for the next sample, but at least every 20 ms while frames are in flight or queued (acks, resends,
        # the rest of a partly written frame), every 100 ms otherwise (the link's input, the role's timers).
        due = c.ticks_diff(c._next_sample, c.ticks_ms())
        busy = c.uplink._out or c.uplink.inflight
        wait = min(due, 20 if busy else 100)
        if wait > 0:
            time.sleep_ms(wait)
        n += 1


def main():
    try:
        cfg = load_config()
        hal, c = start(cfg)
        loop(hal, c)
    except KeyboardInterrupt:
        raise                    # Ctrl-C from mpremote / a serial monitor: back to the REPL, no reset
    except Exception as e:       # noqa: BLE001 - anything else ends in a clean restart
        # Why reset: after an unexpected error the RAM state (window, journal indices) cannot be trusted, while the
        # card can: the journal's recovery at boot is built for exactly this, and nothing unacknowledged is lost
        # (every reading is on the card before it is sent). Why wait first: the traceback gets out over USB; a
        # fault that recurs at every boot does not spin the boot counter and rewrite the card's slot file many
        # times a second; and mpremote gets a window to interrupt. The wait stays below the watchdog's period
        # on every board (the watchdog would reset it anyway, without the message).
        _log("fatal: %r; reset in %d ms" % (e, RESET_DELAY_MS))
        sys.print_exception(e)
        time.sleep_ms(RESET_DELAY_MS)
        machine.reset()


if __name__ == "__main__":
    main()
