"""CircuitPython entry point: the counterpart of tools/vboard.py (simulation) and firmware/micropython/main.py.

It reads the configuration from settings.toml (`os.getenv`), builds the hardware once, hands it to the portable
core (lib/soil) through hal.py, and runs the collector's loop. Only `main()` touches `board`, `busio` & co; the
functions it calls take ready-made objects, so tests/test_circuitpython_port.py runs them under CPython.

Default pins are the Feather RP2040 + Adalogger FeatherWing + DS1307 breakout of hardware/feather-rp2040-adalogger.md;
every pin can be renamed in settings.toml with the name `board` gives it (`SOIL_PIN_SD_CS = "D10"`).
"""

import os
import time

import hal
from soil import VERSION, recovery
from soil.collector import Collector
from soil.journal import Journal

# setting -> default; ints stay ints (settings.toml may hold either "1000" or 1000)
DEFAULTS = {
    "SOIL_BOARD_ID": None,              # required: A-Z a-z 0-9 _ -, at most 32
    "SOIL_ROLE": "single",              # single | master | standby
    "SOIL_INTERVAL_MS": 1000,
    "SOIL_WINDOW": 24,
    "SOIL_STATUS_INTERVAL_MS": 10000,
    "SOIL_JOURNAL_MAX": 4 << 20,
    "SOIL_FULL_POLICY": "drop_oldest",
    "SOIL_HB_ADDRESS": 8,
    "SOIL_HB_INTERVAL_MS": 3000,
    "SOIL_HB_TIMEOUT_MS": 10000,
    "SOIL_WITNESS_TIMEOUT_MS": 3000,
    "SOIL_HANDBACK_AFTER_MS": 9000,
    "SOIL_HANDBACK_MARGIN_S": 7,
    "SOIL_WITNESS_RECHECK_MS": 30000,
    "SOIL_PIN_PROBE": "A0",
    "SOIL_PIN_SDA": "SDA",
    "SOIL_PIN_SCL": "SCL",
    "SOIL_PIN_SCK": "SCK",
    "SOIL_PIN_MOSI": "MOSI",
    "SOIL_PIN_MISO": "MISO",
    "SOIL_PIN_SD_CS": "D10",
    "SOIL_PIN_PAIR_SDA": "D24",
    "SOIL_PIN_PAIR_SCL": "D25",
    "SOIL_PIN_LED": "LED",
}
_ROLES = ("single", "master", "standby")


def load_config(getenv=os.getenv):
    """settings.toml -> dict of the keys in DEFAULTS; ValueError naming the key for anything wrong."""
    cfg = {}
    for key, default in DEFAULTS.items():
        value = getenv(key, default)
        if value is None:
            raise ValueError("%s is not set in settings.toml" % key)
        if isinstance(default, int):
            try:
                value = int(value)
            except (TypeError, ValueError):
                raise ValueError("%s must be a whole number, got %r" % (key, value))
        cfg[key] = value
    if cfg["SOIL_ROLE"] not in _ROLES:
        raise ValueError("SOIL_ROLE must be one of %s, got %r" % (", ".join(_ROLES), cfg["SOIL_ROLE"]))
    if cfg["SOIL_FULL_POLICY"] not in ("drop_oldest", "drop_newest"):
        raise ValueError("SOIL_FULL_POLICY must be drop_oldest or drop_newest")
    return cfg


class Node:
    """The HAL, journal and collector (with its role) of one board."""

    def __init__(self, cfg, hal_, log=print):
        self.cfg = cfg
        self.hal = hal_
        self.journal = Journal(hal_.card, max_bytes=cfg["SOIL_JOURNAL_MAX"], policy=cfg["SOIL_FULL_POLICY"])
        self.boot, self.boot_stores = recovery.next_boot(hal_.rtc, hal_.card)
        if not self.boot_stores:
            log("soil: boot number %d kept nowhere (no NVRAM, no card): identities may repeat" % self.boot)
        role = cfg["SOIL_ROLE"]
        self.collector = Collector(cfg["SOIL_BOARD_ID"], self.boot, hal_.rtc, hal_.adc, self.journal, hal_.link,
                                   hal_.ticks_ms, hal_.ticks_diff, role=role, interval_ms=cfg["SOIL_INTERVAL_MS"],
                                   window=cfg["SOIL_WINDOW"], status_interval_ms=cfg["SOIL_STATUS_INTERVAL_MS"],
                                   led=hal_.led, fw=VERSION, log=lambda msg: log("soil: " + msg))
        if role == "standby":
            self._standby(cfg)
        elif role == "master":
            self._master(cfg)

    def _standby(self, cfg):
        from soil.standby import Mailbox
        from soil.standby import StandbyRole
        target = self.hal.hb_target
        if target is None:
            raise ValueError("SOIL_ROLE = \"standby\" needs the heartbeat wire's I2C target")
        c = self.collector
        c.ring_limit = (cfg["SOIL_HB_TIMEOUT_MS"] + cfg["SOIL_WITNESS_TIMEOUT_MS"] + 2 * cfg["SOIL_HB_INTERVAL_MS"]) \
            // cfg["SOIL_INTERVAL_MS"] + 8
        mailbox = Mailbox(target, target.mem, target.IRQ_END_WRITE)
        c.role_logic = StandbyRole(c, mailbox, timeout_ms=cfg["SOIL_HB_TIMEOUT_MS"],
                                   witness_timeout_ms=cfg["SOIL_WITNESS_TIMEOUT_MS"],
                                   handback_after_ms=cfg["SOIL_HANDBACK_AFTER_MS"],
                                   handback_margin_s=cfg["SOIL_HANDBACK_MARGIN_S"],
                                   recheck_ms=cfg["SOIL_WITNESS_RECHECK_MS"])
        self.mailbox = mailbox

    def _master(self, cfg):
        from soil.master import MasterRole
        if self.hal.hb_i2c is None:
            raise ValueError("SOIL_ROLE = \"master\" needs the heartbeat wire's I2C controller")
        c = self.collector
        c.ring_limit = 4 * cfg["SOIL_HANDBACK_MARGIN_S"] * 1000 // cfg["SOIL_INTERVAL_MS"] + 16
        c.role_logic = MasterRole(c, self.hal.hb_i2c, cfg["SOIL_HB_ADDRESS"], cfg["SOIL_HB_INTERVAL_MS"])

    def start(self):
        self.collector.start()

    def step(self):
        """One turn of the loop: serve the heartbeat wire, then whatever the collector has due. Never blocks."""
        self.hal.poll()
        self.collector.step()


def _pin(board, cfg, key):
    name = cfg[key]
    try:
        return getattr(board, name)
    except AttributeError:
        raise ValueError("%s = %r: this board has no pin board.%s" % (key, name, name))


def build_hardware(cfg):
    """The board's objects from its pins (CircuitPython only). Returns a CircuitPythonHAL."""
    import analogio
    import board
    import busio
    import digitalio
    import sdcardio
    import storage
    import supervisor
    import usb_cdc

    i2c = busio.I2C(_pin(board, cfg, "SOIL_PIN_SCL"), _pin(board, cfg, "SOIL_PIN_SDA"), frequency=100000)
    spi = busio.SPI(_pin(board, cfg, "SOIL_PIN_SCK"), MOSI=_pin(board, cfg, "SOIL_PIN_MOSI"),
                    MISO=_pin(board, cfg, "SOIL_PIN_MISO"))
    card = hal.Card("/sd", mount=hal.sd_mounter(sdcardio, storage, spi, _pin(board, cfg, "SOIL_PIN_SD_CS")))
    led = digitalio.DigitalInOut(_pin(board, cfg, "SOIL_PIN_LED"))
    led.direction = digitalio.Direction.OUTPUT
    hb_target = hb_i2c = None
    role = cfg["SOIL_ROLE"]
    if role == "standby":
        import i2ctarget
        hb_target = i2ctarget.I2CTarget(_pin(board, cfg, "SOIL_PIN_PAIR_SCL"), _pin(board, cfg, "SOIL_PIN_PAIR_SDA"),
                                        (cfg["SOIL_HB_ADDRESS"],))
    elif role == "master":
        # busio.I2C raises RuntimeError when SDA/SCL have no pull-up: the pair wire is not connected.
        hb_i2c = busio.I2C(_pin(board, cfg, "SOIL_PIN_PAIR_SCL"), _pin(board, cfg, "SOIL_PIN_PAIR_SDA"),
                           frequency=100000)
    return hal.CircuitPythonHAL(i2c, analogio.AnalogIn(_pin(board, cfg, "SOIL_PIN_PROBE")), card, usb_cdc.data,
                                led, supervisor.ticks_ms, hb_target=hb_target, hb_i2c=hb_i2c)


def main():
    try:
        cfg = load_config()
        node = Node(cfg, build_hardware(cfg))
    except (OSError, ValueError, RuntimeError) as e:
        # A missing RTC, card reader or pull-up: say so on the REPL console, then try again from scratch.
        print("soil: cannot start: %s" % (e,))
        import supervisor
        time.sleep(10)
        supervisor.reload()
        return
    node.start()
    print("soil: %s boot %d as %s, firmware %s" % (cfg["SOIL_BOARD_ID"], node.boot, cfg["SOIL_ROLE"], VERSION))
    idle = 0.001 if node.hal.hb_target is not None else 0.005
    while True:
        node.step()
        time.sleep(idle)       # short: a standby's target is served only from here (hal.PolledMemTarget)


if __name__ == "__main__":
    main()
