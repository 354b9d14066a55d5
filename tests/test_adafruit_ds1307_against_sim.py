"""Adafruit's unmodified `adafruit_ds1307` (with adafruit_bus_device and adafruit_register) on the simulated chip.

Why: a chip model that only our own driver talks to could share our misreading of the datasheet. Adafruit's
driver is an independent reading of it; if both agree through the same simulated registers, the model and our
driver are right together. It also proves the `busio.I2C` facade is faithful enough for real CircuitPython
libraries (locking, probe by empty write, `writeto_then_readfrom` slices).
"""

import time

import pytest

adafruit_ds1307 = pytest.importorskip("adafruit_ds1307")

from soil import ds1307 as drv  # noqa: E402
from soil import utc  # noqa: E402
from tools.sim.host.ds1307 import DS1307Sim  # noqa: E402
from tools.sim.host.i2c import BusioI2C, I2CBus, MachineI2C  # noqa: E402


from tests.simclock import FakeClock  # noqa: E402


@pytest.fixture
def rig():
    clock = FakeClock(2_000_000.0)
    bus = I2CBus()
    chip = DS1307Sim(time_source=clock)
    bus.attach(0x68, chip)
    ada = adafruit_ds1307.DS1307(BusioI2C(bus))
    ours = drv.DS1307(MachineI2C(bus))
    return clock, chip, ada, ours, bus


def _struct(tm):
    # Adafruit writes tm_wday + 1: Monday = 1, like our driver.
    wday = utc.weekday(*tm[:3]) - 1
    return time.struct_time(tm + (wday, -1, -1))


def test_adafruit_sets_our_driver_reads(rig):
    clock, chip, ada, ours, bus = rig
    tm = (2026, 11, 21, 9, 55, 4)
    ada.datetime = _struct(tm)
    assert not ada.disable_oscillator
    assert ours.datetime == tm
    assert ours.state() == "unset"  # running, but not set through our driver's gateway path
    clock.advance(3661)
    assert ours.datetime == (2026, 11, 21, 10, 56, 5)
    assert chip.peek(3) == 6  # Saturday, the same day numbering


def test_our_driver_sets_adafruit_reads(rig):
    clock, chip, ada, ours, bus = rig
    tm = (2031, 2, 28, 23, 59, 58)
    ours.set_datetime(tm)
    clock.advance(3)
    got = ada.datetime
    assert tuple(got)[:6] == (2031, 3, 1, 0, 0, 1)
    assert got.tm_wday == 5  # Saturday, Monday = 0
    assert ours.state() == "ok"


def test_disable_oscillator_is_our_ch_bit(rig):
    clock, chip, ada, ours, bus = rig
    ours.set_datetime((2026, 1, 1, 0, 0, 0))
    assert ada.disable_oscillator is False
    ada.disable_oscillator = True
    assert ours.halted
    assert ours.state() == "halted"
    frozen = ours.datetime
    clock.advance(100)
    assert ours.datetime == frozen
    ada.disable_oscillator = False
    assert not ours.halted
    clock.advance(2)
    assert ours.datetime == (2026, 1, 1, 0, 0, 2)
    # Halting through our side shows up on Adafruit's side too.
    MachineI2C(bus).writeto_mem(0x68, 0x00, bytes((chip.peek(0) | 0x80,)))
    assert ada.disable_oscillator is True


def test_adafruit_probe_fails_on_an_empty_bus():
    bus = I2CBus()
    with pytest.raises(ValueError):
        adafruit_ds1307.DS1307(BusioI2C(bus))


def test_adafruit_construction_does_not_write_the_clock(rig):
    clock, chip, ada, ours, bus = rig
    adafruit_ds1307.DS1307(BusioI2C(bus))
    assert chip.time_register_writes == 0
