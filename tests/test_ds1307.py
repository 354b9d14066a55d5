"""soil.ds1307 (the portable driver) against the register-level DS1307 model on the virtual I2C bus.

The chip model follows the datasheet; the driver never sees anything but bytes on the bus.
"""

import errno

import pytest
from hypothesis import given, settings, strategies as st

from soil import ds1307 as drv
from soil import utc
from tools.sim.host.ds1307 import DS1307Sim
from tools.sim.host.i2c import I2CBus, MachineI2C


from tests.simclock import FakeClock


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def bus():
    return I2CBus()


@pytest.fixture
def chip(bus, clock):
    c = DS1307Sim(time_source=clock)
    bus.attach(0x68, c)
    return c


@pytest.fixture
def rtc(chip, bus):
    return drv.DS1307(MachineI2C(bus))


T0 = (2026, 11, 21, 9, 55, 4)


def test_bcd_codec():
    assert drv.bcd_encode(0) == 0x00
    assert drv.bcd_encode(59) == 0x59
    assert drv.bcd_decode(0x99) == 99
    for v in range(100):
        assert drv.bcd_decode(drv.bcd_encode(v)) == v
    for bad in (0x0A, 0xA0, 0x5F, 0xFF):
        with pytest.raises(ValueError):
            drv.bcd_decode(bad)
    for bad in (-1, 100):
        with pytest.raises(ValueError):
            drv.bcd_encode(bad)


def test_fresh_chip_is_halted_and_set_starts_it(rtc, chip, clock):
    # A DS1307 on first power-up: CH set, time 2000-01-01 00:00:00 (datasheet).
    assert rtc.halted
    assert rtc.state() == "halted"
    clock.advance(100)
    assert rtc.datetime == (2000, 1, 1, 0, 0, 0)  # the oscillator is stopped
    rtc.set_datetime(T0)
    assert not rtc.halted
    assert rtc.datetime == T0
    assert rtc.state() == "ok"
    clock.advance(61.5)
    assert rtc.datetime == (2026, 11, 21, 9, 56, 5)
    assert rtc.read() == ((2026, 11, 21, 9, 56, 5), "ok")
    assert rtc.last_set() == utc.to_epoch(T0)


def test_set_writes_all_seven_registers_in_one_transaction_in_24h_mode(rtc, chip):
    before = chip.write_transactions
    rtc.set_datetime((2026, 11, 21, 21, 5, 9))
    assert chip.write_transactions - before == 2  # the time, then the marker
    assert chip.byte_writes[0:7] == [1] * 7
    assert bytes(chip.regs[0:7]) == bytes((0x09, 0x05, 0x21, 6, 0x21, 0x11, 0x26))  # Saturday = 6
    assert chip.regs[2] & 0x40 == 0


def test_ch_bit_halts_and_freezes_time(rtc, chip, clock, bus):
    rtc.set_datetime(T0)
    # Anyone halting the oscillator (another tool, a failing battery) is reported.
    MachineI2C(bus).writeto_mem(0x68, 0x00, bytes((chip.regs[0] | 0x80,)))
    assert rtc.halted
    assert rtc.state() == "halted"
    t = rtc.datetime
    clock.advance(3600)
    assert rtc.datetime == t
    assert rtc.read() == (t, "halted")


@pytest.mark.parametrize(
    "reg,value",
    [
        (0x05, 0x13),  # month 13
        (0x05, 0x00),  # month 0
        (0x04, 0x1A),  # BCD nibble above 9
        (0x00, 0x5A),
        (0x01, 0x60),  # minute 60
        (0x02, 0x24),  # hour 24
        (0x02, 0x40 | 0x13),  # 12-hour mode, hour 13
        (0x02, 0x40 | 0x00),  # 12-hour mode, hour 0
        (0x06, 0xA0),
    ],
)
def test_impossible_registers_are_invalid(rtc, chip, reg, value):
    rtc.set_datetime(T0)
    chip.poke(reg, value)
    assert rtc.state() == "invalid"
    assert rtc.read() == (None, "invalid")
    with pytest.raises(ValueError):
        rtc.datetime


def test_feb_30_is_invalid(rtc, chip):
    rtc.set_datetime((2026, 2, 28, 12, 0, 0))
    chip.poke(0x04, 0x30)
    assert rtc.state() == "invalid"


def test_running_but_never_set_by_a_gateway_is_unset(rtc, chip):
    chip.set_time(T0)  # running, valid, but the marker was never written
    assert rtc.datetime == T0
    assert rtc.state() == "unset"
    assert rtc.last_set() is None


@pytest.mark.parametrize(
    "hour_reg,hour",
    [(0x40 | 0x12, 0), (0x40 | 0x01, 1), (0x40 | 0x11, 11), (0x60 | 0x12, 12), (0x60 | 0x01, 13), (0x60 | 0x11, 23)],
)
def test_12_hour_mode_is_decoded(rtc, chip, hour_reg, hour):
    rtc.set_datetime(T0)
    chip.poke(0x02, hour_reg)
    assert rtc.datetime == (2026, 11, 21, hour, 55, 4)
    assert rtc.state() == "ok"


def test_12_hour_mode_keeps_counting_through_noon(rtc, chip, clock):
    chip.set_time((2026, 11, 21, 11, 59, 59), hour12=True)
    assert chip.regs[2] == 0x40 | 0x11
    clock.advance(1)
    assert rtc.datetime == (2026, 11, 21, 12, 0, 0)
    assert chip.peek(2) == 0x60 | 0x12  # 12 PM


def test_nvram_round_trip_and_bounds(rtc, chip):
    rtc.nvram_write(0, b"boot")
    rtc.nvram_write(44, b"\x01\x02\x03\x04")
    assert rtc.nvram_read(0, 4) == b"boot"
    assert rtc.nvram_read(44, 4) == b"\x01\x02\x03\x04"
    assert bytes(chip.regs[0x08:0x0C]) == b"boot"
    assert rtc.nvram_read(0, 0) == b""
    for off, n in ((-1, 1), (47, 2), (48, 1), (0, 49)):
        with pytest.raises(ValueError):
            rtc.nvram_read(off, n)
        with pytest.raises(ValueError):
            rtc.nvram_write(off, bytes(n))
    # The marker bytes 0x38..0x3F are the driver's, not the caller's.
    rtc.set_datetime(T0)
    rtc.nvram_write(40, bytes(8))
    assert rtc.state() == "ok"


def test_nvram_survives_a_set(rtc):
    rtc.nvram_write(0, b"\x00\x00\x00\x2a")
    rtc.set_datetime(T0)
    assert rtc.nvram_read(0, 4) == b"\x00\x00\x00\x2a"


def test_missing_chip_error_names_the_address(bus):
    with pytest.raises(OSError) as e:
        drv.DS1307(MachineI2C(bus))
    assert "no DS1307 at 0x68" in str(e.value)
    assert "SDA/SCL" in str(e.value)
    assert e.value.errno == errno.ENODEV


def test_cut_wire_at_start_up_names_the_address(bus, chip):
    bus.cut = True
    with pytest.raises(OSError) as e:
        drv.DS1307(MachineI2C(bus))
    assert "0x68" in str(e.value)


def test_other_device_at_the_address_is_refused(bus):
    class NotAnRtc:
        def on_start(self, is_read):
            return True

        def on_write(self, b):
            return True

        def on_read(self):
            return 0xFF

        def on_stop(self):
            pass

    bus.attach(0x68, NotAnRtc())
    with pytest.raises(RuntimeError) as e:
        drv.DS1307(MachineI2C(bus))
    assert "0x68" in str(e.value)


def test_bus_errors_after_start_up_are_oserror(rtc, bus):
    bus.cut = True
    with pytest.raises(OSError):
        rtc.state()
    with pytest.raises(OSError):
        rtc.set_datetime(T0)


def test_register_pointer_wraps_from_0x3f_to_0x00(rtc, chip, bus):
    rtc.set_datetime(T0)
    i2c = MachineI2C(bus)
    # Reading 10 bytes from 0x3A: 6 bytes of marker (0x3A..0x3F) and then seconds, minutes, hours, day.
    data = i2c.readfrom_mem(0x68, 0x3A, 10)
    assert data[:6] == bytes(chip.regs[0x3A:0x40])
    assert data[6:] == bytes((0x04, 0x55, 0x09, 6))
    # Writing across the end lands on the seconds register (and sets CH here).
    i2c.writeto_mem(0x68, 0x3F, b"\x5a\x80")
    assert chip.regs[0x3F] == 0x5A
    assert rtc.halted


def test_read_is_latched_at_start(rtc, chip, clock, bus):
    chip.set_time((2026, 12, 31, 23, 59, 59))

    # The host clock moves on between bytes of one read; the chip's secondary buffer keeps the read coherent.
    real_on_read = chip.on_read

    def slow_read():
        clock.advance(0.6)
        return real_on_read()

    chip.on_read = slow_read
    assert rtc.datetime == (2026, 12, 31, 23, 59, 59)
    chip.on_read = real_on_read
    assert rtc.datetime == (2027, 1, 1, 0, 0, 3)


def test_rollovers_leap_years_and_the_century(rtc, chip, clock):
    chip.set_time((2028, 2, 28, 23, 59, 59))
    clock.advance(1)
    assert rtc.datetime == (2028, 2, 29, 0, 0, 0)
    assert chip.peek(3) == 2  # Tuesday
    chip.set_time((2099, 12, 31, 23, 59, 59))
    clock.advance(2)
    assert rtc.datetime == (2000, 1, 1, 0, 0, 1)  # the chip has no century digit


@given(
    start=st.integers(min_value=utc.to_epoch((2000, 1, 1, 0, 0, 0)), max_value=utc.to_epoch((2098, 1, 1, 0, 0, 0))),
    step=st.integers(min_value=0, max_value=400 * 86400),
)
@settings(max_examples=200, deadline=None)
def test_chip_counts_like_the_calendar(start, step):
    clock = FakeClock()
    bus = I2CBus()
    chip = DS1307Sim(time_source=clock)
    bus.attach(0x68, chip)
    rtc = drv.DS1307(MachineI2C(bus))
    rtc.set_datetime(utc.from_epoch(start))
    clock.advance(step)
    tm = rtc.datetime
    assert tm == utc.from_epoch(start + step)
    assert chip.peek(3) == utc.weekday(*tm[:3])


def test_drift_in_ppm(bus, clock):
    chip = DS1307Sim(time_source=clock, drift_ppm=+20)
    bus.attach(0x68, chip)
    rtc = drv.DS1307(MachineI2C(bus))
    rtc.set_datetime(T0)
    clock.advance(86400)  # +20 ppm is 1.728 s a day fast
    assert utc.to_epoch(rtc.datetime) - utc.to_epoch(T0) == 86401
    clock.advance(86400 * 9)
    assert utc.to_epoch(rtc.datetime) - utc.to_epoch(T0) == 864017  # 17.28 s in 10 days


def test_writing_seconds_resets_the_countdown_chain(rtc, chip, clock):
    clock.advance(0.9)
    rtc.set_datetime(T0)
    clock.advance(0.9)
    assert rtc.datetime == T0  # a full second after the write, not 0.1 s
    clock.advance(0.1)
    assert rtc.datetime[5] == 5


def test_f3_boot_does_not_reset_the_clock(bus, clock, tmp_path):
    state = str(tmp_path / "rtc.json")
    chip = DS1307Sim(time_source=clock, state_file=state)
    bus.attach(0x68, chip)
    drv.DS1307(MachineI2C(bus)).set_datetime(T0)
    set_writes = chip.time_register_writes
    clock.advance(3600)

    # Three boots: construct the driver and do what a board does at start-up (state, time, NVRAM).
    for _ in range(3):
        chip.power_off()
        clock.advance(10)
        chip.power_on()
        rtc = drv.DS1307(MachineI2C(bus))
        assert rtc.state() == "ok"
        rtc.read()
        rtc.datetime
        rtc.halted
        rtc.nvram_read(0, 4)
    assert chip.time_register_writes == set_writes
    assert rtc.datetime == utc.from_epoch(utc.to_epoch(T0) + 3630)


def test_persistence_across_a_process_restart_on_battery(tmp_path, clock):
    state = str(tmp_path / "rtc.json")
    bus = I2CBus()
    bus.attach(0x68, DS1307Sim(time_source=clock, state_file=state))
    rtc = drv.DS1307(MachineI2C(bus))
    rtc.set_datetime(T0)
    rtc.nvram_write(0, b"\x00\x00\x00\x07")
    clock.advance(5000)  # the virtual board process is down for a while

    bus2 = I2CBus()
    chip2 = DS1307Sim(time_source=clock, state_file=state)
    bus2.attach(0x68, chip2)
    rtc2 = drv.DS1307(MachineI2C(bus2))
    assert rtc2.datetime == utc.from_epoch(utc.to_epoch(T0) + 5000)
    assert rtc2.state() == "ok"
    assert rtc2.nvram_read(0, 4) == b"\x00\x00\x00\x07"
    assert chip2.time_register_writes == 0


def test_restart_without_battery_comes_up_halted_and_forgets(tmp_path, clock):
    state = str(tmp_path / "rtc.json")
    bus = I2CBus()
    bus.attach(0x68, DS1307Sim(time_source=clock, state_file=state, battery=False))
    drv.DS1307(MachineI2C(bus)).set_datetime(T0)
    clock.advance(60)

    bus2 = I2CBus()
    bus2.attach(0x68, DS1307Sim(time_source=clock, state_file=state, battery=False))
    rtc2 = drv.DS1307(MachineI2C(bus2))
    assert rtc2.halted
    assert rtc2.state() == "halted"
    assert rtc2.datetime == (2000, 1, 1, 0, 0, 0)
    rtc2.set_datetime(T0)
    assert rtc2.state() == "ok"


def test_power_loss_without_battery_garbage_time(bus, clock):
    chip = DS1307Sim(time_source=clock, battery=False, cold_time="garbage", seed=3)
    bus.attach(0x68, chip)
    rtc = drv.DS1307(MachineI2C(bus))
    rtc.set_datetime(T0)
    chip.power_off()
    with pytest.raises(OSError):
        rtc.state()  # a chip without VCC does not answer
    chip.power_on()
    assert rtc.state() == "halted"
    assert rtc.last_set() is None or rtc.last_set() != utc.to_epoch(T0)


def test_power_loss_on_battery_keeps_time_and_marker(bus, clock, chip):
    rtc = drv.DS1307(MachineI2C(bus))
    rtc.set_datetime(T0)
    chip.power_off()
    clock.advance(7200)
    chip.power_on()
    assert rtc.read() == ((2026, 11, 21, 11, 55, 4), "ok")


def test_set_rejects_times_the_chip_cannot_hold(rtc, chip):
    for tm in ((1999, 12, 31, 23, 59, 59), (2100, 1, 1, 0, 0, 0), (2026, 2, 30, 0, 0, 0), (2026, 1, 1, 24, 0, 0)):
        with pytest.raises(ValueError):
            rtc.set_datetime(tm)
    assert chip.time_register_writes == 0


def test_control_register_bits_that_read_zero(bus, chip):
    # The driver's identity check relies on these bits reading 0 whatever is written.
    MachineI2C(bus).writeto_mem(0x68, 0x07, b"\xff")
    assert chip.regs[7] == 0x93
    drv.DS1307(MachineI2C(bus))


def test_back_door_changes_persist_too(tmp_path, clock):
    # A virtual board's "rtc halt" (a failing battery) must still be there after the board process restarts.
    state = str(tmp_path / "rtc.json")
    chip = DS1307Sim(time_source=clock, state_file=state)
    chip.set_time(T0)
    chip.poke(0x00, chip.peek(0x00) | 0x80)
    clock.advance(100)
    again = DS1307Sim(time_source=clock, state_file=state)
    assert again.halted
    assert again.time() == T0


def test_fresh_chip_state_is_saved_with_its_ram(tmp_path, clock):
    state = str(tmp_path / "rtc.json")
    first = DS1307Sim(time_source=clock, state_file=state, seed=1)
    second = DS1307Sim(time_source=clock, state_file=state, seed=2)
    assert second.regs == first.regs


_MP_SCRIPT = """
from soil import ds1307

class RegisterArray:
    # The smallest stand-in that runs under MicroPython: a 64-byte register file with a wrapping pointer.
    def __init__(self):
        self.r = bytearray(64)
        self.r[0:8] = bytes((0x80, 0, 0, 1, 1, 1, 0, 3))
        self.time_writes = 0
    def readfrom_mem(self, a, m, n):
        if a != 0x68:
            raise OSError(19)
        return bytes(self.r[(m + i) & 63] for i in range(n))
    def writeto_mem(self, a, m, b):
        if a != 0x68:
            raise OSError(19)
        for i in range(len(b)):
            if (m + i) & 63 < 7:
                self.time_writes += 1
            self.r[(m + i) & 63] = b[i]

bus = RegisterArray()
rtc = ds1307.DS1307(bus)
print(rtc.state(), bus.time_writes)
rtc.set_datetime((2026, 11, 21, 21, 5, 9))
print(rtc.read(), rtc.last_set(), bytes(bus.r[0:7]))
bus.r[2] = 0x60 | 0x12
print(rtc.datetime)
bus.r[5] = 0x13
print(rtc.state())
rtc.nvram_write(44, b"wxyz")
print(rtc.nvram_read(44, 4))
try:
    ds1307.DS1307(bus, 0x69)
except OSError as e:
    msg = str(e)  # "[Errno 19] ..." on CPython, "[Errno 19] ENODEV: ..." on MicroPython
    print(msg[msg.index("no DS1307"):])
"""


@pytest.mark.micropython
def test_driver_gives_the_same_answers_under_micropython():
    from tests.mpy import require_micropython, run_cpython, run_micropython

    require_micropython()
    mp = run_micropython(_MP_SCRIPT)
    cp = run_cpython(_MP_SCRIPT)
    assert mp.returncode == 0, mp.stderr
    assert cp.returncode == 0, cp.stderr
    assert mp.stdout == cp.stdout
    lines = mp.stdout.splitlines()
    assert lines[0] == "halted 0"
    assert lines[1].startswith("((2026, 11, 21, 21, 5, 9), 'ok') %d" % utc.to_epoch((2026, 11, 21, 21, 5, 9)))
    assert lines[2] == "(2026, 11, 21, 12, 5, 9)"
    assert lines[3] == "invalid"
    assert lines[4] == "b'wxyz'"
    assert lines[5] == "no DS1307 at 0x69: check SDA/SCL and pull-ups"
