"""Issue 11, section 1: a board's identity (board id + hardware uid), the identity a port serves, and the field
checks of what a board sends.

The protocol tests drive gateway.protocol.BoardProtocol line by line (tests/test_gateway_protocol.py's rig); the
collision test runs real processes: two virtual boards on real pseudo-terminals, the gateway, a private MariaDB.
"""

import logging
import os
import time

import pytest

from gateway import frames
from gateway.identity import IdentityRegistry
from soil import utc
from tests.test_gateway_protocol import ISO0, Rig, reading
from tools.demo.stack import BoardProc, wait_for

UID_A = "e660383b13572a2f"
UID_B = "e660383b0badc0de"


# --- item 3: field checks -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad_time", ["0000-01-01T00:00:00Z", "2026-02-30T12:00:00Z", "2026-11-21T99:99:99Z",
                                      "2026-13-01T00:00:00Z", "2026-11-21T24:00:00Z"])
def test_an_impossible_time_fails_the_field_checks_and_takes_no_frame_number(bad_time):
    """A frame with an impossible time is refused whole: no row, no frame number. The real reading numbered like
    it is the one stored, and the acknowledgement never covers a reading that was not stored."""
    rig = Rig()
    rig.hello()
    rig.line.take()
    assert rig.feed(reading(1, raw=7, time=bad_time)) == []
    assert rig.submitted == [] and rig.p.stats.bad_frames == 1 and rig.p.expected == 1
    rig.feed(reading(1, raw=512))                      # the real frame 1, resent by the board
    (epoch, n, r), = rig.submitted
    assert (n, r.raw, r.time_quality) == (1, 512, "rtc")
    rig.p.committed_through(epoch, 1)
    assert rig.line.take() == [(frames.ACK, (1, 3))]
    with pytest.raises(frames.FrameError, match="impossible time"):
        frames.decode(reading(1, time=bad_time))


@pytest.mark.parametrize("far", ["9999-12-31T23:59:59Z", "2000-01-01T00:00:00Z"])
def test_a_sample_time_far_from_the_gateway_clock_is_flagged_suspect(far, caplog):
    rig = Rig()
    rig.hello()
    with caplog.at_level(logging.WARNING, "gateway.protocol"):
        rig.feed(reading(1, time=far), reading(2, time=far), reading(3))
    quality = [(r.sample_time[:4], r.time_quality) for _, _, r in rig.submitted]
    assert quality == [(far[:4], "suspect"), (far[:4], "suspect"), (ISO0[:4], "rtc")]
    assert rig.p.stats.far_times == 2
    assert sum("far from the gateway's clock" in m for m in caplog.messages) == 1


def test_a_time_within_a_card_s_reach_stays_rtc():
    """A replay from the card is hours or days old; a board's clock a few seconds off before the gateway sets it."""
    rig = Rig()
    rig.hello()
    t0 = utc.to_epoch(utc.parse_iso(ISO0))
    rig.feed(reading(1, time=utc.iso(utc.from_epoch(t0 - 40 * 86400)), flags="C"),
             reading(2, time=utc.iso(utc.from_epoch(t0 + 30))))
    assert [r.time_quality for _, _, r in rig.submitted] == ["rtc", "rtc"]


@pytest.mark.parametrize("detail", ["\x1b[2J cleared", "tab\there", "caf\u00e9", "bell\x07", "x" * 61, "a*b"])
def test_event_detail_with_control_or_non_ascii_text_is_refused(detail):
    body = ("E,takeover,%s,%s" % (detail, ISO0)).encode()
    line = frames.encode_body(body)
    with pytest.raises(frames.FrameError):
        frames.decode(line)
    rig = Rig()
    rig.hello()
    rig.statuses.clear()
    rig.feed(line)
    assert rig.statuses == [] and rig.p.stats.bad_frames == 1
    assert frames.check_text("master silent 10 s", frames.MAX_DETAIL, "detail") == "master silent 10 s"


def test_a_hello_with_control_characters_in_fw_is_refused():
    line = frames.encode_body(("H,2,bed-1,3,1,%s,ok,single,1.0\x1b,%s" % (ISO0, UID_A)).encode())
    with pytest.raises(frames.FrameError, match="fw"):
        frames.decode(line)


# --- the hello of protocol 2 ---------------------------------------------------------------------------------------

def test_the_hello_carries_the_uid_and_a_protocol_1_hello_gets_one_clear_line(caplog):
    kind, f = frames.decode(frames.hello("bed-1", 3, 1, ISO0, "ok", "single", "1.0", UID_A))
    assert (kind, f[0], f[-1]) == ("H", 2, UID_A)
    for bad in ("E660383B", "abc", "x" * 33, "e660383g"):
        with pytest.raises(frames.FrameError, match="uid"):
            frames.decode(frames.encode_body(("H,2,bed-1,3,1,%s,ok,single,1.0,%s" % (ISO0, bad)).encode()))
    old = frames.encode_body(("H,1,bed-1,3,1,%s,ok,single,1.0" % ISO0).encode())
    rig = Rig()
    with caplog.at_level(logging.WARNING, "gateway.protocol"):
        rig.feed(old, old, old)
    said = [m for m in caplog.messages if "protocol version 1" in m]
    assert len(said) == 1 and "re-flash" in said[0]
    assert not rig.p.synced


def test_default_board_id_derives_from_the_uid():
    from soil import board
    assert board.default_board_id(UID_A) == "b-13572a2f"
    assert board.uid_hex(b"\xe6\x60\x38\x3b\x13\x57\x2a\x2f") == UID_A
    assert frames.valid_board_id(board.default_board_id(board.uid_hex(bytes(range(16)))))
    assert frames.valid_uid(board.uid_hex(bytes(range(16))))
    assert board.settings(lambda name, default: default, uid=UID_A)["board"] == "b-13572a2f"
    assert board.settings({"board": None}.get, uid=UID_A)["board"] == "b-13572a2f"     # config.json's null


# --- item 2: identity change on a served port ----------------------------------------------------------------------

def test_an_identity_change_on_a_served_port_without_a_fresh_boot_is_refused(caplog):
    """A hello with another board's id (or uid) on a served port relabelled 26 readings: now it is refused, the
    port keeps serving its board, and the refusal is said once (log, alert row, status)."""
    rig = Rig()
    rig.hello(n_next=1, board="bed-1", uid=UID_A)
    rig.feed(reading(1), reading(2))
    rig.line.take()
    rig.statuses.clear()
    with caplog.at_level(logging.ERROR, "gateway.protocol"):
        assert rig.hello(n_next=3, board="bed-2", uid=UID_B) == []            # forged or stray: no confirmation
        assert rig.hello(n_next=3, board="bed-1", uid=UID_B) == []            # same id, another chip
        assert rig.hello(n_next=3, board="bed-2", uid=UID_B) == []            # said once per identity
    assert (rig.p.board_id, rig.p.uid, rig.p.synced, rig.p.expected) == ("bed-1", UID_A, True, 3)
    rig.feed(reading(3))
    assert [(n, r.board) for _, n, r in rig.submitted] == [(1, "bed-1"), (2, "bed-1"), (3, "bed-1")]
    alerts = [f for kind, f in rig.statuses if kind == "alert"]
    assert len(alerts) == 2 and all(a["event"] == "identity_refused" and a["board"] == "bed-1" for a in alerts)
    assert UID_A in alerts[0]["detail"] and UID_B in alerts[0]["detail"] and "port-1" in alerts[0]["detail"]
    assert len([m for m in caplog.messages if "without a fresh boot" in m]) == 2
    assert rig.p.stats.refused_hellos == 3 and "bed-2" in rig.p.refused


def test_after_a_reopen_the_hello_must_be_the_board_served_before_anything_is_acknowledged():
    """A stale tty link reaches a stranger's board: its hello is refused and none of its readings is taken."""
    rig = Rig()
    rig.hello(n_next=1, board="bed-1", uid=UID_A)
    rig.feed(reading(1))
    rig.p.connection_lost(None)
    rig.p.connection_made(rig.line)
    rig.line.take()
    assert rig.hello(n_next=40, boot=9, board="other", uid=UID_B) == []
    sent = rig.feed(reading(40, boot=9), reading(41, boot=9), frames.status(ISO0, "ok", 4, 0, "ok", 9))
    assert all(kind == frames.QUERY for kind, _ in sent)
    assert len(rig.submitted) == 1 and not rig.p.synced
    assert [k for k, _ in rig.statuses].count("status") == 0
    assert rig.hello(n_next=2, board="bed-1", uid=UID_A) == [(frames.ACK, (1, 3))]   # its own board is back
    rig.feed(reading(2))
    assert [(n, r.board) for _, n, r in rig.submitted] == [(1, "bed-1"), (2, "bed-1")]


def test_a_stranger_behind_a_reopened_port_is_no_sign_the_served_board_lives():
    """The witness asks whether a master's port still answers: after the port was reopened, frames from another
    board (a stale tty link) do not count, so a standby is not kept from taking over by a stranger."""
    import threading
    rig = Rig()
    rig.hello(n_next=1, board="bed-1-a", uid=UID_A)
    rig.p.connection_lost(None)
    rig.p.connection_made(rig.line)
    rig.clock.t += 5
    answer = []
    asker = threading.Thread(target=lambda: answer.append(rig.p.probe(timeout=1.0)))
    asker.start()
    while asker.is_alive():
        rig.feed(reading(7, boot=9), frames.hello("other", 9, 7, ISO0, "ok", "single", "1.0", UID_B))
        asker.join(0.05)
    assert answer == [False]
    asker = threading.Thread(target=lambda: answer.append(rig.p.probe(timeout=30)))
    asker.start()
    rig.hello(n_next=2, board="bed-1-a", uid=UID_A)             # its own board answers
    asker.join(10)
    assert answer == [False, True]


def test_a_new_board_at_a_fresh_boot_is_served():
    """A board swapped onto the port (or renamed and reset) says hello with n_next = 1: that is accepted."""
    rig = Rig()
    rig.hello(n_next=1, board="bed-1", uid=UID_A)
    assert rig.hello(n_next=1, boot=1, board="bed-9", uid=UID_B) == [(frames.ACK, (0, 1))]
    assert (rig.p.board_id, rig.p.uid) == ("bed-9", UID_B)


# --- item 1: two boards with one id --------------------------------------------------------------------------------

class _Port:
    def __init__(self, name):
        self.name = name


class _Session:
    def __init__(self, name):
        self.cfg = _Port(name)


def test_the_registry_gives_an_id_to_the_first_uid_for_good(clean_db):
    """ReadingStore.claim_identity on a real server: the first uid keeps the id, across registries (a gateway
    restart), and a row from before uids (NULL) goes to the first claimer."""
    from gateway.db import ReadingStore
    from tools.demo.stack import admin_query

    def query(sql):
        return admin_query(clean_db.admin_kwargs(), sql)
    cfg = clean_db.gateway_cfg
    query("INSERT INTO boards (board, role) VALUES ('old', 'single')")
    first = IdentityRegistry(ReadingStore(cfg))
    assert first.claim(_Session("p1"), "dup", UID_A) is None
    assert first.claim(_Session("p1"), "old", UID_A) is None
    refusal = first.claim(_Session("p2"), "dup", UID_B)
    assert UID_A in refusal and UID_B in refusal and "p1" in refusal and "p2" in refusal
    again = IdentityRegistry(ReadingStore(cfg))                    # the gateway restarted: the table decides
    assert again.claim(_Session("p2"), "dup", UID_B) is not None
    assert again.claim(_Session("p3"), "dup", UID_A) is None
    assert query("SELECT board, uid, port FROM boards ORDER BY board") == (
        ("dup", UID_A, "p3"), ("old", UID_A, "p1"))
    events = query("SELECT board, event, detail FROM board_events WHERE event = 'identity_collision'")
    assert len(events) == 2 and all(e[0] == "dup" and UID_B in e[2] for e in events)


@pytest.mark.integration
def test_two_boards_same_id_keep_their_readings(stack):
    """Two virtual boards started with `--board dup` on one gateway: the first board's readings are stored; the
    second's are kept on its card, never acknowledged, and one alert names both boards (uids) and ports. Renamed,
    the second board sends its kept readings under its new id: nothing was lost."""
    run = stack.run_dir
    opts = {"interval_ms": 300, "status_interval_ms": 1000, "max_samples": 8, "rtc_set": True, "noise": 0}
    a = BoardProc(stack, "dup", os.path.join(run, "boards", "dup-a"), dict(opts, moisture=1111))
    b = BoardProc(stack, "dup", os.path.join(run, "boards", "dup-b"), dict(opts, moisture=2222))
    stack.boards += [a, b]
    a.start()
    stack.start_gateway([a, b])
    wait_for(lambda: len(stack.readings("dup")) >= 8, 60, "the first board's 8 readings")
    b.start()
    gw = stack.gateway

    def refused():
        return ((gw.status() or {}).get("boards") or [{}, {}])[1].get("refused_hellos", 0)
    wait_for(lambda: b.status()["seq"] >= 8 and (refused() >= 3 or b.status()["pending"] < 8), 60,
             "the second board's 8 samples, refused three times (or acknowledged)")
    st = b.status()
    assert st["pending"] == 8, "the second board was told to forget readings: %s" % st
    uid_a, uid_b = a.status()["uid"], b.status()["uid"]
    rows = stack.readings("dup")
    assert len(rows) == 8 and {r[4] for r in rows} == {1111}
    alerts = (gw.status() or {}).get("alerts")
    assert alerts and alerts[0]["owner_uid"] == uid_a and alerts[0]["refused_uid"] == uid_b
    assert alerts[0]["owner_port"] == a.tty and alerts[0]["refused_port"] == b.tty
    events = stack.query("SELECT detail FROM board_events WHERE board = 'dup' AND event = 'identity_collision'")
    assert len(events) == 1 and uid_a in events[0][0] and uid_b in events[0][0]
    assert gw.log_text().count("identity collision") == 1
    assert stack.query("SELECT uid FROM boards WHERE board = 'dup'") == ((uid_a,),)
    # The operator renames the second board: its kept readings go out under the new id.
    b.board_id = "dup-b"
    b.restart()
    wait_for(lambda: len(stack.readings("dup-b")) >= 8, 60, "the renamed board's kept readings")
    assert {r[4] for r in stack.readings("dup-b")} == {2222} and len(stack.readings("dup")) == 8
    wait_for(lambda: b.status()["pending"] == 0, 30, "the renamed board to drain")


@pytest.mark.micropython
def test_virtual_boards_have_stable_distinct_uids(tmp_path):
    """A uid is the chip's: the same for a board across restarts, different between two boards (the virtual
    board's `<state>/uid`, the virtual MicroPython board's flash folder)."""
    from tests.test_mpboard import Board, mpremote
    from tests.mpy import require_micropython
    from tools.sim.vboard.hal import board_uid
    one = board_uid(str(tmp_path / "v1"))
    assert frames.valid_uid(one) and board_uid(str(tmp_path / "v1")) == one != board_uid(str(tmp_path / "v2"))
    require_micropython()
    ids = []
    for name in ("m1", "m2", "m1"):
        b = Board(str(tmp_path / name))
        try:
            ids.append(mpremote(b, "exec", "import machine, binascii; "
                                           "print(binascii.hexlify(machine.unique_id()).decode())").stdout.strip())
        finally:
            b.stop()
    assert ids[0] == ids[2] != ids[1] and all(frames.valid_uid(u) for u in ids), ids


@pytest.mark.integration
def test_forged_frames_with_impossible_times_never_take_a_real_reading_s_slot(stack):
    """Over a real pty: a forged R frame with the number of the board's next frame and an impossible time goes out
    just ahead of the real one. Refused by its field checks, it takes no number: the real reading is stored, and
    every reading of the board is there (today the forged one was stored at the gateway's time and the real one
    acknowledged, never stored)."""
    b = stack.start_board("forge-1", interval_ms=300, status_interval_ms=1000, rtc_set=True, noise=0, moisture=3000)
    stack.start_gateway()
    wait_for(lambda: len(stack.readings("forge-1")) >= 3, 30, "the first readings")
    for bad in ("0000-01-01T00:00:00Z", "2026-02-30T12:00:00Z", "2026-11-21T99:99:99Z"):
        st = b.status()
        forged = frames.encode(frames.READING, (st["next_n"], st["boot"], 900, bad, 7, "L"))
        assert b.control("noise " + forged.hex()) == "ok"
        wait_for(lambda: b.status()["next_n"] > st["next_n"] + 1, 30, "the board's next frames")
    wait_for(lambda: b.status()["pending"] == 0, 30, "every reading acknowledged")
    seqs = sorted(r[2] for r in stack.readings("forge-1"))
    assert seqs == list(range(1, max(seqs) + 1)), "a reading is missing: %s" % seqs
    assert all(r[4] == 3000 for r in stack.readings("forge-1"))
    wait_for(lambda: (stack.gateway.status() or {"boards": [{}]})["boards"][0].get("bad_frames", 0) >= 3, 30,
             "the three forged frames counted as bad")


@pytest.mark.integration
def test_a_forged_hello_with_another_id_on_a_served_port_relabels_nothing(stack):
    """Over a real pty: a hello naming another board, with the served board's own numbers (no fresh boot), goes out
    ahead of the board's frames. It is refused: no reading is stored under the other id, none is missing, and one
    identity_refused row names both."""
    b = stack.start_board("real-1", interval_ms=300, status_interval_ms=1000, rtc_set=True)
    stack.start_gateway()
    wait_for(lambda: len(stack.readings("real-1")) >= 3, 30, "the first readings")
    st = b.status()
    fields = [frames.PROTO, "intruder", st["boot"], st["next_n"], utc.iso(utc.from_epoch(int(time.time()))),
              "ok", "single", "9.9"] + ([UID_B] if frames.PROTO >= 2 else [])   # the hello of the running release
    assert b.control("noise " + frames.encode(frames.HELLO, fields).hex()) == "ok"
    wait_for(lambda: b.status()["next_n"] > st["next_n"] + 5, 30, "the board's next frames")
    wait_for(lambda: b.status()["pending"] == 0, 30, "every reading acknowledged")
    assert stack.readings("intruder") == ()
    seqs = sorted(r[2] for r in stack.readings("real-1"))
    assert seqs == list(range(1, max(seqs) + 1)), "a reading is missing: %s" % seqs
    rows = stack.query("SELECT board, detail FROM board_events WHERE event = 'identity_refused'")
    assert len(rows) == 1 and rows[0][0] == "real-1" and "intruder" in rows[0][1] and b.status()["uid"] in rows[0][1]
