"""The alert rules and the thread that applies them every few seconds (gateway/alerts.py has the kinds).

What each rule reads: the gateway's own state for what only it knows (is the port open, when did the last frame
arrive, is the database reachable, which hellos it refused), the `boards` table for what the boards report in their
status frames (card, clock, readings dropped), and the newest moisture of each probe. Reading the database uses a
connection of its own, in this thread: a slow or dead database delays the rules, never the writer.
"""

import logging
import threading
import time

from gateway.alerts import Hysteresis
from gateway.dbconn import DatabaseError

log = logging.getLogger("gateway.alerts")

BAD_CARD = ("full", "absent", "error")
BAD_CLOCK = ("halted", "unset", "invalid")


class AlertSettings:
    """[alerts] in the gateway's configuration (gateway/config.py)."""

    def __init__(self, dry_below=20.0, dry_clear_above=25.0, silent_after_s=60.0, grace_s=60.0, drop_window_s=3600.0,
                 every_s=5.0, webhook_url=None, webhook_token=None, smtp=None):
        if float(dry_clear_above) < float(dry_below):
            raise ValueError("dry_clear_above (%s) must be at least dry_below (%s)" % (dry_clear_above, dry_below))
        for name, value in (("silent_after_s", silent_after_s), ("every_s", every_s)):
            if value <= 0:
                raise ValueError("%s must be above 0, got %s" % (name, value))
        self.dry_below = float(dry_below)
        self.dry_clear_above = float(dry_clear_above)
        self.silent_after_s = float(silent_after_s)
        self.grace_s = float(grace_s)
        self.drop_window_s = float(drop_window_s)
        self.every_s = float(every_s)
        self.webhook_url = webhook_url
        self.webhook_token = webhook_token
        self.smtp = smtp          # gateway.notify.SmtpSettings or None


class Persisting:
    """A condition that must hold for `hold_s` before it counts (a card being swapped, a clock the gateway is about
    to set): `update(key, active, now)` -> whether it counts now. It stops counting as soon as it stops holding."""

    def __init__(self, hold_s):
        self.hold_s = hold_s
        self._since = {}

    def update(self, key, active, now):
        if not active:
            self._since.pop(key, None)
            return False
        since = self._since.setdefault(key, now)
        return now - since >= self.hold_s


class AlertRules:
    """`apply(book, gateway_state, board_rows, moisture, now)`: sets every alert of the book from one look at the
    world. `gateway_state`: Gateway.alert_state(); `board_rows`: {board: {"card", "clock", "dropped"}} from the
    boards table (None when the database cannot be read: those rules wait); `moisture`: [(board, probe, pct)] of the
    newest calibrated reading per probe (None alike)."""

    def __init__(self, settings):
        self.s = settings
        self.dry = Hysteresis(settings.dry_below, settings.dry_clear_above)
        self._card = Persisting(settings.grace_s)
        self._clock = Persisting(settings.grace_s)
        self._dropped = {}           # board -> (dropped, when it last rose)
        self._db_back_at = None      # when the database was last seen reachable after being down (or at start)

    def apply(self, book, state, board_rows, moisture, now):
        if not state["database_ok"]:
            self._db_back_at = None
        elif self._db_back_at is None:
            self._db_back_at = now
        # While the database is down, and for a while after, a board is waiting: the gateway holds it off (W frames)
        # and its frames come between the holds, or resume only when the replay starts. It is not silent.
        waiting = self._db_back_at is None or now - self._db_back_at < self.s.silent_after_s
        for b in state["boards"]:
            self._silent(book, b, state["listening_s"], waiting)
            book.set("identity", b["board"] or b["port"], None, b["refused"] is not None, b["refused"] or "")
        if board_rows is not None:
            for board, row in sorted(board_rows.items()):
                self._card_rule(book, board, row, now)
                self._clock_rule(book, board, row, now)
        if moisture is not None:
            for board, probe, pct in moisture:
                change = self.dry.update((board, probe), pct)
                if change is not None:
                    book.set("dry", board, probe, change == "open",
                             "%.0f%% (alert below %g%%, clears above %g%%)"
                             % (pct, self.s.dry_below, self.s.dry_clear_above))

    def _silent(self, book, b, listening_s, waiting):
        subject = b["board"] or b["port"]
        age = b["last_frame_age_s"]
        silent = age is None or age >= self.s.silent_after_s
        if waiting and b["port_open"]:
            silent = False
        if not b["port_open"]:
            why = "port %s gone (%s)" % (b["port"], b["port_error"] or "not open")
        elif age is None:
            why = "nothing heard on %s since the gateway started" % b["port"]
        else:
            why = "no frame on %s for %.0f s: the board does not answer" % (b["port"], age)
        if silent and listening_s < self.s.silent_after_s:
            silent = False           # the gateway itself has only just started listening
        book.set("silent", subject, None, silent, why if silent else "frames again on %s" % b["port"])

    def _card_rule(self, book, board, row, now):
        dropped = row.get("dropped") or 0
        last, rose_at = self._dropped.get(board, (dropped, None))
        if dropped > last:
            rose_at = now
        self._dropped[board] = (dropped, rose_at)
        bad = row.get("card") in BAD_CARD
        dropping = rose_at is not None and now - rose_at < self.s.drop_window_s
        active = self._card.update(board, bad, now) or dropping
        if bad:
            detail = "card %s" % row.get("card")
        elif dropping:
            detail = "the board dropped readings (%d in all)" % dropped
        else:
            detail = "card ok"
        book.set("card", board, None, active, detail)

    def _clock_rule(self, book, board, row, now):
        state = row.get("clock")
        active = self._clock.update(board, state in BAD_CLOCK, now)
        book.set("clock", board, None, active, "clock %s" % state)


class AlertWatch:
    """The thread: every `settings.every_s`, `read_state()` (the gateway's), the boards table and the newest
    moisture through `store` (a ReadingStore of its own), then the rules. `moisture_query(cur)` returns
    [(board, probe, pct)] or None when the schema has no moisture in % (no calibration table yet)."""

    def __init__(self, settings, book, store, read_state, moisture_query=None, now=time.time):
        self.rules = AlertRules(settings)
        self.book = book
        self.every_s = settings.every_s
        self._store = store
        self._read_state = read_state
        self._moisture_query = moisture_query
        self._now = now
        self._stop = threading.Event()
        self._thread = None
        self.rounds = 0
        self.round_done = threading.Event()      # set after every round (tests wait on it)

    def start(self):
        self._thread = threading.Thread(target=self._run, name="alerts", daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._store.close()

    def _run(self):
        while not self._stop.is_set():
            try:
                self.round()
            except Exception:            # a rule's bug must not end the gateway's alerts for good
                log.exception("alerts: a round failed")
            self._stop.wait(self.every_s)

    def round(self):
        rows = moisture = None
        try:
            rows = self._store.run_statement(_board_rows)
            if self._moisture_query is not None:
                moisture = self._store.run_statement(self._moisture_query)
        except DatabaseError as e:
            log.debug("alerts: database rules wait: %s", e)
        self.rules.apply(self.book, self._read_state(), rows, moisture, self._now())
        self.rounds += 1
        self.round_done.set()


def _board_rows(cur):
    cur.execute("SELECT board, card, clock, dropped FROM boards")
    return {board: {"card": card, "clock": clock, "dropped": dropped} for board, card, clock, dropped
            in cur.fetchall()}
