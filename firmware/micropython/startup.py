"""Start-up of a MicroPython board: read config.json, build the hardware once, hand it to soil.board.build.

Everything here runs once per boot: main.py imports this module, calls `start()`, then drops it with the other
modules only start-up uses (BOOT_ONLY), as MicroPython projects drop their set-up code.
"""

import time

import machine
from micropython import const

from soil import board, heartbeat

# Imported during start-up and never needed after it: main.py drops them from sys.modules.
BOOT_ONLY = ("startup", "boards", "soil.board", "soil.bootcount")
# Run only by a pair's roles (soil.standby, soil.master hold it): a single board imports it at start-up for the
# settings' defaults alone, so main.py drops it too when the board has no pair.
PAIR_ONLY = ("soil.heartbeat",)
_WDT_MS = const(8000)
_CONFIG = const("config.json")
_FLASH = const("/fallback")      # tools/sim/micropython/board/simboard.py mounts the simulated flash here
_PORT_KEYS = const(("board_type", "pins", "wdt_ms"))   # this port's own keys beside soil.board's settings


def load_config(path=_CONFIG):
    """config.json as a dict."""
    import json
    with open(path) as f:
        return json.load(f)


def uid():
    """This chip's unique id (machine.unique_id(): the flash chip's id on rp2, the MAC on esp32) as hex."""
    return board.uid_hex(machine.unique_id())


def check_config(cfg, log=None, uid_hex=None):
    """The board's settings from the config dict (soil.board checks them and says which key is wrong); unknown keys
    are logged, not fatal. Without a "board" key the id derives from `uid_hex` (soil.board.default_board_id)."""
    if log is not None:
        for name in board.unknown(k for k in cfg if k not in _PORT_KEYS):
            log("%s: unknown setting %r ignored" % (_CONFIG, name))
    return board.settings(cfg.get, lambda name: "%s: %r" % (_CONFIG, name), uid_hex)


def flash_folder():
    """/fallback on the board's own filesystem (LittleFS on a Pico) as a `card` for the fallback journal."""
    from hal import Folder
    import os
    try:
        os.mkdir(_FLASH)
    except OSError:
        pass                     # there already (or a mount point: the simulated board's)
    return Folder(_FLASH)


def build_hal(pins, s, serial=None):
    """The board's hardware from a pin map (boards.py) and settings `s` as a hal.HAL; `serial`: (rx, tx) streams,
    default USB. Only a pair's board builds the pair's wire: a standby its I2C target, a master a controller."""
    from hal import HAL, Card, SerialLink
    Pin = machine.Pin
    hal = HAL()
    hal.uid = uid()
    hal.i2c = machine.I2C(pins["rtc_i2c"], scl=Pin(pins["rtc_scl"]), sda=Pin(pins["rtc_sda"]),
                          freq=100000)   # the DS1307 is a 100 kHz part
    if pins.get("adc_atten") is not None:
        hal.adc = machine.ADC(Pin(pins["adc"]), atten=pins["adc_atten"])
    else:
        hal.adc = machine.ADC(Pin(pins["adc"]))
    spi = machine.SPI(pins["sd_spi"], baudrate=1000000, sck=Pin(pins["sd_sck"]), mosi=Pin(pins["sd_mosi"]),
                      miso=Pin(pins["sd_miso"]))
    hal.card = Card(spi, Pin(pins["sd_cs"], Pin.OUT, value=1))
    hal.flash = flash_folder()
    hal.link = SerialLink(*serial) if serial else SerialLink()
    hal.led = Pin(pins["led"], Pin.OUT, value=0) if pins.get("led") is not None else None
    hal.wdt = None
    hal.wdt_ctrl = pins.get("wdt_ctrl")
    hal.ticks_ms = time.ticks_ms
    hal.ticks_diff = time.ticks_diff
    hal.hb_target = hal.hb_mem = hal.hb_end_write = hal.hb_i2c = None
    if s["role"] == "standby":
        # A memory-mode I2C target over the heartbeat records (the mem must exist before the target).
        hal.hb_mem = bytearray(heartbeat.MEM_SIZE)
        hal.hb_target = machine.I2CTarget(pins["hb_i2c"], s["hb_address"], mem=hal.hb_mem,
                                          scl=Pin(pins["hb_scl"]), sda=Pin(pins["hb_sda"]))
        hal.hb_end_write = machine.I2CTarget.IRQ_END_WRITE
    elif s["role"] == "master":
        # The master's side: an I2C controller on the wire's own peripheral.
        hal.hb_i2c = machine.I2C(pins["hb_i2c"], scl=Pin(pins["hb_scl"]), sda=Pin(pins["hb_sda"]), freq=100000)
    return hal


def start(cfg=None, serial=None, log=None):
    """Start the board from `cfg` (default: config.json): build, start the watchdog, recover, say hello.
    Returns (hal, collector)."""
    if cfg is None:
        cfg = load_config()
    s = check_config(cfg, log, uid())
    import boards
    pins = boards.pins_for(cfg)  # start-up's business only: the running board keeps no pin map
    hal = build_hal(pins, s, serial)
    if not hal.card.mounted and log:
        log("no SD card at boot (%r): readings wait on the board's flash (/fallback)" % (hal.card.error,))
    c = board.build(s, hal, log)
    # Once started, a watchdog runs until Ctrl-C stops the program (boardmain.main): main's loop feeds it.
    wdt_ms = cfg.get("wdt_ms", _WDT_MS)
    hal.wdt = machine.WDT(timeout=min(wdt_ms, pins.get("wdt_max_ms", wdt_ms)))
    try:
        c.start()                # opens the journal (recovery), the role's first look at the wire, sends H
    except KeyboardInterrupt:
        if hal.wdt_ctrl is not None:     # Ctrl-C during recovery: the REPL without a watchdog reset (boardmain)
            machine.mem32[hal.wdt_ctrl] &= ~0x40000000
        raise
    hal.wdt.feed()
    return hal, c
