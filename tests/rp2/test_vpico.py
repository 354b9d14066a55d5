"""The virtual Pico (tools/sim/vpico) under the real mpremote: the real rp2 firmware boots to its REPL, files copied
with mpremote live on its LittleFS in flash, which persists across a clean restart and a power cut, and the chips
on its pins answer the firmware's real machine.I2C and machine.ADC."""

import os
import subprocess
import sys
import time

import pytest
import serial

from tests.rp2.vpico import REPO, VPico, mpremote, wait_for

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def pico(tmp_path, rp2_image):
    with VPico(str(tmp_path), rp2_image) as board:
        yield board


def test_boots_to_the_repl_on_a_pty(pico):
    assert os.readlink(pico.tty).startswith("/dev/pts/")
    with serial.Serial(pico.tty, 115200, timeout=0.2) as s:
        s.write(b"\r\x03\x02")                  # Ctrl-C, Ctrl-B: the friendly REPL prints its banner
        seen = b""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and b">>> " not in seen:
            seen += s.read(256)
    assert b"MicroPython v1.27.0" in seen and b"Raspberry Pi Pico with RP2040" in seen, seen
    assert b">>> " in seen


def test_mpremote_ls_cp_exec_soft_reset(pico, tmp_path):
    assert mpremote(pico, "ls").stdout.strip() == "ls :"              # a fresh LittleFS, formatted at first boot
    src = tmp_path / "hello.py"
    src.write_text("import sys\nprint('hello from', sys.platform, 6 * 7)\n")
    mpremote(pico, "cp", str(src), ":hello.py")
    assert "hello.py" in mpremote(pico, "ls").stdout
    assert mpremote(pico, "exec", "import hello").stdout.strip() == "hello from rp2 42"
    assert "Up to date" in mpremote(pico, "cp", str(src), ":hello.py").stdout     # sha256 on the board
    out = mpremote(pico, "exec", "import builtins; builtins.marker = 1", "soft-reset", "exec",
                   "import builtins; print(hasattr(builtins, 'marker'))").stdout
    assert out.strip().endswith("False"), out                          # a fresh interpreter, the files kept
    miss = mpremote(pico, "cat", ":missing.txt", check=False)
    assert miss.returncode == 1 and "No such file or directory" in miss.stderr


def _write_and_read(board, text):
    mpremote(board, "exec", "f = open('state.txt', 'w'); f.write(%r); f.close()" % text)


def test_flash_persists_across_a_restart_and_a_power_cut(tmp_path, rp2_image):
    root = str(tmp_path)
    with VPico(root, rp2_image) as board:
        _write_and_read(board, "kept")
    assert not os.path.lexists(board.tty)                             # the link goes with the board
    board = VPico(root, rp2_image).start()
    try:
        assert mpremote(board, "exec", "print(open('state.txt').read())").stdout.strip() == "kept"
        _write_and_read(board, "after the cut")
        board.power_cut()
        assert board.proc.returncode == 1 and "power cut" in board.log()
        assert not os.path.lexists(board.tty)
    finally:
        board.stop()
    with VPico(root, rp2_image) as board:
        assert mpremote(board, "exec", "print(open('state.txt').read())").stdout.strip() == "after the cut"


DS1307_SCRIPT = """
from machine import I2C, Pin
i2c = I2C(0, scl=Pin(5), sda=Pin(4), freq=100000)
print('scan', i2c.scan())
r = i2c.readfrom_mem(0x68, 0, 8)
print('regs', r.hex())
i2c.writeto_mem(0x68, 0, bytes([0x55, 0x59, 0x23, 0x02, 0x31, 0x12, 0x26]))   # 2026-12-31 23:59:55, running
i2c.writeto_mem(0x68, 0x08, b'soil')
import time
time.sleep(6)
r = i2c.readfrom_mem(0x68, 0, 7)
print('later', r.hex())
print('ram', i2c.readfrom_mem(0x68, 0x08, 4))
i2c.writeto_mem(0x68, 2, bytes([0x40 | 0x20 | 0x11]))   # 12-hour mode, 11 PM
print('h12', i2c.readfrom_mem(0x68, 2, 1).hex())
try:
    i2c.readfrom(0x50, 1)
except OSError as e:
    print('absent', e.errno)
"""


def test_ds1307_through_the_real_machine_i2c(pico):
    out = mpremote(pico, "exec", DS1307_SCRIPT).stdout
    lines = dict(line.split(" ", 1) for line in out.strip().splitlines())
    assert lines["scan"] == "[104]"                                   # the pin-level answer to the bit-banged probe
    regs = bytes.fromhex(lines["regs"])
    assert regs[0] & 0x80 and regs[:7] == bytes([0x80, 0, 0, 1, 1, 1, 0])   # a new battery: halted, 2000-01-01
    assert regs[7] == 0x03
    later = bytes.fromhex(lines["later"])                              # BCD, carried into a new year
    assert later[6] == 0x27 and later[5] == 0x01 and later[4] == 0x01 and later[3] == 0x03
    assert later[2] == 0x00 and later[1] == 0x00 and 0x00 <= later[0] <= 0x09 and not later[0] & 0x80
    assert lines["ram"] == "b'soil'"
    assert lines["h12"] == "71"
    assert lines["absent"] == "5"                                      # EIO: nobody at 0x50


OFF_S = 3        # how long the board stays off between the runs (its DS1307 on its battery)


def test_ds1307_keeps_time_on_its_battery_between_runs(tmp_path, rp2_image):
    root = str(tmp_path)
    with VPico(root, rp2_image) as board:
        mpremote(board, "exec", "from machine import I2C, Pin; I2C(0, scl=Pin(5), sda=Pin(4)).writeto_mem("
                                "0x68, 0, bytes([0x00, 0x00, 0x12, 0x03, 0x02, 0x12, 0x26]))")
        written = time.monotonic()
    time.sleep(max(0.0, OFF_S - (time.monotonic() - written)))     # the power-off itself, not a wait for an event
    with VPico(root, rp2_image) as board:
        out = mpremote(board, "exec", "from machine import I2C, Pin; print(I2C(0, scl=Pin(5), sda=Pin(4))"
                                      ".readfrom_mem(0x68, 0, 7).hex())").stdout.strip()
        elapsed = time.monotonic() - written
    r = bytes.fromhex(out)
    assert r[2] == 0x12 and r[1] == 0x00 and not r[0] & 0x80, out      # running, still 12:00:xx
    seconds = (r[0] >> 4) * 10 + (r[0] & 15)
    assert OFF_S <= seconds <= elapsed + 1, (out, elapsed)             # it ran while the board was off, no faster


def test_the_soil_probe_and_the_led(tmp_path, rp2_image):
    with VPico(str(tmp_path), rp2_image, opts=["soil.value=2048"]) as board:
        out = mpremote(board, "exec", "from machine import ADC, Pin; print(ADC(26).read_u16()); "
                                      "Pin('LED', Pin.OUT).on()").stdout.strip()
        assert out == "32776"                                         # 2048 as read_u16 scales a 12-bit count
        led = os.path.join(board.flash, "led")
        wait_for(lambda: open(led).read() == "on\n", 10, "the LED on")
        mpremote(board, "exec", "from machine import Pin; Pin('LED', Pin.OUT).off()")
        wait_for(lambda: open(led).read() == "off\n", 10, "the LED off")


def test_a_bad_image_is_one_line(tmp_path):
    bad = tmp_path / "x.uf2"
    bad.write_bytes(b"\0" * 1024)
    proc = subprocess.run([sys.executable, "-m", "tools.sim.vpico", "--image", "nowhere.uf2", "--flash",
                           str(tmp_path / "f")], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stderr.strip() == ("vpico: nowhere.uf2: no such image (a firmware.uf2, "
                                                            "or stock / frozen)")


@pytest.mark.parametrize("args, line", [
    (["--opt", "bogus.x=1"], "vpico: --opt bogus.*: no device bogus on this board"),
    (["--device", "nothere"], "vpico: --device nothere: no such device (ds1307, soil, led, sdcard"),
    (["--uid", "12"], "vpico: --uid 12: 16 hex digits"),
])
def test_a_bad_device_argument_is_one_line_and_no_link(tmp_path, rp2_image, args, line):
    proc = subprocess.run([sys.executable, "-m", "tools.sim.vpico", "--image", rp2_image, "--flash",
                           str(tmp_path / "f")] + args, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stdout == "", proc
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith(line), proc.stderr
    assert not os.path.lexists(tmp_path / "tty")
