"""Start-up of a MicroPython board: build the hardware once, hand it to the portable core, run its recovery.

Why a module of its own: everything here runs once per boot, and a board keeps the bytecode of every module it
imported in RAM. main.py imports this module, calls `start()`, then unloads it together with the other boot-only
modules (BOOT_ONLY), so the running firmware does not pay for code it will not run again (BRIEF.md: the core plus
this adapter fit in 32 KB of MicroPython heap after start-up).
"""

import time

import machine
from micropython import const

# Imported during start-up and never needed after it: main.py drops them from sys.modules.
BOOT_ONLY = ("startup", "boards")
_WDT_MS = const(8000)
_CONFIG = const("config.json")


def load_config(path=_CONFIG):
    """The board's config.json as a dict; ValueError without a board id."""
    import json
    with open(path) as f:
        cfg = json.load(f)
    if "board" not in cfg:
        raise ValueError("%s: 'board' (the board id) is required" % path)
    return cfg


def build_hal(pins, serial=None):
    """The board's hardware from a pin map (boards.py) as a hal.HAL; `serial`: (rx, tx) streams, default USB."""
    from hal import HAL, Card, SerialLink
    Pin = machine.Pin
    hal = HAL()
    hal.i2c = machine.I2C(pins["rtc_i2c"], scl=Pin(pins["rtc_scl"]), sda=Pin(pins["rtc_sda"]),
                          freq=100000)   # the DS1307 is a 100 kHz part
    if pins.get("adc_atten") is not None:
        hal.adc = machine.ADC(Pin(pins["adc"]), atten=pins["adc_atten"])
    else:
        hal.adc = machine.ADC(Pin(pins["adc"]))
    spi = machine.SPI(pins["sd_spi"], baudrate=1000000, sck=Pin(pins["sd_sck"]), mosi=Pin(pins["sd_mosi"]),
                      miso=Pin(pins["sd_miso"]))
    hal.card = Card(spi, Pin(pins["sd_cs"], Pin.OUT, value=1))
    hal.link = SerialLink(*serial) if serial else SerialLink()
    hal.led = Pin(pins["led"], Pin.OUT, value=0) if pins.get("led") is not None else None
    hal.wdt = None
    hal.ticks_ms = time.ticks_ms
    hal.ticks_diff = time.ticks_diff
    return hal


def build(cfg, pins, serial=None, log=None):
    """Build the HAL from the pin map `pins` (boards.py), the RTC driver, the journal, the boot counter, the
    collector and its role. Returns (hal, collector)."""
    from soil import VERSION, ondemand
    from soil.collector import Collector
    from soil.ds1307 import DS1307
    from soil.journal import Journal

    hal = build_hal(pins, serial)
    if not hal.card.mounted and log:
        log("no SD card at boot (%r): readings wait in RAM" % (hal.card.error,))
    rtc = DS1307(hal.i2c)        # raises "no DS1307 at 0x68: check SDA/SCL and pull-ups"
    journal = Journal(hal.card, max_bytes=cfg.get("journal_max", 262144), policy=cfg.get("full_policy",
                                                                                         "drop_oldest"))
    boot, stores = ondemand("soil.recovery.next_boot", rtc, hal.card)
    if not stores and log:
        log("boot counter %d could not be stored (no NVRAM, no card)" % boot)
    role = cfg.get("role", "single")
    interval = cfg.get("interval_ms", 1000)
    c = Collector(cfg["board"], boot, rtc, hal.adc, journal, hal.link, hal.ticks_ms, hal.ticks_diff, role=role,
                  interval_ms=interval, window=cfg.get("window", 24), led=hal.led, fw=VERSION, log=log)
    if role == "master" or role == "standby":
        from soil import heartbeat as hb
        address = cfg.get("hb_address", hb.ADDRESS)
        beat_ms = cfg.get("hb_interval_ms", 3000)
        if role == "standby":
            timeout = cfg.get("hb_timeout_ms", 10000)
            witness = cfg.get("witness_timeout_ms", 3000)
            mem = bytearray(hb.MEM_SIZE)
            # The standby's side of the pair wire: a memory-mode I2C target over the heartbeat records.
            target = machine.I2CTarget(pins["hb_i2c"], address, mem=mem, scl=machine.Pin(pins["hb_scl"]),
                                       sda=machine.Pin(pins["hb_sda"]))
            c.ring_limit = (timeout + witness + 2 * beat_ms) // interval + 8
            from soil.standby import Mailbox, StandbyRole   # only the role this board plays is loaded
            c.role_logic = StandbyRole(c, Mailbox(target, mem, machine.I2CTarget.IRQ_END_WRITE),
                                       timeout_ms=timeout, witness_timeout_ms=witness)
        else:
            c.ring_limit = 4 * 7 * 1000 // interval + 16     # 4 x the standby's hand-back margin (7 s)
            from soil.master import MasterRole
            # The master's side: an I2C controller on the wire's own peripheral.
            wire = machine.I2C(pins["hb_i2c"], scl=machine.Pin(pins["hb_scl"]), sda=machine.Pin(pins["hb_sda"]),
                               freq=100000)
            c.role_logic = MasterRole(c, wire, address, beat_ms)
    return hal, c


def start(cfg=None, serial=None, log=None):
    """Start the board from `cfg` (default: config.json): build, start the watchdog, recover, say hello."""
    if cfg is None:
        cfg = load_config()
    import boards
    pins = boards.pins_for(cfg)  # start-up's business only: the running board keeps no pin map
    hal, c = build(cfg, pins, serial, log)
    # Once started a watchdog cannot be stopped: main's loop feeds it.
    wdt_ms = cfg.get("wdt_ms", _WDT_MS)
    hal.wdt = machine.WDT(timeout=min(wdt_ms, pins.get("wdt_max_ms", wdt_ms)))
    c.start()                    # opens the journal (recovery), the role's first look at the wire, sends H
    hal.wdt.feed()
    return hal, c
