"""The SD card on the virtual Pico's SPI1 (tools/sim/vpico/devices/sdcard.mjs) under the real rp2 firmware.

First micropython-lib's real `sdcard` driver (the version MicroPython v1.27.0 pins, from the image's own source
tree) on the real `machine.SPI(1)`: it initialises the card, reads its capacity from the CSD, mounts it with
os.VfsFat, writes and reads files, and meets the card's faults. Then the soil firmware, flashed with `make flash
BOARD=pico`, through a database outage (readings cached on the emulated card, replayed exactly once), a power cut
in the middle of a card write, and the card pulled and pushed back in.

Waits are on events (a line from the board, a row in the database, the card's state.json), each bounded; nothing
asserts a timing.
"""

import datetime
import glob
import json
import os
import subprocess
import sys

import pymysql
import pytest

from tests.rp2.vpico import REPO, VPico, mpremote, wait_for

MB = 1024 * 1024
CAPACITY = 16 * MB


def driver_source(image):
    """sdcard.py of the micropython-lib that MicroPython's tree for `image` pins (the build's own checkout)."""
    cache = os.environ.get("SOIL_RP2_CACHE") or os.path.expanduser("~/.cache/soil-rp2")
    version = os.path.basename(os.path.dirname(image)).split("-")[0]      # images/v1.27.0-RPI_PICO/firmware.uf2
    found = glob.glob(os.path.join(cache, "src", "micropython-" + version, "lib", "micropython-lib", "micropython",
                                   "drivers", "storage", "sdcard", "sdcard.py"))
    if not found:
        pytest.skip("rp2: micropython-lib's sdcard.py is not in the build's sources (%s/src)" % cache)
    return found[0]


def card_dir(board):
    return os.path.join(board.flash, "sd")


def card_state(board):
    try:
        with open(os.path.join(card_dir(board), "state.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def set_faults(board, **faults):
    path = os.path.join(card_dir(board), "faults.json")
    with open(path + ".tmp", "w") as f:
        json.dump(faults, f)
    os.replace(path + ".tmp", path)


@pytest.fixture
def card_board(tmp_path, rp2_image):
    b = VPico(str(tmp_path / "pico"), rp2_image, devices=["sdcard"], opts=["sdcard.capacity=16M"])
    b.start()
    try:
        mpremote(b, "mkdir", ":lib")
        mpremote(b, "cp", driver_source(rp2_image), ":lib/sdcard.py")
        yield b
    finally:
        b.stop()


MOUNT = """
import os, sdcard, time
from machine import Pin, SPI
spi = SPI(1, baudrate=1000000, sck=Pin(10), mosi=Pin(11), miso=Pin(12))
cs = Pin(13, Pin.OUT, value=1)
def card():
    return sdcard.SDCard(spi, cs)
def mount():
    sd = card()
    os.mount(os.VfsFat(sd), "/sd")
    return sd
def attempt(f, *a):
    try:
        return f(*a)
    except OSError as e:
        return "OSError:%s" % (e.args[0],)
"""


def run(board, code, timeout=180):
    """Run `code` (after MOUNT) on the board; its last printed line is a Python literal we evaluate."""
    out = mpremote(board, "exec", MOUNT + code, timeout=timeout).stdout.strip().splitlines()
    assert out, "the board printed nothing"
    return eval(out[-1])                      # a repr() printed by the board: numbers, strings, lists, tuples


def test_driver_initialises_mounts_and_keeps_files_on_the_card(card_board):
    got = run(card_board, """
sd = mount()
st = os.statvfs("/sd")
with open("/sd/soil.txt", "w") as f:
    for i in range(300):
        f.write("reading %04d\\n" % i)
with open("/sd/soil.txt") as f:
    back = f.read()
os.mkdir("/sd/logs")
with open("/sd/logs/a.bin", "wb") as f:
    f.write(bytes(range(256)) * 40)
listing = sorted(os.listdir("/sd")), os.listdir("/sd/logs"), os.stat("/sd/logs/a.bin")[6]
after = os.statvfs("/sd")[3]
os.umount("/sd")
print(repr((sd.sectors, st[0], st[2], (st[3], after), back.count("reading"), back[-13:], listing)))
""")
    sectors, bsize, blocks, free, count, last, listing = got
    assert sectors == CAPACITY // 512, "the driver read the capacity from the CSD"
    assert CAPACITY * 0.9 < bsize * blocks <= CAPACITY, "the FAT partition fills the card"
    assert free[0] == blocks and free[1] < free[0], "a blank card, then the files take clusters"
    assert count == 300 and last == "reading 0299\n"
    assert listing == (["logs", "soil.txt"], ["a.bin"], 10240)
    state = card_state(card_board)
    assert state["initialised"] and state["blocksWritten"] > 0 and state["blocksRead"] > 0
    for cmd in ("CMD0", "CMD8", "ACMD41", "CMD58", "CMD9", "CMD16", "CMD17", "CMD24"):
        assert state["commands"].get(cmd), "the driver sent %s" % cmd
    # The card file is the card: the bytes are there, in a FAT that fsck.fat accepts.
    with open(os.path.join(card_dir(card_board), "card.img"), "rb") as f:
        img = f.read()
    assert b"reading 0299\n" in img and bytes(range(256)) * 4 in img
    start = int.from_bytes(img[446 + 8:446 + 12], "little")
    count = int.from_bytes(img[446 + 12:446 + 16], "little")
    part = os.path.join(card_board.root, "part.img")
    with open(part, "wb") as f:
        f.write(img[start * 512:(start + count) * 512])
    fsck = subprocess.run(["fsck.fat", "-n", part], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    # And the board sees the same files after a clean restart of the emulator.
    card_board.stop()
    card_board.start()
    got = run(card_board, """
mount()
print(repr((sorted(os.listdir("/sd")), open("/sd/soil.txt").read().count("reading"))))
""")
    assert got == (["logs", "soil.txt"], 300)


def test_driver_meets_the_card_faults(card_board):
    run(card_board, """
mount()
with open("/sd/keep.txt", "w") as f:
    f.write("kept")
os.umount("/sd")
print(1)
""")
    set_faults(card_board, removed=True)
    got = run(card_board, """
print(repr(attempt(card)))
""")
    assert got == "OSError:no SD card", "an empty slot: CMD0 gets no answer"
    set_faults(card_board)
    got = run(card_board, """
mount()
print(repr(open("/sd/keep.txt").read()))
""")
    assert got == "kept"
    # Pulled while mounted: the board mounts, says so, and polls the card until it fails; then files fail too.
    proc = subprocess.Popen([sys.executable, "-m", "mpremote", "connect", card_board.tty, "exec", MOUNT + """
sd = mount()
print("mounted")
buf = bytearray(512)
for i in range(400):
    if attempt(sd.readblocks, 0, buf) is not None:
        break
    time.sleep_ms(50)
print(repr((i, attempt(lambda: open("/sd/keep.txt").read()), attempt(lambda: open("/sd/new.txt", "w").write("x")))))
"""], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "mounted", proc.stderr.read()
        set_faults(card_board, removed=True)
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    polls, read, write = eval(out.strip().splitlines()[-1])
    assert polls < 399, "the pulled card was noticed"
    assert str(read).startswith("OSError") and str(write).startswith("OSError"), (read, write)
    assert card_state(card_board)["removals"] == 2
    set_faults(card_board, read_error=True)
    got = run(card_board, """
sd = card()
buf = bytearray(512)
print(repr(attempt(sd.readblocks, 0, buf)))
""")
    assert str(got).startswith("OSError"), "a data error token is an error"
    assert card_state(card_board)["readErrors"] >= 1
    set_faults(card_board)


WRITE_REFUSED = """
sd = card()
old = bytearray(512)
sd.readblocks(100, old)
new = bytearray(b"\\xa5" * 512)
result = attempt(sd.writeblocks, 100, new)
back = bytearray(512)
sd.readblocks(100, back)
print(repr((result, back == old, back == new)))
"""


def test_a_block_the_card_refuses_is_not_on_the_card(card_board):
    set_faults(card_board, write_error=True)
    result, unchanged, written = run(card_board, WRITE_REFUSED)
    set_faults(card_board)
    assert card_state(card_board)["writeErrors"] == 1, "the card answered the block with 'write error' (0x0D)"
    assert unchanged and not written
    print("writeblocks() returned %r for the refused block" % (result,))


@pytest.mark.xfail(strict=True, reason="micropython-lib sdcard.SDCard.write() returns silently when the card "
                   "answers a data block with 'write error' (0x0D): writeblocks() reports success, the block is "
                   "not on the card (sdcard.py, write(): `if (response & 0x1F) != 0x05: ... return`)")
def test_driver_reports_a_card_write_error(card_board):
    set_faults(card_board, write_error=True)
    result, _, _ = run(card_board, WRITE_REFUSED)
    set_faults(card_board)
    assert str(result).startswith("OSError"), "writeblocks() returned %r for a block the card refused" % (result,)
