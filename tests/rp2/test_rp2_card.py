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
import json
import os
import subprocess
import sys

import pymysql
import pytest

from tests.rp2.story import gateway_for, install_sdcard_offline, make_flash
from tests.rp2.vpico import REPO, VPico, mpremote, wait_for
from tools.rp2 import images

MB = 1024 * 1024
CAPACITY = 16 * MB


def card_dir(board):
    return os.path.join(board.flash, "sd")


def card_state(board):
    try:
        with open(os.path.join(card_dir(board), "state.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def card_shows(board, predicate, what, timeout=30):
    """The card's report (state.json) once `predicate(state)` holds. The emulator writes the report 50 ms after a
    command, when its event loop gets a turn: right after the board answered it may still show the commands
    before the last ones, so a test waits for what it expects rather than reading it once."""
    return wait_for(lambda: (lambda st: st if st is not None and predicate(st) else None)(card_state(board)),
                    timeout, "the card's report to show %s" % what)


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
        if images.sdcard_driver() is None:
            pytest.skip("rp2: micropython-lib's sdcard.py is not in the build's sources (tools/rp2/build.sh src)")
        install_sdcard_offline(b)             # the driver the image's micropython-lib pins (v1.27.0)
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
    state = card_shows(card_board, lambda st: st["initialised"] and st["blocksWritten"] > 0 and st["blocksRead"] > 0,
                       "the card initialised, blocks written and read")
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
    card_shows(card_board, lambda st: st["removals"] == 2, "both pulls")
    set_faults(card_board, read_error=True)
    got = run(card_board, """
sd = card()
buf = bytearray(512)
print(repr(attempt(sd.readblocks, 0, buf)))
""")
    assert str(got).startswith("OSError"), "a data error token is an error"
    card_shows(card_board, lambda st: st["readErrors"] >= 1, "the read error")
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
    # The card answered the block with 'write error' (0x0D), once.
    card_shows(card_board, lambda st: st["writeErrors"] == 1 and st["commands"].get("CMD17", 0) >= 2,
               "one write error, and the block read back")
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


HAL_PULL = """
import hal, time
from machine import Pin, SPI
spi = SPI(1, baudrate=1000000, sck=Pin(10), mosi=Pin(11), miso=Pin(12))
c = hal.Card(spi, Pin(13, Pin.OUT, value=1))
with c.open("seg.log", "wb") as f:
    f.write(b"r" * 3000)
f = c.open("seg.log", "rb")                 # the journal keeps its segment open like this
print("open", c.mounted)
err = None
for i in range(300):                        # until the pull shows
    try:
        f.seek(0)
        f.read(3000)
    except OSError as e:
        err = e.args[0]
        break
    time.sleep_ms(50)
print("pulled", repr(err), c.mounted)
time.sleep(3)                               # the test pushes the card back in meanwhile
seen = []
for i in range(5):                          # what the core does next: Folder calls
    try:
        seen.append(("ok", c.listdir(), c.size("seg.log")))
    except OSError as e:
        seen.append(("err", e.args[0]))
    time.sleep_ms(200)
print(repr((c.mounted, seen)))
"""


def hal_on_board(board):
    """hal.py and the one core module it imports (soil.card), as source: the HAL alone, no main.py."""
    mpremote(board, "mkdir", ":lib/soil", check=False)
    for src, dst in (("firmware/lib/soil/__init__.py", ":lib/soil/__init__.py"),
                     ("firmware/lib/soil/card.py", ":lib/soil/card.py"), ("firmware/micropython/hal.py", ":hal.py")):
        mpremote(board, "cp", os.path.join(REPO, src), dst)


@pytest.mark.xfail(strict=True, reason="firmware: a card pulled under an "
                   "open file fails through the file object (the driver's text OSError 'timeout waiting for "
                   "response'), which hal.Card never sees: Card.mounted stays True, and the card pushed back in is "
                   "never initialised again (no CMD0; FatFs's cached sectors still answer)")
def test_hal_card_initialises_a_card_pushed_back_after_a_pull_seen_through_a_file(card_board):
    hal_on_board(card_board)
    proc = subprocess.Popen([sys.executable, "-m", "mpremote", "connect", card_board.tty, "exec", HAL_PULL],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().split() == ["open", "True"], proc.stderr.read()
        inits = card_state(card_board)["commands"]["CMD0"]
        set_faults(card_board, removed=True)
        pulled = proc.stdout.readline().split(None, 1)
        set_faults(card_board)
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert pulled[0] == "pulled", (pulled, err)
    print("the pull, seen through the open file:", pulled[1].strip())
    mounted, seen = eval(out.strip().splitlines()[-1])
    print("after the card came back: mounted=%r, %r" % (mounted, seen))
    state = card_state(card_board)
    assert state["commands"]["CMD0"] > inits and state["spi_mode"], "the card pushed back in was initialised again"


# --- the soil firmware on the real port -------------------------------------------------------------------------

def seq_seen(gw):
    """{boot: the highest seq the gateway saw on the line} of the one board, from its status file."""
    boards = (gw.status() or {}).get("boards") or [{}]
    return {int(b): q for b, q in (boards[0].get("seq_seen") or {}).items()}


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


@pytest.fixture
def soil(card_board, clean_db, tmp_path):
    _, log = make_flash(card_board, "rp2card", "--set", "status_interval_ms=2000")   # make flash BOARD=pico ...
    assert "sdcard driver present" in log, log
    gw = gateway_for(clean_db, str(tmp_path / "gw"), [card_board])
    try:
        yield card_board, gw, clean_db
    finally:
        gw.stop()
        print("--- gateway log ---\n" + gw.log_text()[-4000:])
        print("--- board log ---\n" + card_board.log()[-3000:])
        if not clean_db.running:
            clean_db.start()


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def assert_stored_once_with_sample_times(rows, up_at):
    """Each reading once; the ones sampled while the database was away (before `up_at`, UTC) came back from the
    card after it returned, with their own sample times."""
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
    during = [r for r in rows if r[4] == "rtc" and r[2] < up_at - datetime.timedelta(seconds=3)
              and r[5] >= up_at - datetime.timedelta(seconds=1)]
    assert len(during) >= 3, "readings sampled during the outage came back after it"
    for r in during:
        assert r[3] == "replay"
        assert r[2] < r[5] - datetime.timedelta(seconds=1), "stored with its sample time, not the replay time"


@pytest.mark.timeout(1200)
def test_outage_cached_on_the_card_then_a_power_cut_mid_write_nothing_lost(soil):
    board, gw, db = soil
    wait_for(lambda: sum(1 for r in readings(db, "rp2card") if r[4] == "rtc") >= 5, 240,
             "live readings with the RTC's time (the gateway set the clock)")
    stored = readings(db, "rp2card")
    boot = stored[-1][0]
    db.kill()                                 # the database crashes: readings wait on the card
    written = card_state(board)["blocksWritten"]
    # Readings sampled during the outage go to the card (the line need not show them: see below).
    card_shows(board, lambda st: st["blocksWritten"] >= written + 16, "the journal writing them to the card", 240)
    # A power cut while the card programs a block: after 700 more bytes of block data the block in progress keeps
    # only part of them (the rest garbage) and the emulator dies (SIGKILL), mid-instruction.
    set_faults(board, power_cut_after={"nbytes": 700, "tail": "garbage"})
    board.proc.wait(240)
    board.proc.stdout.close()
    assert "power cut" in board.log(), board.log()[-2000:]
    cut = card_state(board)["powerCut"]
    assert cut and cut["kept"] < 512, cut
    seen_before = seq_seen(gw)
    board.start()                             # the same flash.bin and card.img: a board powered up again
    # The new boot's readings are journaled behind the old boot's; while the database is down the gateway answers
    # with W (hold) and the board resends only what it has in flight, so they need not appear on the line before
    # the database returns (this wait was once for the line, and failed whenever the window's resend had stopped
    # growing before it reached them). Its hello says the new boot runs; its card's writes, that it journals.
    wait_for(lambda: "hello from rp2card boot %d" % (boot + 1) in gw.log_text(), 240, "the new boot's hello")
    at_hello = card_state(board)["blocksWritten"]
    card_shows(board, lambda st: st["blocksWritten"] >= at_hello + 12, "the new boot journaling readings", 240)
    up_at = utcnow()
    db.start()
    # The one reading whose record the cut tore may be gone (it was never on the card); nothing else may be.
    torn = (boot, seen_before.get(boot, 0) + 1)
    wait_for(lambda: not missing(readings(db, "rp2card"), seq_seen(gw), allow=[torn])
             and board_pending(db, "rp2card") == 0, 300, "the card's cache replayed into the database")
    rows = readings(db, "rp2card")
    assert not missing(rows, seq_seen(gw), allow=[torn])
    assert_stored_once_with_sample_times(rows, up_at)
    new_boot = [r for r in rows if r[0] == boot + 1 and r[3] == "replay"]
    assert new_boot, "the new boot's readings cached while the database was down came back from the card"
    lost = [m for m in missing(rows, seq_seen(gw)) if m == torn]
    print("power cut in block %d (%d bytes kept); the torn reading %s %s" % (
        cut["lba"], cut["kept"], torn, "was lost" if lost else "survived"))


FIRMWARE_NEVER_REMOUNTS = (
    "firmware: the card pulled under an open journal file fails through the file object (the driver's text "
    "OSError('timeout waiting for response')), which hal.Card never sees, so Card.mounted stays True; pushed back "
    "in, the card is powered up in SD mode and never gets CMD0 again (FatFs's cached sectors still answer listdir)")


@pytest.mark.timeout(1200)
def test_card_pulled_and_pushed_back_readings_wait_on_the_flash_fallback(soil):
    board, gw, db = soil
    wait_for(lambda: sum(1 for r in readings(db, "rp2card") if r[4] == "rtc") >= 3, 240, "live readings")
    stored = readings(db, "rp2card")
    boot = stored[-1][0]
    db.kill()
    wait_for(lambda: seq_seen(gw).get(boot, 0) >= stored[-1][1] + 3, 240, "readings cached on the card")
    programs = board.stats()["flash_program"]
    inits = card_state(board)["commands"].get("CMD0", 0)
    set_faults(board, removed=True)           # pulled: an empty slot, MISO high
    at = seq_seen(gw).get(boot, 0)
    wait_for(lambda: seq_seen(gw).get(boot, 0) >= at + 8, 240, "8 readings sampled without a card")
    assert board.stats()["flash_program"] > programs, "they went to the fallback journal on the board's flash"
    set_faults(board)                         # pushed back in
    try:
        wait_for(lambda: card_state(board)["commands"].get("CMD0", 0) > inits and card_state(board)["initialised"],
                 120, "the firmware to initialise the card again")
    except AssertionError:
        state = card_state(board)
        assert not state["spi_mode"] and state["commands"].get("CMD0", 0) == inits, state
        pytest.xfail(FIRMWARE_NEVER_REMOUNTS + "; the card saw %s" % (state["last"][-4:],))
    up_at = utcnow()
    db.start()
    wait_for(lambda: not missing(readings(db, "rp2card"), seq_seen(gw)) and board_pending(db, "rp2card") == 0, 300,
             "everything replayed")
    rows = readings(db, "rp2card")
    assert not missing(rows, seq_seen(gw))
    assert_stored_once_with_sample_times(rows, up_at)
    assert card_state(board)["removals"] == 1
