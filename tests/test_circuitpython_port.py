"""The CircuitPython port (firmware/circuitpython/hal.py and code.py) under CPython, on simulated chips.

What is real here: Adafruit's unmodified `adafruit_bus_device` (the HAL's bus adapter talks through its
`I2CDevice`, as on the board); Blinka's `analogio.AnalogIn` and `digitalio.DigitalInOut` on its OS-agnostic board
(`BLINKA_OS_AGNOSTIC=1`); the portable core with its DS1307 driver; code.py's own settings and loop
(`load_settings`, `step`) and soil.board.build. What is simulated: the I2C bus and the DS1307 at register level
(tools/sim/host). Blinka's OS-agnostic `busio.I2C` answers canned addresses with no DS1307 behind them, so
`tools.sim.host.i2c.BusioI2C` is handed to the HAL in its place; the HAL takes its bus objects as parameters for
exactly this. CircuitPython's `i2ctarget` does not exist on a PC: `SimI2CTarget` below is its
API (`request()`, request objects with `is_read`, `is_restart`, `read()`, `write()`) as a chip on the same
simulated bus, with the controller in its own thread as on a real wire (a read waits, clock stretched, until the
board's loop serves it). `usb_cdc.data` is `FakeSerial`: bytes in, bytes out, `in_waiting`, `timeout`.
"""

import collections
import importlib.util
import os
import sys
import threading
import time

import pytest

os.environ.setdefault("BLINKA_OS_AGNOSTIC", "1")

pytest.importorskip("adafruit_bus_device")

from gateway import frames  # noqa: E402
from soil import board as soil_board  # noqa: E402
from soil import ds1307 as portable  # noqa: E402
from soil import heartbeat, utc  # noqa: E402
from soil import master as master_side  # noqa: E402
from tools.sim.host.ds1307 import DS1307Sim  # noqa: E402
from tools.sim.host.i2c import BusioI2C, I2CBus, MachineI2C  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CP_DIR = os.path.join(ROOT, "firmware", "circuitpython")


def _load(name, filename):
    spec = importlib.util.spec_from_file_location(name, os.path.join(CP_DIR, filename))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


hal = _load("hal", "hal.py")               # code.py does `import hal`, as on CIRCUITPY
cp_code = _load("cp_code", "code.py")      # not "code": that is a standard-library module

try:
    import analogio
    import board
    import digitalio
    BLINKA = hasattr(board, "Ax_INPUT_FIXED_INT_PI")
except Exception:  # Blinka refuses an unknown platform when the variable came too late
    BLINKA = False


# --- fakes --------------------------------------------------------------------------------------------------------

class Clock:
    """One fake time for the DS1307's oscillator and the board's ticks."""

    def __init__(self, ticks_start=hal.TICKS_PERIOD - 30_000):
        self.ms = self._ms0 = 1_900_000_000_500   # integer milliseconds: no float drift; samples mid-second
        self._ticks_start = ticks_start    # CircuitPython starts ticks_ms shortly before its 2**29 wrap

    def __call__(self):
        return self.ms / 1000.0

    def advance(self, ms):
        self.ms += ms

    def ticks_ms(self):
        return (self._ticks_start + self.ms - self._ms0) & (hal.TICKS_PERIOD - 1)


class FakeSerial:
    """usb_cdc.Serial's non-blocking subset: bytes from the gateway in `rx`, everything written in `tx`."""

    def __init__(self, accept=None):
        self.timeout = 1
        self.write_timeout = None
        self.rx = bytearray()
        self.tx = bytearray()
        self.accept = accept          # at most this many bytes per write (a full USB buffer), None: all

    @property
    def in_waiting(self):
        return len(self.rx)

    def read(self, n):
        data = bytes(self.rx[:n])
        del self.rx[:n]
        return data

    def write(self, data):
        n = len(data) if self.accept is None else min(self.accept, len(data))
        self.tx += bytes(data[:n])
        return n


class FakeAnalogIn:
    def __init__(self, value):
        self.value = value


class FakeDigitalInOut:
    value = False


class SimI2CTarget:
    """CircuitPython's `i2ctarget.I2CTarget` as a target on tools.sim.host.i2c.I2CBus (the byte-level protocol).

    Bus side (`on_*`, the controller's thread): every START or repeated START to us opens a request; written
    bytes go into it; a read byte waits until the board has called `write()` on the request (clock stretching),
    up to `stretch_s`, then reads as 0xFF (nobody drives SDA). Board side: `request(timeout)` hands out the
    requests in order; a negative timeout looks once.
    """

    def __init__(self, bus, address, stretch_s=5.0):
        self.address = address
        self.stretch_s = stretch_s
        self._cv = threading.Condition()
        self._pending = collections.deque()
        self._current = None
        self.requests = 0
        bus.attach(address, self)

    # bus side
    def on_start(self, is_read):
        with self._cv:
            restart = self._current is not None
            if restart:
                self._current.ended = True
            req = SimRequest(self, is_read, restart)
            self._current = req
            self._pending.append(req)
            self.requests += 1
            self._cv.notify_all()
        return True

    def on_write(self, byte):
        with self._cv:
            self._current.rx.append(byte)
            self._cv.notify_all()
        return True

    def on_read(self):
        req = self._current
        with self._cv:
            if not self._cv.wait_for(lambda: req.tx, self.stretch_s):
                return 0xFF
            req.sent += 1
            return req.tx.popleft()

    def on_stop(self):
        with self._cv:
            if self._current is not None:
                self._current.ended = True
                self._current = None
            self._cv.notify_all()

    # board side: the CircuitPython API
    def request(self, timeout=-1):
        with self._cv:
            if not self._pending and timeout >= 0:
                self._cv.wait_for(lambda: self._pending, timeout or None)
            return self._pending.popleft() if self._pending else None

    def deinit(self):
        pass


class SimRequest:
    def __init__(self, target, is_read, is_restart):
        self.target = target
        self.address = target.address
        self.is_read = is_read
        self.is_restart = is_restart
        self.rx = bytearray()
        self.tx = collections.deque()
        self.sent = 0
        self.ended = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def read(self, n=-1, ack=True):
        cv = self.target._cv
        with cv:
            cv.wait_for(lambda: self.ended or (0 <= n <= len(self.rx)), 5.0)
            k = len(self.rx) if n < 0 else min(n, len(self.rx))
            data = bytes(self.rx[:k])
            del self.rx[:k]
            return data

    def write(self, buffer):
        if not self.is_read:
            return 0
        cv = self.target._cv
        with cv:
            self.tx.extend(bytes(buffer))
            cv.notify_all()
            cv.wait_for(lambda: self.ended, 5.0)
            self.tx.clear()
            return self.sent


# --- rigs ---------------------------------------------------------------------------------------------------------

def make_io():
    """The probe and the LED: Blinka's real classes on its OS-agnostic board if it loads here, else stand-ins."""
    if BLINKA:
        led = digitalio.DigitalInOut(board.Dx_OUTPUT)
        led.direction = digitalio.Direction.OUTPUT
        return analogio.AnalogIn(board.Ax_INPUT_FIXED_INT_PI), led, 31415
    return FakeAnalogIn(31415), FakeDigitalInOut(), 31415


@pytest.fixture
def chip_rig(tmp_path):
    clock = Clock()
    bus = I2CBus()
    chip = DS1307Sim(time_source=clock)          # a new chip: clock-halt set, as shipped
    bus.attach(0x68, chip)
    return clock, bus, chip


def make_node(tmp_path, clock, bus, role="single", serial=None, card_dir="sd", **hal_kw):
    """The HAL and the collector as code.py's main() builds them, from settings.toml values."""
    card_root = tmp_path / card_dir
    card_root.mkdir(exist_ok=True)
    analog, led, _ = make_io()
    serial = serial or FakeSerial()
    hal_kw.setdefault("uid", "e660383b13572a2f")
    h = hal.CircuitPythonHAL(BusioI2C(bus), analog, hal.Card(str(card_root)), serial, led, clock.ticks_ms,
                             **hal_kw)
    toml = {"SOIL_BOARD": "cp-1", "SOIL_ROLE": role, "SOIL_INTERVAL_MS": "1000", "SOIL_STATUS_INTERVAL_MS": 5000}
    s = cp_code.load_settings(lambda k, d=None: toml.get(k, d))
    return Node(h, soil_board.build(s, h, log=lambda msg: None)), serial


class Node:
    """What code.py's loop holds: the HAL and the collector."""

    def __init__(self, hal_, collector):
        self.hal = hal_
        self.collector = collector

    def start(self):
        self.collector.start()

    def step(self):
        cp_code.step(self.hal, self.collector)


class Gateway:
    """The gateway's side of the link, just enough: confirm the hello, acknowledge readings, send a T."""

    def __init__(self, serial):
        self.serial = serial
        self.frames = []
        self.boot = None
        self._buf = b""

    def pump(self):
        self._buf += bytes(self.serial.tx)
        self.serial.tx.clear()
        *lines, self._buf = self._buf.split(b"\n")
        for line in lines:
            kind, f = frames.decode(line)        # raises FrameError on anything malformed
            self.frames.append((kind, f))
            if kind == frames.HELLO:
                self.boot = f[2]
                self.serial.rx += frames.ack(f[3] - 1, self.boot)
            elif kind == frames.READING:
                self.serial.rx += frames.ack(f[0], self.boot)

    def send(self, frame):
        self.serial.rx += frame

    def of(self, kind):
        return [f for k, f in self.frames if k == kind]


def run(node, gw, clock, seconds, step_ms=100):
    for _ in range(int(seconds * 1000) // step_ms):
        clock.advance(step_ms)
        node.step()
        gw.pump()


# --- the DS1307 through the HAL's bus adapter ----------------------------------------------------------------------

def test_the_portable_driver_runs_over_the_hal_bus(chip_rig):
    clock, bus, chip = chip_rig
    rtc = portable.DS1307(hal.BusioMem(BusioI2C(bus)))
    assert rtc.read() == ((2000, 1, 1, 0, 0, 0), "halted")     # a new chip: clock-halt set, as shipped
    assert rtc.read() == portable.DS1307(MachineI2C(bus)).read()
    chip.set_time((2026, 5, 17, 21, 4, 5), hour12=True)          # running, 12-hour mode, never set by a gateway
    assert rtc.read() == ((2026, 5, 17, 21, 4, 5), "unset")
    rtc.set_datetime((2026, 5, 17, 10, 0, 0))
    assert rtc.read() == ((2026, 5, 17, 10, 0, 0), "ok")
    assert chip.time_register_writes == 7                        # one transaction of the seven time registers


def test_no_ds1307_is_an_oserror_naming_the_address():
    with pytest.raises(OSError) as e:
        portable.DS1307(hal.BusioMem(BusioI2C(I2CBus())))
    assert e.value.args[0] == 19 and "0x68" in str(e.value)


def test_set_clock_through_the_collector_makes_the_clock_ok(tmp_path, chip_rig):
    clock, bus, chip = chip_rig
    node, serial = make_node(tmp_path, clock, bus)
    gw = Gateway(serial)
    node.start()
    run(node, gw, clock, 2.0)
    assert gw.of(frames.HELLO)[0][5] == "halted"
    assert all("Q" in f[5] for f in gw.of(frames.READING))   # flagged, not silently given a made-up time
    gw.send(frames.settime("2026-03-01T12:00:00Z"))
    run(node, gw, clock, 0.1)
    assert node.collector.rtc.read() == ((2026, 3, 1, 12, 0, 0), "ok")
    assert portable.DS1307(MachineI2C(bus)).read() == ((2026, 3, 1, 12, 0, 0), "ok")   # the portable driver agrees
    assert not chip.halted
    assert chip.peek(0x03) == 7                       # 2026-03-01 is a Sunday: day 7 counting Monday = 1
    assert gw.of(frames.STATUS)[-1][1] == "ok"        # the status sent after the T frame says so
    run(node, gw, clock, 3.0)
    after = [r for r in gw.of(frames.READING) if r[3].startswith("2026-03-01T12:00:0")]
    assert [r[3][-3:] for r in after] == ["00Z", "01Z", "02Z"] or [r[3][-3:] for r in after] == ["01Z", "02Z", "03Z"]
    assert all("Q" not in r[5] for r in after)        # trusted from the T frame on


def test_nvram_boot_counter_round_trips(tmp_path, chip_rig):
    clock, bus, chip = chip_rig
    first, _ = make_node(tmp_path, clock, bus, card_dir="card-a")
    assert first.collector.boot == 1
    assert os.path.exists(tmp_path / "card-a" / "boot.slt")      # kept on the card and in the NVRAM
    # A new, empty card: the boot number can only come from the DS1307's NVRAM, read back through the adapter.
    second, _ = make_node(tmp_path, clock, bus, card_dir="card-b")
    assert second.collector.boot == 2
    rtc = second.collector.rtc
    assert rtc.nvram_read(0, 8) == bytes(chip.regs[0x08:0x10])
    rtc.nvram_write(40, b"\x01\x02\x03\x04\x05\x06\x07\x08")
    assert rtc.nvram_read(40, 8) == b"\x01\x02\x03\x04\x05\x06\x07\x08"
    assert portable.DS1307(MachineI2C(bus)).nvram_read(40, 8) == b"\x01\x02\x03\x04\x05\x06\x07\x08"
    with pytest.raises(ValueError):
        rtc.nvram_write(41, b"\x00" * 8)              # 0x38..0x3F is the clock marker's, not the caller's
    assert rtc.last_set() is None


def test_readings_are_valid_frames_across_the_ticks_wrap(tmp_path, chip_rig):
    clock, bus, chip = chip_rig
    portable.DS1307(MachineI2C(bus)).set_datetime((2026, 7, 1, 0, 0, 0))
    serial = FakeSerial(accept=40)                    # the USB buffer takes 40 bytes per write: partial writes
    node, serial = make_node(tmp_path, clock, bus, serial=serial)
    assert serial.timeout == 0 and serial.write_timeout == 0
    gw = Gateway(serial)
    start_ticks = clock.ticks_ms()
    node.start()
    run(node, gw, clock, 60.0)
    assert clock.ticks_ms() < start_ticks             # the counter wrapped at 2**29 during the run
    readings = gw.of(frames.READING)
    _, _, expected_raw = make_io()
    assert [r[2] for r in readings] == list(range(1, len(readings) + 1))
    assert 59 <= len(readings) <= 61                  # one per second across the wrap: no stall, no burst
    assert all(r[1] == node.collector.boot and r[4] == expected_raw and r[5] == "L" for r in readings)
    times = [utc.to_epoch(utc.parse_iso(r[3])) for r in readings]
    assert all(b - a == 1 for a, b in zip(times, times[1:])), [r[3] for r in readings]
    for _ in range(5):                                # the last frame's tail and its acknowledgement
        node.step()
        gw.pump()
    assert node.collector.pending() == 0              # acknowledged readings left the card


def test_ticks_diff_wraps_at_2_29():
    p = hal.TICKS_PERIOD
    assert p == 1 << 29
    assert hal.ticks_diff(5, p - 5) == 10
    assert hal.ticks_diff(p - 5, 5) == -10
    assert hal.ticks_diff(1000, 0) == 1000


# --- the heartbeat wire through a polled i2ctarget ----------------------------------------------------------------

def test_polled_target_receives_a_beat_and_serves_the_status(tmp_path, chip_rig):
    clock, bus, chip = chip_rig
    wire = I2CBus()
    target = SimI2CTarget(wire, 8)
    node, _ = make_node(tmp_path, clock, bus, role="standby", hb_target=target)
    node.start()
    node.step()
    mem = node.hal.hb_target.mem
    assert master_side.decode_status(mem[heartbeat.STATUS_OFF:]) == ("watching", 0, 0)

    beat = master_side.encode_beat("cp-0", 3, 41, 1_800_000_000, True, "active")
    result = {}

    def master():   # the master's two calls, as MasterRole makes them, through the HAL's busio shim
        i2c = hal.BusioMem(BusioI2C(wire))
        i2c.writeto_mem(8, heartbeat.BEAT_OFF, beat)
        result["status"] = i2c.readfrom_mem(8, heartbeat.STATUS_OFF, heartbeat.STATUS_LEN)

    t = threading.Thread(target=master)
    t.start()
    deadline = time.monotonic() + 10
    while t.is_alive() and time.monotonic() < deadline:
        node.hal.poll()                   # the standby's loop: the only place requests are served
        time.sleep(0.001)
    t.join(1)
    assert not t.is_alive()
    assert target.requests == 3           # the beat; then the status read's address write and the read itself
    assert master_side.decode_status(result["status"]) == ("watching", 0, 0)
    assert node.collector.pair.mailbox.take_beat() == ("cp-0", 3, 41, 1_800_000_000, True, "active")
    assert node.hal.hb_target.writes == 1
    node.step()                           # the role's step consumes beats from the mailbox
    assert node.collector.pair.state == "watching"


def test_polled_target_without_a_master_lets_the_standby_ask_the_gateway(tmp_path, chip_rig):
    clock, bus, chip = chip_rig
    target = SimI2CTarget(I2CBus(), 8)
    node, serial = make_node(tmp_path, clock, bus, role="standby", hb_target=target)
    gw = Gateway(serial)
    node.start()
    run(node, gw, clock, 11.0)
    assert node.collector.pair.state == "asking"
    assert gw.of(frames.WITNESS_QUERY)


def test_default_board_id_derives_from_the_cpu_uid():
    """No SOIL_BOARD (settings.toml.example leaves it unset): the id is b- and the uid's last 8 hex digits, so two
    freshly flashed Feathers never share the old fixed default `bed-1-a`."""
    s = cp_code.load_settings(lambda k, d=None: d, uid="e660383b13572a2f")
    assert s["board"] == "b-13572a2f"
    assert "\nSOIL_BOARD" not in open(os.path.join(CP_DIR, "settings.toml.example")).read()


def test_load_settings_names_the_bad_key():
    with pytest.raises(ValueError, match="SOIL_BOARD"):
        cp_code.load_settings(lambda k, d=None: d)
    with pytest.raises(ValueError, match="SOIL_INTERVAL_MS"):
        cp_code.load_settings(lambda k, d=None: {"SOIL_BOARD": "x", "SOIL_INTERVAL_MS": "fast"}.get(k, d))
    with pytest.raises(ValueError, match="SOIL_ROLE"):
        cp_code.load_settings(lambda k, d=None: {"SOIL_BOARD": "x", "SOIL_ROLE": "boss"}.get(k, d))
    s = cp_code.load_settings(lambda k, d=None: {"SOIL_BOARD": "x", "SOIL_INTERVAL_MS": "250"}.get(k, d))
    assert s["interval_ms"] == 250 and s["role"] == "single"


def test_settings_example_names_every_setting_with_its_default():
    """settings.toml.example is what a user copies: it must list every soil.board setting under its
    settings.toml name, with the default, and every pin code.py reads."""
    with open(os.path.join(CP_DIR, "settings.toml.example")) as f:
        text = f.read()
    values = {}
    for line in text.splitlines():
        code = line.split("#")[0].strip()
        if line.startswith("# SOIL_BOARD = "):
            code = line[2:].split("#")[0].strip()     # listed, commented out: unset, the id derives from the uid
        if "=" in code:
            key, value = (p.strip() for p in code.split("=", 1))
            values[key] = value.strip('"')
    for name, default, _ in soil_board.SETTINGS:
        assert cp_code.spell(name) in values, name
        if default is not None:
            assert values[cp_code.spell(name)] == str(default), name
    for pin, default in cp_code.PINS.items():
        assert values[pin] == default


def test_usb_link_needs_the_data_port():
    with pytest.raises(RuntimeError, match="usb_cdc.enable"):
        hal.UsbLink(None)


def test_card_wrapper_on_a_folder(tmp_path):
    card = hal.Card(str(tmp_path))
    with card.open("a.bin", "wb") as f:
        f.write(b"12345")
    assert card.listdir() == ["a.bin"] and card.size("a.bin") == 5 and card.free_bytes() > 0
    card.remove("a.bin")
    with pytest.raises(OSError) as e:
        card.size("a.bin")
    assert e.value.errno == 2
    calls = []

    def mount():
        calls.append(1)
        if len(calls) == 1:
            raise OSError(5, "no card")

    late = hal.Card(str(tmp_path), mount=mount)
    with pytest.raises(OSError) as e:
        late.listdir()
    assert e.value.args[0] == 19
    assert late.listdir() == [] and len(calls) == 2     # a card inserted later is mounted on the next try


# --- the fallback journal on the internal flash (issue 12) ---------------------------------------------------------

class Storage:
    """CircuitPython's `storage`, the one call internal_flash makes: getmount("/").readonly."""

    def __init__(self, readonly):
        self.readonly = readonly

    def getmount(self, path):
        assert path == "/"
        return self


def test_circuitpython_writable_internal_flash_keeps_readings_while_the_card_is_away(tmp_path, chip_rig):
    clock, bus, chip = chip_rig
    portable.DS1307(MachineI2C(bus)).set_datetime((2026, 7, 1, 0, 0, 0))
    logs = []
    flash = hal.internal_flash(Storage(False), root=str(tmp_path / "fallback"), log=logs.append)
    assert flash is not None and not logs and (tmp_path / "fallback").is_dir()
    inserted = []

    def mount():                                      # the SD card's mounter: no card until one is inserted
        if not inserted:
            raise OSError(5, "no card")
    (tmp_path / "sd").mkdir()
    card = hal.Card(str(tmp_path / "sd"), mount=mount)
    analog, led, _ = make_io()
    serial = FakeSerial()
    h = hal.CircuitPythonHAL(BusioI2C(bus), analog, card, serial, led, clock.ticks_ms, uid="e660383b13572a2f",
                             flash=flash)
    toml = {"SOIL_BOARD": "cp-1", "SOIL_STATUS_INTERVAL_MS": 2000}
    c = soil_board.build(cp_code.load_settings(lambda k, d=None: toml.get(k, d)), h, log=logs.append)
    node = Node(h, c)
    node.start()
    for _ in range(100):                              # 10 s, nobody acknowledges: everything must stay stored
        clock.advance(100)
        node.step()
    assert c.card_state == "absent" and c.seq >= 9 and not c.ram and c.dropped() == 0
    assert c.fallback.pending == c.seq, "every reading is on the internal flash"
    assert any(n.endswith(".log") for n in os.listdir(str(tmp_path / "fallback")))
    inserted.append(True)                             # the card is pushed in: moved there at the next status
    for _ in range(40):
        clock.advance(100)
        node.step()
    assert c.card_state == "ok" and c.fallback is None and c.journal.pending == c.seq and c.dropped() == 0


def test_circuitpython_read_only_internal_flash_says_so_in_one_line_and_keeps_ram():
    logs = []
    assert hal.internal_flash(Storage(True), root="/nonexistent-fallback", log=logs.append) is None
    assert logs == [hal.READ_ONLY_WARNING] and "\n" not in logs[0] and "RAM" in logs[0]
