"""The redundant pair on the real rp2 port: two virtual Picos (two emulator processes) joined by an emulated I2C
wire on I2C1 (GP6/GP7, boards.py's hb_i2c), the standby's side the real `machine.I2CTarget` in memory mode, the
master's the real `machine.I2C` (tools/sim/vpico/devices/wire.mjs, i2c_target.mjs).

First the wire alone (the I2C target mode of the emulator against MicroPython's own classes), then the issue's story:
the soil firmware flashed as master and standby with `make flash BOARD=pico ROLE=... PORT=...`, one gateway, a private MariaDB; the master's emulator killed, the standby takes over, the master comes back
and takes over again. As in tests/test_pair.py, the checks are on what the database holds: every one-second slot
stored once, by one collector.
"""

import datetime
import json
import os
import subprocess
import types

import pytest

from tests.rp2.story import sdcard_args
from tests.rp2.vpico import REPO, VPico, mpremote, wait_for

TARGET_SETUP = """
import machine
mem = bytearray(b'0123456789abcdef')
got = []
def h(t):
    got.append((t.irq().flags(), t.memaddr))
tgt = machine.I2CTarget(1, addr=8, mem=mem, scl=machine.Pin(7), sda=machine.Pin(6))
tgt.irq(h, machine.I2CTarget.IRQ_END_WRITE | machine.I2CTarget.IRQ_END_READ)
print('ready')
"""

MASTER = """
import machine
i2c = machine.I2C(1, scl=machine.Pin(7), sda=machine.Pin(6), freq=100000)
i2c.writeto_mem(8, 2, b'HELLO')
print(bytes(i2c.readfrom_mem(8, 0, 10)))
try:
    i2c.writeto_mem(9, 0, b'x')
except OSError as e:
    print('no target at 9:', e.args[0])
"""


def pair_boards(tmp, image, names=("m", "t")):
    sock = os.path.join(tmp, "hb.sock")
    master = VPico(os.path.join(tmp, names[0]), image, devices=["wire"], opts=["wire.peer=" + sock])
    standby = VPico(os.path.join(tmp, names[1]), image, devices=["wire"], opts=["wire.listen=" + sock])
    return master, standby


def test_i2c_target_on_one_virtual_pico_answers_machine_i2c_on_another(rp2_image, tmp_path):
    master, target = pair_boards(str(tmp_path), rp2_image)
    with target, master:
        r = mpremote(target, "exec", TARGET_SETUP)
        assert r.stdout.strip() == "ready"
        r = mpremote(master, "exec", MASTER)
        assert r.stdout.split() == ["b'01HELLO789'", "no", "target", "at", "9:", "5"], r.stdout
        r = mpremote(target, "resume", "exec", "print(bytes(mem)); print(got)")
        mem, got = r.stdout.strip().splitlines()
        assert mem == "b'01HELLO789abcdef'"
        # The handler ran: END_WRITE (32) after the 5 bytes written at 2, END_READ (16) after the read from 0; the
        # write that only sets the address for the read ends with none (MicroPython's memory-mode rules).
        assert got == "[(32, 2), (16, 0)]"


def test_a_dead_target_is_a_nack_and_a_returning_one_is_heard(rp2_image, tmp_path):
    master, target = pair_boards(str(tmp_path), rp2_image)
    with master:
        probe = "import machine\ni2c = machine.I2C(1, scl=machine.Pin(7), sda=machine.Pin(6))\n" \
                "try:\n    i2c.writeto_mem(8, 0, b'x'); print('ack')\nexcept OSError as e:\n    print('nack', e.args[0])\n"
        assert mpremote(master, "exec", probe).stdout.split() == ["nack", "5"]     # nobody on the other end
        with target:
            mpremote(target, "exec", TARGET_SETUP)
            assert mpremote(master, "exec", probe).stdout.split() == ["ack"]
        assert mpremote(master, "exec", probe).stdout.split() == ["nack", "5"]     # its process ended


# --- the story: master and standby running the soil firmware ---------------------------------------------------

MASTER_ID, STANDBY_ID = "pair-a", "pair-b"


def flash(board, role, board_id):
    """`make flash BOARD=pico ROLE=<role> PORT=<pty> ID=<id>` as a user types it, with micropython-lib's sdcard
    driver from a checkout as an offline user gives it (tests/rp2/story.py). No card is fitted: the firmware keeps
    its readings on the flash fallback until the gateway has them."""
    p = subprocess.run(["make", "-s", "flash", "BOARD=pico", "ROLE=%s" % role, "PORT=%s" % board.tty,
                        "ID=%s" % board_id, "FLASH_ARGS=%s" % " ".join(sdcard_args())],
                       capture_output=True, text=True, timeout=600, cwd=REPO)
    assert p.returncode == 0, (p.stdout[-2000:], p.stderr[-2000:], board.log()[-2000:])


def events(stack, kind=None):
    rows = stack.query("SELECT board, event, board_time, detail FROM collector_events ORDER BY id")
    return [r for r in rows if kind is None or r[1] == kind]


def latest(stack, board):
    return stack.query("SELECT MAX(date_saved) FROM plants WHERE board = %s AND time_quality = 'rtc'", (board,))[0][0]


def clock_sets(stack):
    st = stack.gateway.status() or {}
    return tuple(b.get("clock_sets") for b in st.get("boards", []))


def wait_clocks_settled(stack, quiet_s=8, timeout=120):
    """Until the gateway has set no board's clock for `quiet_s`: an emulated RP2040 lags the wall clock while its
    CPU is busy (booting, being flashed: 0.12-0.15x real time) and catches up after, so its DS1307, counted in
    emulated time, is corrected a few times after a flash. A correction moves the sample seconds by the correction
    (a gap or a repeat that has nothing to do with the pair), so the audit starts once the clocks hold."""
    import time
    deadline = time.monotonic() + timeout
    last, since = clock_sets(stack), time.monotonic()
    while time.monotonic() - since < quiet_s:
        assert time.monotonic() < deadline, "the gateway kept setting the boards' clocks: %s" % (clock_sets(stack),)
        time.sleep(0.5)
        now = clock_sets(stack)
        if now != last:
            last, since = now, time.monotonic()


def slot_audit(stack, first, last):
    """(missing seconds, seconds stored more than once) over [first, last], trusted rows of the pair."""
    rows = stack.query("SELECT date_saved, board, collector FROM plants WHERE board IN (%s, %s) "
                       "AND time_quality = 'rtc' AND date_saved BETWEEN %s AND %s",
                       (MASTER_ID, STANDBY_ID, first, last))
    seen = {}
    for t, board, collector in rows:
        seen.setdefault(t, []).append((board, collector))
    missing, t = [], first
    while t <= last:
        if t not in seen:
            missing.append(t.strftime("%H:%M:%S"))
        t += datetime.timedelta(seconds=1)
    doubled = {t.strftime("%H:%M:%S"): who for t, who in seen.items() if len(who) > 1}
    return missing, doubled


def clock_step_backs(stack, board):
    """[(seq, from, to)] where the board's own sample times went back within one boot: the gateway set its clock
    back. The emulated DS1307 runs ahead after a CPU burst (WIRE.md), and the firmware then stamps again seconds it
    already stamped (a limitation of the firmware on real boards too, for any backward correction)."""
    rows = stack.query("SELECT boot, seq, date_saved FROM plants WHERE board = %s AND time_quality = 'rtc' "
                       "ORDER BY boot, seq", (board,))
    return [(b[1], a[2], b[2]) for a, b in zip(rows, rows[1:]) if a[0] == b[0] and b[2] <= a[2]]


def check_doubled(stack, doubled):
    """Seconds stored by both collectors are the pair's failure; seconds one board stamped twice after its clock
    was set back are the known limitation above, not the pair's, and end the test as an expected failure."""
    if not doubled:
        return
    by_both = {t: who for t, who in doubled.items() if len({b for b, _ in who}) > 1}
    assert not by_both, "seconds stored by both boards: %s; events %s" % (by_both, events(stack))
    backs = {b: clock_step_backs(stack, b) for who in doubled.values() for b, _ in who}
    hms = "%H:%M:%S"
    unexplained = {t: who for t, who in doubled.items()
                   if not any(to.strftime(hms) <= t <= frm.strftime(hms) for _, frm, to in backs[who[0][0]])}
    assert not unexplained, "seconds stored twice by one board without its clock set back over them: %s; steps " \
        "back %s" % (unexplained, backs)
    pytest.xfail("one board stamped seconds twice after the gateway set its clock back (emulated DS1307 ran ahead "
                 "after a CPU burst): %s; steps back %s" % (doubled, backs))


def start_pair(stack, tmp, story):
    """Both boards flashed and running, the gateway on both, the clocks settled and the master publishing with the
    standby watching. Returns (master, standby, first second to audit)."""
    master, standby = pair_boards(tmp, story.image, names=("a", "b"))
    story.boards += [master, standby]
    master.start()
    standby.start()
    flash(master, "master", MASTER_ID)       # the master first, as on a bench: a standby alone takes over
    flash(standby, "standby", STANDBY_ID)
    stack.start_gateway(boards=[master, standby])
    wait_for(lambda: latest(stack, MASTER_ID), 120, "the master's first readings with a set clock")
    wait_clocks_settled(stack)
    assert not events(stack, "takeover"), events(stack)
    first = latest(stack, MASTER_ID) + datetime.timedelta(seconds=1)
    wait_for(lambda: latest(stack, MASTER_ID) >= first + datetime.timedelta(seconds=3), 60,
             "the master publishing with the standby watching")
    return master, standby, first


@pytest.fixture
def story(rp2_image):
    """The image and the boards of a story; the boards are stopped (and their logs printed) whatever happens."""
    st = types.SimpleNamespace(image=rp2_image, boards=[])
    yield st
    for b in st.boards:
        b.stop()
        print("--- %s ---\n%s" % (b.root, b.log()[-3000:]))


def test_pair_master_killed_standby_takes_over_master_back_takes_over_again(story, stack, tmp_path):
    master, standby, first = start_pair(stack, str(tmp_path), story)

    master.power_cut()                        # the master's board loses power
    wait_for(lambda: events(stack, "takeover"), 120, "the standby's takeover")
    wait_for(lambda: latest(stack, STANDBY_ID) and latest(stack, STANDBY_ID) >=
             latest(stack, MASTER_ID) + datetime.timedelta(seconds=5), 120, "the standby publishing")
    last_master = latest(stack, MASTER_ID)
    taken = events(stack, "takeover")[0]
    print("takeover: master's last second %s, takeover event at board time %s (%s)"
          % (last_master, taken[2], taken[3]))

    master.start()                            # power back: the firmware boots from its flash
    wait_for(lambda: events(stack, "handback"), 180, "the standby's hand-back")
    back = latest(stack, STANDBY_ID)
    wait_for(lambda: latest(stack, MASTER_ID) >= back + datetime.timedelta(seconds=5), 120,
             "the master publishing again")
    end = latest(stack, MASTER_ID) - datetime.timedelta(seconds=1)

    missing, doubled = slot_audit(stack, first, end)
    print("audit %s..%s: %d s, missing %s, doubled %s; wire %s; stored minus sampled (s) %s" % (
        first, end, (end - first).total_seconds() + 1, missing, doubled, wire_stats(master),
        clock_skew(stack, first, end)))
    assert not missing, "seconds nobody stored: %s; events %s" % (missing, events(stack))
    collectors = dict(stack.query("SELECT board, GROUP_CONCAT(DISTINCT collector) FROM plants "
                                  "WHERE board IN (%s, %s) AND time_quality = 'rtc' GROUP BY board",
                                  (MASTER_ID, STANDBY_ID)))
    assert collectors == {MASTER_ID: "master", STANDBY_ID: "standby"}
    assert latest(stack, STANDBY_ID) < latest(stack, MASTER_ID)    # the standby stopped at the hand-back
    check_doubled(stack, doubled)


def test_pair_wire_cut_gateway_hears_master_standby_stays_put(story, stack, tmp_path):
    """Only the wire is cut (both boards up): the standby's silence makes it ask the gateway, which still hears the
    master, so the standby does not publish alongside it; the master reports its standby missing, and back."""
    master, standby, first = start_pair(stack, str(tmp_path), story)
    cut = os.path.join(master.flash, "wire.cut")
    open(cut, "w").close()
    wait_for(lambda: events(stack, "witness_refused"), 120, "the gateway refusing the takeover")
    wait_for(lambda: [e for e in events(stack, "standby_missing") if e[2] and e[2] >= first], 60,
             "the master reporting its silent standby")
    n = latest(stack, MASTER_ID)
    wait_for(lambda: latest(stack, MASTER_ID) >= n + datetime.timedelta(seconds=12), 120, "the master going on")
    os.remove(cut)
    wait_for(lambda: [e for e in events(stack, "standby_back") if e[2] and e[2] >= first], 60,
             "the master hearing its standby again")
    end = latest(stack, MASTER_ID) - datetime.timedelta(seconds=1)
    missing, doubled = slot_audit(stack, first, end)
    received = [r[0] for r in stack.query("SELECT received_at FROM plants WHERE board = %s AND date_saved BETWEEN %s "
                                          "AND %s ORDER BY received_at", (MASTER_ID, first, end))]
    pause = max((b - a).total_seconds() for a, b in zip(received, received[1:]))
    # On rp2 a NACK is OSError(EIO), not ENODEV: soil.master takes either as "no standby" and publishes alone
    # at once (tests/test_redundancy.py, test_f12_master_on_rp2_...); the pause is printed, not asserted.
    print("wire cut: audit %s..%s: missing %s, doubled %s; the master's longest pause in publishing %.1f s; "
          "stored minus sampled (s) %s" % (first, end, missing, doubled, pause, clock_skew(stack, first, end)))
    assert not events(stack, "takeover"), events(stack)
    assert stack.query("SELECT COUNT(*) FROM plants WHERE board = %s", (STANDBY_ID,))[0][0] == 0
    assert not missing, (missing, events(stack))
    check_doubled(stack, doubled)


def clock_skew(stack, first, end):
    """Per board, the least and the most of (gateway's receive time - the sample's RTC second), in seconds: about 0
    to 1.5 on a real board; below 0 means the board's clock ran ahead of the gateway's. A figure, not asserted: the
    emulated DS1307 counts emulated time, which lags the wall clock while the CPU is busy and catches up after
    (WIRE.md), so two boards' seconds can be a few seconds apart."""
    rows = stack.query("SELECT board, MIN(TIMESTAMPDIFF(MICROSECOND, date_saved, received_at)), "
                       "MAX(TIMESTAMPDIFF(MICROSECOND, date_saved, received_at)) FROM plants "
                       "WHERE board IN (%s, %s) AND time_quality = 'rtc' AND date_saved BETWEEN %s AND %s "
                       "AND source = 'live' GROUP BY board", (MASTER_ID, STANDBY_ID, first, end))
    return {b: (round(lo / 1e6, 1), round(hi / 1e6, 1)) for b, lo, hi in rows}


def wire_stats(board):
    try:
        with open(os.path.join(board.flash, "wire.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
