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


# --- the soil firmware on the real port -------------------------------------------------------------------------

class Gateway:
    """The real gateway (`python -m gateway run`) on the board's pty, storing into the private test server."""

    def __init__(self, root, db, ttys):
        self.dir = os.path.join(root, "gateway")
        os.makedirs(self.dir, exist_ok=True)
        self.status_path = os.path.join(self.dir, "status.json")
        self.log_path = os.path.join(self.dir, "gateway.log")
        cfg = os.path.join(self.dir, "gateway.toml")
        lines = ["[database]", 'host = "127.0.0.1"', "port = %d" % db.port, 'user = "%s"' % db.gateway_user,
                 'password_env = "SOIL_DB_PASSWORD"', 'database = "plant_moisture"', "", "[gateway]"]
        for tty in ttys:
            lines += ["", "[[board]]", 'url = "%s"' % tty, "baudrate = 115200"]
        with open(cfg, "w") as f:
            f.write("\n".join(lines) + "\n")
        env = dict(os.environ, SOIL_DB_PASSWORD=db.gateway_password,
                   PYTHONPATH=os.pathsep.join([REPO, os.path.join(REPO, "firmware", "lib")]))
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "gateway", "-v", "run", "-c", cfg, "--status",
                                      self.status_path, "--status-every", "0.5"], cwd=REPO, env=env, stdout=log,
                                     stderr=log)
        log.close()

    def seq_seen(self):
        """{boot: highest seq seen on the line} of the one board, from the gateway's status file."""
        try:
            with open(self.status_path) as f:
                boards = json.load(f)["boards"]
        except (OSError, ValueError, KeyError):
            return {}
        return {int(b): q for b, q in (boards[0].get("seq_seen") or {}).items()} if boards else {}

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def readings(db, board_id):
    conn = pymysql.connect(autocommit=True, database="plant_moisture", **db.admin_kwargs())
    try:
        with conn.cursor() as cur:
            cur.execute("SET time_zone = '+00:00'")
            cur.execute("SELECT boot, seq, date_saved, source, time_quality, received_at FROM plants WHERE board = %s "
                        "ORDER BY boot, seq", (board_id,))
            return cur.fetchall()
    finally:
        conn.close()


def board_pending(db, board_id):
    conn = pymysql.connect(autocommit=True, database="plant_moisture", **db.admin_kwargs())
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pending FROM boards WHERE board = %s", (board_id,))
            row = cur.fetchone()
            return None if row is None else row[0]
    finally:
        conn.close()


def missing(rows, seen, allow=()):
    """The (boot, seq) the gateway saw on the line, or that precede one stored, that are not stored."""
    have = {(r[0], r[1]) for r in rows}
    top = dict(seen)
    for boot, seq in have:
        top[boot] = max(top.get(boot, 0), seq)
    want = {(b, s) for b, n in top.items() for s in range(1, n + 1)} - set(allow)
    return sorted(want - have)


def flash_soil(board, board_id):
    """`make flash BOARD=pico PORT=<the board's pty>`: the real mpremote puts the .mpy files on its LittleFS."""
    proc = subprocess.run(["make", "--no-print-directory", "flash", "BOARD=pico", "PORT=" + board.tty,
                           "ID=" + board_id, "INTERVAL_MS=1000", "SET=status_interval_ms=2000"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "flash: sdcard driver present" in proc.stderr


@pytest.fixture
def soil(card_board, clean_db, tmp_path):
    flash_soil(card_board, "rp2card")
    gw = Gateway(str(tmp_path), clean_db, [card_board.tty])
    try:
        yield card_board, gw, clean_db
    finally:
        gw.stop()
        print("--- gateway log ---\n" + gw.log()[-4000:])
        print("--- board log ---\n" + card_board.log()[-3000:])
        if not clean_db.running:
            clean_db.start()


def assert_stored_once_with_sample_times(rows):
    ids = [(r[0], r[1]) for r in rows]
    assert len(ids) == len(set(ids)), "a reading was stored twice"
    # The gateway leaves a board's clock alone within 2 s of its own (gateway/clock.py, ClockKeeper.tolerance_s):
    # a sample time may be up to that much after the row's arrival, never more.
    ahead = [(r[:2], str(r[2]), str(r[5])) for r in rows if r[4] == "rtc" and r[2] > r[5]]
    if ahead:
        print("%d reading(s) stamped after their arrival (the board's RTC ahead): %s" % (len(ahead), ahead[:3]))
    for r in rows:
        assert r[2] <= r[5] + datetime.timedelta(seconds=2), "a sample time is never after the row arrived"
    back = [(a[:2], str(a[2]), b[:2], str(b[2])) for a, b in zip(rows, rows[1:])
            if a[0] == b[0] and a[4] == b[4] == "rtc" and b[2] < a[2]]
    if back:                                  # the gateway stepped the board's clock back: reported, not a loss
        print("sample time stepped back between %d pair(s) of readings: %s" % (len(back), back[:5]))
    replayed = [r for r in rows if r[3] == "replay" and r[4] == "rtc"]
    assert replayed, "some readings came back from the card"
    for r in replayed:
        assert r[2] < r[5] - datetime.timedelta(seconds=1), "stored with its sample time, not the replay time"


def test_outage_cached_on_the_card_then_a_power_cut_mid_write_nothing_lost(soil):
    board, gw, db = soil
    wait_for(lambda: sum(1 for r in readings(db, "rp2card") if r[4] == "rtc") >= 5, 240,
             "live readings with the RTC's time (the gateway set the clock)")
    stored = readings(db, "rp2card")
    boot = stored[-1][0]
    db.kill()                                 # the database crashes: readings wait on the card
    written = card_state(board)["blocksWritten"]
    wait_for(lambda: gw.seq_seen().get(boot, 0) >= stored[-1][1] + 8, 240, "8 readings sampled during the outage")
    assert card_state(board)["blocksWritten"] > written, "the journal wrote them to the card"
    # A power cut while the card programs a block: after 700 more bytes of block data the block in progress keeps
    # only part of them (the rest garbage) and the emulator dies (SIGKILL), mid-instruction.
    set_faults(board, power_cut_after={"nbytes": 700, "tail": "garbage"})
    board.proc.wait(240)
    board.proc.stdout.close()
    assert "power cut" in board.log(), board.log()[-2000:]
    cut = card_state(board)["powerCut"]
    assert cut and cut["kept"] < 512, cut
    seen_before = gw.seq_seen()
    board.start()                             # the same flash.bin and card.img: a board powered up again
    wait_for(lambda: gw.seq_seen().get(boot + 1, 0) >= 3, 240, "readings of the new boot")
    db.start()
    # The one reading whose record the cut tore may be gone (it was never on the card); nothing else may be.
    torn = (boot, seen_before.get(boot, 0) + 1)
    wait_for(lambda: not missing(readings(db, "rp2card"), gw.seq_seen(), allow=[torn])
             and board_pending(db, "rp2card") == 0, 300, "the card's cache replayed into the database")
    rows = readings(db, "rp2card")
    assert not missing(rows, gw.seq_seen(), allow=[torn])
    assert_stored_once_with_sample_times(rows)
    lost = [m for m in missing(rows, gw.seq_seen()) if m == torn]
    print("power cut in block %d (%d bytes kept); the torn reading %s %s" % (
        cut["lba"], cut["kept"], torn, "was lost" if lost else "survived"))


def test_card_pulled_and_pushed_back_readings_wait_on_the_flash_fallback(soil):
    board, gw, db = soil
    wait_for(lambda: sum(1 for r in readings(db, "rp2card") if r[4] == "rtc") >= 3, 240, "live readings")
    stored = readings(db, "rp2card")
    boot = stored[-1][0]
    db.kill()
    wait_for(lambda: gw.seq_seen().get(boot, 0) >= stored[-1][1] + 3, 240, "readings cached on the card")
    programs = board.stats()["flash_program"]
    inits = card_state(board)["commands"].get("CMD0", 0)
    set_faults(board, removed=True)           # pulled: an empty slot, MISO high
    at = gw.seq_seen().get(boot, 0)
    wait_for(lambda: gw.seq_seen().get(boot, 0) >= at + 8, 240, "8 readings sampled without a card")
    assert board.stats()["flash_program"] > programs, "they went to the fallback journal on the board's flash"
    set_faults(board)                         # pushed back in
    wait_for(lambda: card_state(board)["commands"].get("CMD0", 0) > inits and card_state(board)["initialised"], 240,
             "the firmware to initialise the card again")
    db.start()
    wait_for(lambda: not missing(readings(db, "rp2card"), gw.seq_seen()) and board_pending(db, "rp2card") == 0, 300,
             "everything replayed")
    rows = readings(db, "rp2card")
    assert not missing(rows, gw.seq_seen())
    assert_stored_once_with_sample_times(rows)
    assert card_state(board)["removals"] == 1
