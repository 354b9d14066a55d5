"""CircuitPython entry point: the counterpart of firmware/micropython/main.py and the virtual board.

It reads the board's settings from settings.toml (`os.getenv`), builds the hardware once (hal.py), hands both to
soil.board.build, and runs the collector's loop. Only `build_hardware()` touches `board`, `busio` & co; the other
functions take ready-made objects, so tests/test_circuitpython_port.py runs them under CPython.

Settings are soil.board's, spelled `SOIL_` + the name in capitals (`SOIL_INTERVAL_MS = 1000`). Default pins are the
Feather RP2040 + Adalogger FeatherWing + DS1307 breakout of hardware/feather-rp2040-adalogger.md; every pin can be
renamed in settings.toml with the name `board` gives it (`SOIL_PIN_SD_CS = "D10"`).
"""

import os
import time

import hal
from soil import __version__, board

_PREFIX = "SOIL_"

# This port's own settings: pin -> its default name in `board`.
PINS = {
    "SOIL_PIN_PROBE": "A0",
    "SOIL_PIN_SDA": "SDA",               # DS1307
    "SOIL_PIN_SCL": "SCL",
    "SOIL_PIN_SCK": "SCK",               # SD card (the wing's socket)
    "SOIL_PIN_MOSI": "MOSI",
    "SOIL_PIN_MISO": "MISO",
    "SOIL_PIN_SD_CS": "D10",
    "SOIL_PIN_PAIR_SDA": "D24",          # heartbeat wire (GP24/GP25 = the RP2040's I2C0)
    "SOIL_PIN_PAIR_SCL": "D25",
    "SOIL_PIN_LED": "LED",
}


def spell(name):
    """How settings.toml names soil.board's setting `name`: interval_ms -> SOIL_INTERVAL_MS."""
    return _PREFIX + name.upper()


def cpu_uid():
    """This chip's unique id (microcontroller.cpu.uid) as hex: the board's identity beside its id."""
    import microcontroller
    return board.uid_hex(microcontroller.cpu.uid)


def load_settings(getenv=os.getenv, uid=None):
    """soil.board's settings from settings.toml; ValueError naming the key for anything wrong. Without
    SOIL_BOARD the id derives from `uid` (soil.board.default_board_id)."""
    return board.settings(lambda name, default: getenv(spell(name), default), spell, uid)


def _pin(pins, getenv, key):
    name = getenv(key, PINS[key])
    try:
        return getattr(pins, name)
    except AttributeError:
        raise ValueError("%s = %r: this board has no pin board.%s" % (key, name, name))


def build_hardware(s, getenv=os.getenv, uid=None, log=None):
    """The board's objects from its pins (CircuitPython only), for settings `s`. Returns a CircuitPythonHAL."""
    import analogio
    import board as pins
    import busio
    import digitalio
    import sdcardio
    import storage
    import supervisor
    import usb_cdc

    i2c = busio.I2C(_pin(pins, getenv, "SOIL_PIN_SCL"), _pin(pins, getenv, "SOIL_PIN_SDA"), frequency=100000)
    spi = busio.SPI(_pin(pins, getenv, "SOIL_PIN_SCK"), MOSI=_pin(pins, getenv, "SOIL_PIN_MOSI"),
                    MISO=_pin(pins, getenv, "SOIL_PIN_MISO"))
    card = hal.Card("/sd", mount=hal.sd_mounter(sdcardio, storage, spi, _pin(pins, getenv, "SOIL_PIN_SD_CS")))
    led = digitalio.DigitalInOut(_pin(pins, getenv, "SOIL_PIN_LED"))
    led.direction = digitalio.Direction.OUTPUT
    hb_target = hb_i2c = None
    if s["role"] == "standby":
        import i2ctarget
        hb_target = i2ctarget.I2CTarget(_pin(pins, getenv, "SOIL_PIN_PAIR_SCL"),
                                        _pin(pins, getenv, "SOIL_PIN_PAIR_SDA"), (s["hb_address"],))
    elif s["role"] == "master":
        # busio.I2C raises RuntimeError when SDA/SCL have no pull-up: the pair wire is not connected.
        hb_i2c = busio.I2C(_pin(pins, getenv, "SOIL_PIN_PAIR_SCL"), _pin(pins, getenv, "SOIL_PIN_PAIR_SDA"),
                           frequency=100000)
    return hal.CircuitPythonHAL(i2c, analogio.AnalogIn(_pin(pins, getenv, "SOIL_PIN_PROBE")), card, usb_cdc.data,
                                led, supervisor.ticks_ms, hb_target=hb_target, hb_i2c=hb_i2c,
                                uid=uid if uid is not None else cpu_uid(),
                                flash=hal.internal_flash(storage, log=log))


def step(hal_, c):
    """One turn of the loop: serve the heartbeat wire, then whatever the collector has due. Never blocks."""
    hal_.poll()
    c.step()


def _log(msg):
    print("soil: " + msg)


def main():
    try:
        uid = cpu_uid()
        s = load_settings(uid=uid)
        hal_ = build_hardware(s, uid=uid, log=_log)
        c = board.build(s, hal_, log=_log)
    except (OSError, ValueError, RuntimeError) as e:
        # A missing RTC, card reader or pull-up, a wrong setting: say so on the REPL console, then try again.
        print("soil: cannot start: %s" % (e,))
        import supervisor
        time.sleep(10)
        supervisor.reload()
        return
    c.start()
    print("soil: %s boot %d as %s, firmware %s" % (c.board_id, c.boot, c.role, __version__))
    idle = 0.001 if hal_.hb_target is not None else 0.005
    while True:
        step(hal_, c)
        time.sleep(idle)       # short: a standby's target is served only from here (hal.PolledMemTarget)


if __name__ == "__main__":
    main()
