"""Issue 14, alerts: each opens once, clears once, is stored, and is delivered to the log, a webhook and e-mail
without ever holding up the writer (gateway/alerts.py, gateway/alertwatch.py, gateway/notify.py).

The rules and the book run against a private MariaDB (the `alerts` table of schema version 8); the webhook is a
real HTTP server on a free port, the e-mail a real SMTP server (aiosmtpd); the last tests run the gateway process
with virtual boards (tools.demo.stack) and unplug one."""

import email
import email.policy
import http.server
import json
import socket
import threading

import pytest
from hypothesis import given, settings, strategies as st

from gateway.alerts import AlertBook, AlertStore, Hysteresis
from gateway.alertwatch import AlertRules, AlertSettings
from gateway.db import ReadingStore
from gateway.moisture import latest_moisture
from gateway.notify import Email, Notifier, SmtpSettings, Webhook
from tests.test_db_store import admin_query
from tools.demo.stack import wait_for

pytestmark = pytest.mark.timeout(300)


# --- dry soil: hysteresis ---------------------------------------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), max_size=60))
def test_dry_alert_opens_below_and_clears_only_above_the_band(values):
    h = Hysteresis(20, 25)
    dry = False
    for pct in values:
        change = h.update(("bed-1", 0), pct)
        if change == "open":
            assert not dry and pct < 20
            dry = True
        elif change == "clear":
            assert dry and pct > 25
            dry = False
        else:
            assert (dry and pct <= 25) or (not dry and pct >= 20), (dry, pct)


def test_a_band_the_wrong_way_round_is_refused():
    with pytest.raises(ValueError, match="dry_clear_above"):
        Hysteresis(25, 20)
    with pytest.raises(ValueError, match="dry_clear_above"):
        AlertSettings(dry_below=30, dry_clear_above=10)


# --- the book: one row per alert --------------------------------------------------------------------------------
class Clock:
    def __init__(self, t=1_800_000_000.0):
        self.t = t

    def __call__(self):
        return self.t


def rows(srv):
    return admin_query(srv, "SELECT kind, board, probe, detail, opened_at IS NOT NULL, cleared_at IS NOT NULL "
                            "FROM alerts ORDER BY id")


def test_an_alert_opens_once_clears_once_and_is_still_open_after_a_restart(clean_db):
    clock = Clock()
    seen = []
    store = ReadingStore(clean_db.gateway_cfg)
    book = AlertBook(AlertStore(store), deliver=lambda event, a: seen.append((event, a.kind, a.board)), now=clock)
    assert book.set("silent", "bed-1", None, True, "port gone") == "open"
    assert book.set("silent", "bed-1", None, True, "port gone") is None         # still open: no second row
    assert book.set("dry", "bed-1", 0, True, "18%") == "open"
    store.close()
    # The gateway restarts: a new book finds both open, and clears one when its condition is gone.
    store = ReadingStore(clean_db.gateway_cfg)
    book = AlertBook(AlertStore(store), deliver=lambda event, a: seen.append((event, a.kind, a.board)), now=clock)
    assert book.load() and book.is_open("silent", "bed-1") and book.is_open("dry", "bed-1", 0)
    clock.t += 60
    assert book.set("silent", "bed-1", None, False, "frames again") == "clear"
    assert book.set("silent", "bed-1", None, False) is None
    store.close()
    assert rows(clean_db) == (("silent", "bed-1", None, "port gone", 1, 1), ("dry", "bed-1", 0, "18%", 1, 0))
    assert seen == [("open", "silent", "bed-1"), ("open", "dry", "bed-1"), ("clear", "silent", "bed-1")]


def test_rules_card_clock_and_identity_open_after_their_grace_and_clear(clean_db):
    clock = Clock()
    store = ReadingStore(clean_db.gateway_cfg)
    book = AlertBook(AlertStore(store), now=clock)
    rules = AlertRules(AlertSettings(grace_s=30, drop_window_s=600, silent_after_s=60))
    served = {"port": "/dev/ttyACM0", "board": "bed-1", "port_open": True, "port_error": None, "refused": None,
              "last_frame_age_s": 1.0}
    state = {"database_ok": True, "listening_s": 1000.0, "boards": [served]}
    boards = {"bed-1": {"card": "full", "clock": "halted", "dropped": 0}}
    rules.apply(book, state, boards, [], clock.t)
    assert not book.open_alerts()                              # a card being swapped, a clock about to be set
    clock.t += 31
    rules.apply(book, state, boards, [], clock.t)
    assert sorted(a.kind for a in book.open_alerts()) == ["card", "clock"]
    boards = {"bed-1": {"card": "ok", "clock": "ok", "dropped": 3}}    # the card back; 3 readings it lost
    clock.t += 5
    rules.apply(book, state, boards, [], clock.t)
    assert [a.kind for a in book.open_alerts()] == ["card"]     # dropping readings keeps it open a while
    clock.t += 601
    rules.apply(book, state, boards, [], clock.t)
    assert not book.open_alerts()
    refused = dict(served, board="bed-1", port="/dev/ttyACM1", refused="bed-1 belongs to uid e660383b")
    rules.apply(book, dict(state, boards=[served, refused]), boards, [], clock.t)
    assert [(a.kind, a.detail) for a in book.open_alerts()] == [("identity", "bed-1 belongs to uid e660383b")]
    store.close()


def test_a_silent_board_says_why_and_not_while_the_gateway_has_just_started(clean_db):
    clock = Clock()
    store = ReadingStore(clean_db.gateway_cfg)
    book = AlertBook(AlertStore(store), now=clock)
    rules = AlertRules(AlertSettings(silent_after_s=60))
    gone = {"port": "/dev/ttyACM0", "board": "bed-1", "port_open": False, "port_error": "no such device",
            "refused": None, "last_frame_age_s": None}
    rules.apply(book, {"database_ok": True, "listening_s": 10.0, "boards": [gone]}, None, None, clock.t)
    assert not book.open_alerts()
    rules.apply(book, {"database_ok": True, "listening_s": 70.0, "boards": [gone]}, None, None, clock.t)
    (alert,) = book.open_alerts()
    assert alert.kind == "silent" and "port /dev/ttyACM0 gone (no such device)" in alert.detail
    quiet = dict(gone, port_open=True, port_error=None, last_frame_age_s=75.0)
    back = dict(quiet, last_frame_age_s=0.5)
    clock.t += 70
    rules.apply(book, {"database_ok": True, "listening_s": 80.0, "boards": [back]}, None, None, clock.t)
    assert not book.open_alerts()
    clock.t += 80
    rules.apply(book, {"database_ok": True, "listening_s": 160.0, "boards": [quiet]}, None, None, clock.t)
    (alert,) = book.open_alerts()
    assert "no frame on /dev/ttyACM0 for 75 s: the board does not answer" == alert.detail
    store.close()


def test_a_board_is_waiting_not_silent_while_the_database_is_down_and_just_after(clean_db):
    clock = Clock()
    store = ReadingStore(clean_db.gateway_cfg)
    book = AlertBook(AlertStore(store), now=clock)
    rules = AlertRules(AlertSettings(silent_after_s=60))
    held = {"port": "/dev/ttyACM0", "board": "bed-1", "port_open": True, "port_error": None, "refused": None,
            "last_frame_age_s": 300.0}
    for down, dt in ((True, 0), (True, 600), (False, 10), (False, 30)):
        clock.t += dt
        rules.apply(book, {"database_ok": not down, "listening_s": 1000.0, "boards": [held]}, None, None, clock.t)
        assert not book.open_alerts(), (down, dt)
    clock.t += 31                                        # a minute after the database came back, still nothing
    rules.apply(book, {"database_ok": True, "listening_s": 1000.0, "boards": [held]}, None, None, clock.t)
    assert [a.kind for a in book.open_alerts()] == ["silent"]
    store.close()


def test_dry_alerts_per_probe_from_the_moisture_rows(clean_db):
    clock = Clock()
    store = ReadingStore(clean_db.gateway_cfg)
    book = AlertBook(AlertStore(store), now=clock)
    rules = AlertRules(AlertSettings(dry_below=20, dry_clear_above=25))
    state = {"database_ok": True, "listening_s": 0.0, "boards": []}
    for pcts, want in (([30, 40], []), ([18, 40], [0]), ([22, 19], [0, 1]), ([24, 26], [0]), ([26, 26], [])):
        rules.apply(book, state, {}, [("bed-1", 0, pcts[0]), ("bed-1", 1, pcts[1])], clock.t)
        assert sorted(a.probe for a in book.open_alerts()) == want, pcts
    kinds = admin_query(clean_db, "SELECT probe, cleared_at IS NOT NULL FROM alerts WHERE kind = 'dry' ORDER BY id")
    assert kinds == ((0, 1), (1, 1))
    store.close()


def test_latest_moisture_is_each_calibrated_probes_newest_reading_in_percent(clean_db):
    admin_query(clean_db, "INSERT INTO boards (board, boot) VALUES ('bed-1', 2), ('bed-2', 1), ('bed-3', 1)")
    rows = [("bed-1", 1, 9, "2026-06-01 12:00:00", 12000),      # an older boot with a later seq: not the newest
            ("bed-1", 2, 1, "2026-06-02 08:00:00", 24000), ("bed-1", 2, 2, "2026-06-02 08:00:01", 23000),
            ("bed-2", 1, 1, "2026-06-02 08:00:00", 20000),      # bed-2: no calibration, no percent
            ("bed-3", 1, 1, "2026-06-02 08:00:00", 20000)]
    admin_query(clean_db, "INSERT INTO plants (board, boot, seq, date_saved, moisture_raw, source, received_at) "
                          "VALUES " + ", ".join(["(%s, %s, %s, %s, %s, 'live', UTC_TIMESTAMP(3))"] * len(rows)),
                [v for r in rows for v in r])
    admin_query(clean_db, "INSERT INTO calibrations (board, probe, raw_dry, raw_wet, effective_from, created_at) "
                          "VALUES ('bed-1', 0, 26000, 16000, '1000-01-01', UTC_TIMESTAMP(3)), "
                          "('bed-3', 0, 26000, NULL, '1000-01-01', UTC_TIMESTAMP(3))")   # bed-3: half of one
    store = ReadingStore(clean_db.gateway_cfg)
    try:
        assert store.run_statement(latest_moisture) == [("bed-1", 0, 30.0)]
    finally:
        store.close()


# --- delivery ---------------------------------------------------------------------------------------------------
class Receiver:
    """A real HTTP server on a free port that answers the first `fail` POSTs with 503, then 200, and keeps what it
    accepted."""

    def __init__(self, fail=0, token=None):
        self.fail = fail
        self.token = token
        self.accepted = []
        self.refused = 0
        self.got = threading.Condition()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                auth = self.headers.get("Authorization")
                with outer.got:
                    if outer.fail > 0 or (outer.token and auth != "Bearer " + outer.token):
                        outer.fail -= 1
                        outer.refused += 1
                        code = 503
                    else:
                        outer.accepted.append(json.loads(body))
                        code = 200
                    outer.got.notify_all()
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/hook" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, n, timeout=60):
        with self.got:
            return self.got.wait_for(lambda: len(self.accepted) >= n, timeout)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class FakeAlert:
    def __init__(self, kind="dry", board="bed-1", probe=0, detail="18%"):
        self.kind, self.board, self.probe, self.detail = kind, board, probe, detail

    def as_dict(self):
        return {"id": 1, "kind": self.kind, "board": self.board, "probe": self.probe, "detail": self.detail,
                "opened_at": "2026-12-02T10:11:12Z"}


def test_a_webhook_that_fails_is_retried_and_gets_each_message_once_in_order():
    rx = Receiver(fail=2, token="s3cret")
    n = Notifier([Webhook(rx.url, token="s3cret")], gateway_name="pi-test")
    n.start()
    try:
        n.deliver("open", FakeAlert())
        n.deliver("clear", FakeAlert(detail="27%"))
        assert rx.wait(2), (rx.accepted, rx.refused)
        assert n.idle.wait(10)
    finally:
        n.stop()
        rx.close()
    assert rx.refused == 2 and n.failures["webhook"] == 2 and n.delivered["webhook"] == 2
    assert [(m["event"], m["alert"]["detail"]) for m in rx.accepted] == [("open", "18%"), ("clear", "27%")]
    assert rx.accepted[0]["gateway"] == "pi-test" and rx.accepted[0]["alert"]["kind"] == "dry"


def test_a_receiver_that_is_down_holds_nothing_up():
    rx = Receiver()
    url = rx.url
    rx.close()                                                   # nothing listens there now
    n = Notifier([Webhook(url, timeout=2)])
    n.start()
    try:
        for i in range(5):
            n.deliver("open", FakeAlert(board="bed-%d" % i))     # returns at once: the thread does the I/O
        wait_for(lambda: n.failures["webhook"] >= 1, 30, "a failed delivery")
        assert n.delivered["webhook"] == 0 and not n.idle.is_set()
    finally:
        n.stop()


def test_e_mail_through_a_real_smtp_server():
    from aiosmtpd.controller import Controller

    class Inbox:
        def __init__(self):
            self.messages = []
            self.got = threading.Event()

        async def handle_DATA(self, server, session, envelope):
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content.decode()))
            self.got.set()
            return "250 OK"

    inbox = Inbox()
    with socket.socket() as probe:                   # a free port (the controller checks it by connecting to it)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    smtpd = Controller(inbox, hostname="127.0.0.1", port=port)
    smtpd.start()
    try:
        n = Notifier([Email(SmtpSettings("127.0.0.1", ["grower@example.org"], "soil@example.org", port=port))])
        n.start()
        try:
            n.deliver("open", FakeAlert(detail="18% (alert below 20%, clears above 25%)"))
            assert inbox.got.wait(30)
            assert n.idle.wait(10)
        finally:
            n.stop()
    finally:
        smtpd.stop()
    ((sender, to, text),) = inbox.messages
    assert sender == "soil@example.org" and to == ["grower@example.org"]
    msg = email.message_from_string(text, policy=email.policy.default)
    assert msg["Subject"] == "soil: alert opened: bed-1 dry probe 0: 18% (alert below 20%, clears above 25%)"
    assert json.loads(msg.get_content())["alert"]["kind"] == "dry"


# --- the gateway process ----------------------------------------------------------------------------------------
@pytest.mark.integration
def test_gateway_alerts_a_board_unplugged_and_clears_when_it_is_back(stack):
    rx = Receiver()
    try:
        board = stack.start_board("al-1", interval_ms=500)
        stack.start_gateway(sections={"alerts": {"silent_after_s": 3, "every_s": 0.5, "webhook_url": rx.url}})
        wait_for(lambda: stack.readings("al-1"), 60, "readings stored")
        board.stop()                                   # unplugged: its port (the tty link) is gone
        opened = wait_for(lambda: stack.query("SELECT detail FROM alerts WHERE board = 'al-1' AND kind = 'silent' "
                                              "AND cleared_at IS NULL"), 60, "the silent alert")
        assert "gone" in opened[0][0] or "does not answer" in opened[0][0], opened
        status = wait_for(lambda: (stack.gateway.status() or {}).get("open_alerts"), 30, "the alert in the status")
        assert [(a["kind"], a["board"]) for a in status] == [("silent", "al-1")]
        board.start()
        wait_for(lambda: stack.query("SELECT 1 FROM alerts WHERE board = 'al-1' AND kind = 'silent' "
                                     "AND cleared_at IS NOT NULL"), 60, "the alert cleared")
        assert rx.wait(2), rx.accepted
        assert [(m["event"], m["alert"]["kind"]) for m in rx.accepted[:2]] == [("open", "silent"), ("clear", "silent")]
        assert stack.query("SELECT COUNT(*) FROM alerts WHERE board = 'al-1' AND kind = 'silent'")[0][0] == 1
        log = stack.gateway.log_text()
        assert "alert opened: al-1 silent:" in log and "alert cleared: al-1 silent:" in log, log[-3000:]
    finally:
        rx.close()


@pytest.mark.integration
def test_gateway_alerts_dry_soil_and_a_recalibration_clears_it(stack):
    stack.start_board("al-3", interval_ms=500)          # the virtual probe reads about 26,000
    stack.start_gateway(sections={"alerts": {"every_s": 0.5}})
    wait_for(lambda: stack.readings("al-3"), 60, "readings stored")
    stack.query("INSERT INTO calibrations (board, probe, raw_dry, raw_wet, effective_from, created_at) VALUES "
                "('al-3', 0, 26500, 16500, '1000-01-01', UTC_TIMESTAMP(3))")        # about 5 %: dry
    opened = wait_for(lambda: stack.query("SELECT detail FROM alerts WHERE board = 'al-3' AND kind = 'dry' "
                                          "AND probe = 0 AND cleared_at IS NULL"), 60, "the dry alert")
    assert "below 20" in opened[0][0], opened
    # The probe was calibrated wrongly: a new calibration from now puts it at about 50 %, and the alert clears.
    stack.query("INSERT INTO calibrations (board, probe, raw_dry, raw_wet, effective_from, created_at) VALUES "
                "('al-3', 0, 36000, 16000, UTC_TIMESTAMP() - INTERVAL 1 SECOND, UTC_TIMESTAMP(3))")
    wait_for(lambda: stack.query("SELECT 1 FROM alerts WHERE board = 'al-3' AND kind = 'dry' AND cleared_at IS NOT "
                                 "NULL"), 60, "the dry alert cleared")
    assert stack.query("SELECT COUNT(*) FROM alerts WHERE board = 'al-3' AND kind = 'dry'")[0][0] == 1
    log = stack.gateway.log_text()
    assert "alert opened: al-3 dry" in log and "alert cleared: al-3 dry" in log, log[-3000:]


@pytest.mark.integration
def test_a_board_waiting_for_the_database_is_not_silent(stack):
    board = stack.start_board("al-2", interval_ms=500)
    stack.start_gateway(sections={"alerts": {"silent_after_s": 3, "every_s": 0.5}})
    wait_for(lambda: stack.readings("al-2"), 60, "readings stored")
    stack.db.stop()                                    # the board caches on its card and is held off (W frames)
    wait_for(lambda: board.status()["pending"] >= 12, 60, "six seconds of readings cached")
    stack.db.start()
    wait_for(lambda: (stack.gateway.status() or {}).get("database_ok"), 60, "the database back")
    wait_for(lambda: board.status().get("pending") == 0, 120, "the replay")
    assert stack.query("SELECT COUNT(*) FROM alerts WHERE kind = 'silent'")[0][0] == 0, \
        stack.query("SELECT * FROM alerts")
