"""Issue 15, part 3: the gateway as a systemd `Type=notify` service, against a real notify socket.

The tests play systemd's part: a Unix datagram socket given to the real gateway process as $NOTIFY_SOCKET (the
abstract namespace, "@...", as systemd uses, and a path), $WATCHDOG_USEC, $JOURNAL_STREAM. The gateway, the virtual
boards and the database server are the real processes of tools/demo/stack.py; the writer is wedged for real, by
stopping the database server with SIGSTOP so the writer's statement hangs inside its 30 s read timeout.
"""

import os
import re
import secrets
import signal
import socket
import statistics
import tempfile
import time

import pytest

from gateway.logformat import JournalFormatter, priority
from gateway.sdnotify import SdNotify, journal_stream_is_stderr, socket_address, watchdog_period
from tools.demo.stack import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


class NotifySocket:
    """systemd's end of sd_notify: a bound AF_UNIX datagram socket and every message received, with its time."""

    def __init__(self, abstract=True):
        self.dir = None
        if abstract:
            self.name = "@soil-test-%s" % secrets.token_hex(6)
        else:
            self.dir = tempfile.mkdtemp(prefix="sdn-")
            self.name = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(socket_address(self.name))
        self.messages = []        # (monotonic time, {key: value})

    def env(self, **more):
        return dict({"NOTIFY_SOCKET": self.name}, **{k: str(v) for k, v in more.items()})

    def receive(self, timeout):
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(4096)
        except socket.timeout:
            return None
        fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
        self.messages.append((time.monotonic(), fields))
        return fields

    def wait(self, predicate, timeout, what):
        """The first message from now on that satisfies `predicate(fields)`; TimeoutError naming `what`."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("timed out after %.0f s waiting for %s; last messages: %r"
                                   % (timeout, what, [m for _, m in self.messages[-5:]]))
            fields = self.receive(left)
            if fields is not None and predicate(fields):
                return fields

    def close(self):
        self.sock.close()
        if self.dir:
            os.unlink(self.name)
            os.rmdir(self.dir)


@pytest.fixture
def notify_socket():
    s = NotifySocket()
    yield s
    s.close()


class MissingBoard:
    """A [[board]] whose port does not exist (unplugged): the gateway tries it, warns and retries."""
    tty = "/dev/soil-test-no-such-tty"


def status(fields):
    return fields.get("STATUS", "")


# --- the protocol itself, against real sockets ----------------------------------------------------------------

def test_notify_reaches_a_path_socket_and_an_abstract_one():
    for abstract in (False, True):
        rx = NotifySocket(abstract=abstract)
        try:
            tx = SdNotify({"NOTIFY_SOCKET": rx.name})
            assert tx.send(READY=1, STATUS="1/1 boards online")
            assert rx.receive(5) == {"READY": "1", "STATUS": "1/1 boards online"}
            tx.close()
        finally:
            rx.close()


def test_notify_without_a_socket_is_a_no_op_and_a_vanished_socket_is_one_warning(caplog):
    assert SdNotify({}).send(READY=1) is False
    tx = SdNotify({"NOTIFY_SOCKET": "@soil-test-nobody-%s" % secrets.token_hex(4)})
    assert tx.send(WATCHDOG=1) is False and tx.send(WATCHDOG=1) is False
    assert len([r for r in caplog.records if "notify socket" in r.getMessage()]) == 1


def test_watchdog_period_honours_watchdog_pid():
    assert watchdog_period({"WATCHDOG_USEC": "3000000"}) == 3.0
    assert watchdog_period({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid())}) == 3.0
    assert watchdog_period({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid() + 1)}) is None
    assert watchdog_period({"WATCHDOG_USEC": "0"}) is None and watchdog_period({"WATCHDOG_USEC": "x"}) is None


def test_journal_stream_counts_only_while_stderr_is_that_stream(tmp_path):
    with open(tmp_path / "journal", "w") as journal, open(tmp_path / "other", "w") as other:
        st = os.fstat(journal.fileno())
        env = {"JOURNAL_STREAM": "%d:%d" % (st.st_dev, st.st_ino)}
        assert journal_stream_is_stderr(env, journal.fileno())
        assert not journal_stream_is_stderr(env, other.fileno())     # inherited, but stderr was redirected
        assert not journal_stream_is_stderr({}, journal.fileno())


def test_journal_format_is_one_line_with_its_priority():
    import logging
    assert [priority(lv) for lv in (logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO,
                                    logging.DEBUG)] == [3, 3, 4, 6, 7]
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        import sys
        record = logging.LogRecord("gateway", logging.ERROR, __file__, 1, "writer: %s", ("oops",), sys.exc_info())
    line = JournalFormatter().format(record)
    assert "\n" not in line and line.startswith("<3>gateway ERROR writer: oops | Traceback")


# --- the real gateway process --------------------------------------------------------------------------------

def test_ready_status_watchdog_and_stopping(notify_socket, stack):
    """READY=1 once the board's port is open and the missing one was tried; STATUS lines with the readings stored;
    WATCHDOG=1 at half of WATCHDOG_USEC; STOPPING=1 on SIGTERM. Outside journald the log keeps its timestamps."""
    period = 2.0
    stack.start_board("sd-1", interval_ms=500)
    gw = stack.start_gateway(boards=stack.boards + [MissingBoard()], env=notify_socket.env(
        WATCHDOG_USEC=int(period * 1e6)))
    ready = notify_socket.wait(lambda f: f.get("READY") == "1", 60, "READY=1")
    # The board's port was open before READY (the transport logs an open before it counts it); the missing one was
    # tried (it counts a failure just before it logs it: hence the wait for its line).
    log = wait_for(lambda: "ready: " in gw.log_text() and "%s: cannot open" % MissingBoard.tty in gw.log_text() and
                   gw.log_text(), 5, "the ready line and the missing port's warning")
    assert -1 < log.index(": port open") < log.index("ready: "), log
    assert re.match(r"\d/2 boards online, database ok, \d+ readings stored$", status(ready)), ready

    stored = notify_socket.wait(lambda f: re.match(r"1/2 boards online, database ok, [1-9]\d* readings stored$",
                                                   status(f)), 60, "a STATUS line with readings stored")
    start = len(notify_socket.messages)
    notify_socket.wait(lambda f: sum(1 for _, m in notify_socket.messages[start:] if m.get("WATCHDOG") == "1") >= 6,
                       60, "six watchdog pings")
    pings = [t for t, m in notify_socket.messages if m.get("WATCHDOG") == "1"]
    gaps = [b - a for a, b in zip(pings, pings[1:])]
    # Half the period (sd_watchdog_enabled(3)): systemd needs a ping within each period, and gets two.
    assert period / 4 <= statistics.median(gaps) <= period * 0.75, gaps
    assert max(gaps) < period, gaps

    gw.stop()                                   # SIGTERM, as systemctl stop
    notify_socket.wait(lambda f: f.get("STOPPING") == "1", 30, "STOPPING=1")
    assert gw.proc.wait(10) == 0
    print("notify datagrams:", [m for _, m in notify_socket.messages[:3]], stored)
    lines = [ln for ln in gw.log_text().splitlines() if ln.strip()]
    assert lines and all(TIMESTAMP.match(ln) for ln in lines if not ln.startswith(" ")), lines[:5]


def test_a_database_that_is_down_keeps_the_pings_a_stuck_writer_stops_them(notify_socket, stack):
    """Down (refused connections, the writer in its retry backoff): pings go on. Stuck (the server stopped with
    SIGSTOP, the writer's INSERT waiting inside its 30 s read timeout): STATUS says so and the pings stop, so
    systemd would restart the gateway; when the server runs again, the statement completes and the pings resume."""
    period = 2.0
    stack.start_board("sd-2", interval_ms=500)
    stack.start_gateway(env=notify_socket.env(WATCHDOG_USEC=int(period * 1e6)))
    notify_socket.wait(lambda f: re.search(r"database ok, [1-9]\d* readings", status(f)), 60, "readings stored")

    stack.db.stop()
    notify_socket.wait(lambda f: "database down" in status(f), 60, "STATUS: database down")
    start = len(notify_socket.messages)
    notify_socket.wait(lambda f: sum(1 for _, m in notify_socket.messages[start:] if m.get("WATCHDOG") == "1") >= 3,
                       30, "pings while the database is down")
    stack.db.start()
    notify_socket.wait(lambda f: "database ok" in status(f), 60, "STATUS: database ok again")

    os.kill(stack.db.pid, signal.SIGSTOP)
    try:
        stuck = notify_socket.wait(lambda f: "stuck" in status(f), 25, "STATUS: the writer stuck")
        start = len(notify_socket.messages)
        # Three more status ticks (one a second: the stuck time counts up) and not one ping among them.
        notify_socket.wait(lambda f: len(notify_socket.messages) - start >= 3, 15, "three status ticks")
        after = [m for _, m in notify_socket.messages[start - 1:]]
        assert not any(m.get("WATCHDOG") for m in after), after
        assert all("stuck" in status(m) for m in after), after
        assert "no more watchdog pings" in stack.gateway.log_text()
    finally:
        os.kill(stack.db.pid, signal.SIGCONT)
    notify_socket.wait(lambda f: f.get("WATCHDOG") == "1", 30, "pings again once the server runs")
    print("stuck:", stuck)


def test_journald_lines_carry_priorities_and_no_times_and_the_summary(notify_socket, stack):
    """With $JOURNAL_STREAM naming the gateway's stderr: `<6>` info, `<4>` warning lines, no timestamps, one line
    per event; and the summary line every summary_every_s."""
    board = stack.start_board("sd-3", interval_ms=500)
    os.makedirs(os.path.join(stack.run_dir, "gateway"), exist_ok=True)
    log_path = os.path.join(stack.run_dir, "gateway", "gateway.log")
    open(log_path, "ab").close()
    st = os.stat(log_path)
    gw = stack.start_gateway(boards=[board, MissingBoard()], summary_every_s=1,
                             env=notify_socket.env(JOURNAL_STREAM="%d:%d" % (st.st_dev, st.st_ino)))
    assert gw.log_path == log_path
    wanted = re.compile(r"^<6>gateway.supervisor INFO summary \(1 s\): stored %s 0, sd-3 [1-9]\d*; bad frames 0; "
                        r"database ok$" % MissingBoard.tty, re.M)
    summary = wait_for(lambda: wanted.search(gw.log_text()), 60, "a summary line")
    lines = [ln for ln in gw.log_text().splitlines() if ln]
    assert all(re.match(r"<[3467]>gateway", ln) for ln in lines), [ln for ln in lines if not ln.startswith("<")]
    assert not any(TIMESTAMP.search(ln) for ln in lines), lines[:5]
    assert any(ln.startswith("<4>") and "cannot open" in ln for ln in lines), lines
    assert any(ln.startswith("<6>") and "serving 2 board(s)" in ln for ln in lines), lines
    print(summary.group(0))
