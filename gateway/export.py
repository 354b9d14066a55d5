"""Readings out of the database as CSV or JSON lines, streamed (issue 14, part 5: `soil-gateway export`).

Why it is built this way:

* **Through the `moisture` view** (gateway/moisture.py), so an export carries the same % and flag the dashboard and
  the alert rules see, computed from the calibration in effect at each reading's sample time; with the gateway's own
  least-privilege account (SELECT on the view), never an admin one.
* **Streamed.** A year of one-second readings is 31.5 million rows. The query runs on an unbuffered server-side
  cursor (PyMySQL's SSCursor) and rows are written FETCH_ROWS at a time as they arrive, so the process's memory does
  not grow with the number of rows (tests/test_export.py measures it). The server still sorts the rows by board,
  probe and sample time before the first one comes; on a long range that takes a while, hence the longer read
  timeout here than the writer's 30 s.
* **Times are UTC**, as stored (`date_saved` is a UTC DATETIME): ISO 8601 with a Z, formatted by the server so the
  client does no per-row date arithmetic. A range is half-open, [--from, --to), so consecutive days chain without a
  reading counted twice.
* **A failed export leaves no file that looks complete:** `-o FILE` is written to FILE.part beside it and renamed
  once the last row is out (a regular file only: `-o /dev/null` or a FIFO is written as it is).
"""

import csv
import dataclasses
import datetime
import json
import os

import pymysql
import pymysql.cursors

from gateway.dbconn import DatabaseError, classify, connect
from gateway.primary import find_primary

FORMATS = ("csv", "jsonl")
COLUMNS = ("board", "probe", "sample_time", "raw", "percent", "flag", "source", "time_quality")
FETCH_ROWS = 2000                 # rows taken from the socket at a time: bounded memory, few Python calls
READ_TIMEOUT_S = 3600.0           # the server sorts a long range before the first row arrives
NET_WRITE_TIMEOUT_S = 3600        # a reader that pauses (a pager, a slow disk) must not get the query aborted

# The view's columns in COLUMNS' order; the time is formatted by the server (UTC: connect() sets the session's
# time zone, and DATETIME is not converted anyway).
_SELECT = ("SELECT `board`, `probe`, DATE_FORMAT(`sample_time`, '%%Y-%%m-%%dT%%H:%%i:%%sZ'), `raw`, `pct`, `flag`, "
           "`source`, `time_quality` FROM `moisture`")
_ORDER = " ORDER BY `board`, `probe`, `sample_time`, `id`"
_BOARDS = "SELECT DISTINCT `board` FROM `plants` WHERE `board` IS NOT NULL ORDER BY `board` LIMIT 20"

_TIME_FORMATS = ("%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S")


class ExportError(Exception):
    """A user's mistake or an unusable target (bad time, unwritable file): one line for the person."""


@dataclasses.dataclass
class Selection:
    """Which readings: a board, a probe, a half-open range of UTC sample times; None means any."""

    board: str = None
    probe: int = None
    start: datetime.datetime = None     # inclusive, naive UTC
    end: datetime.datetime = None       # exclusive, naive UTC

    def where(self):
        """(" WHERE ...", args) for the moisture view: values as parameters, never in the text."""
        clauses, args = [], []
        for column, op, value in (("board", "=", self.board), ("probe", "=", self.probe),
                                  ("sample_time", ">=", self.start), ("sample_time", "<", self.end)):
            if value is not None:
                clauses.append("`%s` %s %%s" % (column, op))
                args.append(value.strftime("%Y-%m-%d %H:%M:%S") if isinstance(value, datetime.datetime)
                            else value)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(args)

    def describe(self):
        parts = ["board %s" % self.board if self.board is not None else "any board"]
        if self.probe is not None:
            parts.append("probe %d" % self.probe)
        if self.start is not None:
            parts.append("from %s" % iso(self.start))
        if self.end is not None:
            parts.append("before %s" % iso(self.end))
        return ", ".join(parts)


def parse_time(text, option="--from"):
    """A UTC time as a user types it: 2026-12-01, 2026-12-01T06:00, 2026-12-01T06:00:00Z (a trailing Z or +00:00
    is allowed, another offset is refused rather than guessed). Returns a naive datetime in UTC."""
    value = text.strip()
    for suffix in ("Z", "z", "+00:00"):
        if value.endswith(suffix):
            value = value[:-len(suffix)]
            break
    for fmt in _TIME_FORMATS:
        try:
            return datetime.datetime.strptime(value, fmt)
        except ValueError:
            pass
    raise ExportError("%s %r: not a time; give UTC as 2026-12-01, 2026-12-01T06:00 or 2026-12-01T06:00:00Z"
                      % (option, text))


def selection(board=None, probe=None, start=None, end=None):
    """A Selection from the command line's text (--board, --probe, --from, --to), checked."""
    sel = Selection(board, probe, parse_time(start, "--from") if start else None,
                    parse_time(end, "--to") if end else None)
    if probe is not None and probe < 0:
        raise ExportError("--probe %d: a probe is a number from 0" % probe)
    check_range(sel)
    return sel


def iso(when):
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def check_range(selection):
    if selection.start is not None and selection.end is not None and selection.end <= selection.start:
        raise ExportError("--to %s is not after --from %s: the range [--from, --to) is empty"
                          % (iso(selection.end), iso(selection.start)))


# -- writers: one row tuple in COLUMNS' order at a time -------------------------------------------------------------
class CsvWriter:
    """A header, then one line per reading; NULL is an empty field."""

    def __init__(self, out):
        self._csv = csv.writer(out, lineterminator="\n")
        self._csv.writerow(COLUMNS)

    def write(self, rows):
        self._csv.writerows(rows)


class JsonLinesWriter:
    """One JSON object per line, keys as COLUMNS, NULL as null, percent a number."""

    def __init__(self, out):
        self._out = out
        self._dumps = json.JSONEncoder(ensure_ascii=True, separators=(",", ":")).encode

    def write(self, rows):
        dumps = self._dumps
        self._out.write("".join(
            dumps({"board": b, "probe": p, "sample_time": t, "raw": r, "percent": None if pct is None else float(pct),
                   "flag": f, "source": s, "time_quality": q}) + "\n"
            for b, p, t, r, pct, f, s, q in rows))


WRITERS = {"csv": CsvWriter, "jsonl": JsonLinesWriter}


# -- the database side ------------------------------------------------------------------------------------------------
def _export_config(db_cfg):
    """The gateway's DbConfig with a read timeout long enough for the server's sort (the primary, with servers)."""
    cfg = dataclasses.replace(db_cfg, read_timeout=max(db_cfg.read_timeout or 0, READ_TIMEOUT_S))
    return find_primary(cfg) if cfg.servers else cfg


def stream(db_cfg, selection, writer):
    """Write every reading of `selection` to `writer` in order of board, probe, sample time; returns how many.

    The connection is closed without draining the result when anything fails (a reader gone, a full disk):
    closing an unbuffered cursor would first read every remaining row from the server."""
    cfg = _export_config(db_cfg)
    conn = connect(cfg)
    count = 0
    finished = False
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION net_write_timeout = %s", (NET_WRITE_TIMEOUT_S,))
        cur = conn.cursor(pymysql.cursors.SSCursor)
        where, args = selection.where()
        cur.execute(_SELECT + where + _ORDER, args)
        while True:
            rows = cur.fetchmany(FETCH_ROWS)
            if not rows:
                break
            writer.write(rows)
            count += len(rows)
        cur.close()
        finished = True
        return count
    except pymysql.MySQLError as exc:
        raise classify(exc, cfg) from exc
    finally:
        if finished:
            conn.rollback()
        else:
            _abandon_result(conn)
        try:
            conn.close()
        except Exception:  # already broken: closing is best effort
            pass


def _abandon_result(conn):
    """Let an unread unbuffered result go with its connection. PyMySQL (1.1) would otherwise read every remaining
    row when the cursor or result is garbage-collected (the protocol has no way to stop a result), after we closed
    the socket: a traceback on stderr, or a wait for the rest of a year of readings. Closing the socket instead
    makes the server abort the query (a write error on its side)."""
    result = getattr(conn, "_result", None)
    if result is not None and getattr(result, "unbuffered_active", False):
        result.unbuffered_active = False


def known_boards(db_cfg):
    """Up to 20 boards that have readings (from the identity index: no scan of the readings), for a note."""
    cfg = _export_config(db_cfg)
    conn = connect(cfg)
    try:
        with conn.cursor() as cur:
            cur.execute(_BOARDS)
            return [row[0] for row in cur.fetchall()]
    except pymysql.MySQLError as exc:
        raise classify(exc, cfg) from exc
    finally:
        conn.close()


# -- the target -------------------------------------------------------------------------------------------------------
class Target:
    """Where the rows go: a stream given (stdout), or FILE through FILE.part, renamed by commit()."""

    def __init__(self, path=None, stream=None):
        self.path = path
        self._part = None
        self._direct = False
        if path is None:
            self.out = stream
            return
        try:
            if os.path.exists(path) and not os.path.isfile(path):
                # /dev/null, a FIFO, a terminal: written as it is (renaming a .part over it would replace it)
                self.out = open(path, "w", encoding="utf-8", newline="")
                self._direct = True
            else:
                self._part = path + ".part"
                self.out = open(self._part, "w", encoding="utf-8", newline="")
        except OSError as e:
            raise ExportError("cannot write %s: %s" % (path, e.strerror or e))

    def commit(self):
        if self._part is None:
            if self._direct:
                self.out.close()
            else:
                self.out.flush()
            return
        try:
            self.out.close()
            os.replace(self._part, self.path)
        except OSError as e:
            self.abandon()
            raise ExportError("cannot write %s: %s" % (self.path, e.strerror or e))
        self._part = None

    def abandon(self):
        if self._direct:
            try:
                self.out.close()
            except OSError:
                pass
        if self._part is None:
            return
        try:
            self.out.close()
        except OSError:
            pass
        try:
            os.unlink(self._part)
        except OSError:
            pass
        self._part = None


def export(db_cfg, selection, fmt="csv", path=None, stdout=None):
    """Export `selection` as `fmt` to `path` (or `stdout`); returns the number of rows. Raises ExportError for a
    bad request or target, DatabaseError for the database."""
    if fmt not in WRITERS:
        raise ExportError("unknown format %r (csv or jsonl)" % fmt)
    check_range(selection)
    target = Target(path, stdout)
    try:
        writer = WRITERS[fmt](target.out)
        count = stream(db_cfg, selection, writer)
        target.commit()
    except OSError as e:
        target.abandon()
        if isinstance(e, BrokenPipeError):
            raise
        raise ExportError("cannot write %s: %s" % (path or "the output", e.strerror or e))
    except (DatabaseError, ExportError):
        target.abandon()
        raise
    return count
