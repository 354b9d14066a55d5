"""A board's port as people meet it (issue 11): one program per port, the read-only tap for `monitor --listen`,
tty links that exist only while a board runs, a port reopened the moment a reset board is back, bad URLs and
baudrates as one line, warnings that cannot fill a disk.

Real pseudo-terminals through pyserial, real processes (virtual boards, the gateway, the monitor), a real MariaDB.
Every wait is on a condition with a deadline. The one scenario with times in it is the short boot: a board off for
1.6 s and up for half a second, again and again; those times are what the test is about, not waits."""

import errno
import json
import logging
import os
import pwd
import select
import signal
import subprocess
import sys
import time

import pytest

from gateway.config import ConfigError, from_dict
from gateway.transport import PortBusy, SerialTransport, open_port, close_port, port_holders
from tests.test_gateway_cli import assert_clean_error, run_cli, write_config
from tests.test_gateway_transport import PtyBoard, Recorder, Cfg
from tools.demo.stack import ROOT, GatewayProc, process_env, wait_for

WAIT_S = 20


def _gateway_pid_named(text, pid):
    return ("pid %d (" % pid) in text


# --- 1. a second program on a board's port ---------------------------------------------------------------------

def test_a_held_port_refuses_the_monitor_and_names_the_holder():
    """flock (pyserial exclusive=True): refused to every program that asks, root included; the line names us."""
    board = PtyBoard()
    rec = Recorder()
    t = SerialTransport(Cfg(board.path), rec)
    t.start()
    try:
        assert rec.wait_for(lambda: rec.made)
        proc = run_cli("monitor", board.path, "--seconds", "2")
        assert_clean_error(proc, "in use by pid %d (" % os.getpid(), "monitor --listen")
        assert len(proc.stderr.strip().splitlines()) == 1
        assert port_holders(board.path) == []          # we do not name ourselves
    finally:
        t.stop()
        board.close()


def test_tiocexcl_refuses_a_second_open_by_a_program_that_is_not_root():
    """TIOCEXCL on the tty: even a program that takes no lock cannot open it (root bypasses TIOCEXCL, so the
    second program runs as nobody); once the gateway lets go, it can."""
    nobody = pwd.getpwnam("nobody")
    board = PtyBoard()
    os.chmod(board.path, 0o666)
    probe = ("import os, sys\n"
             "try:\n"
             "    os.close(os.open(sys.argv[1], os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK))\n"
             "    print('opened')\n"
             "except OSError as e:\n"
             "    print('refused', e.errno)\n")

    def as_nobody(python, *args):
        return subprocess.run([python, "-c"] + list(args), capture_output=True, text=True, timeout=WAIT_S,
                              user=nobody.pw_uid, group=nobody.pw_gid, cwd="/")
    python = None
    for candidate in (sys.executable, getattr(sys, "_base_executable", None), "/usr/bin/python3"):
        try:
            if candidate and as_nobody(candidate, "pass").returncode == 0:
                python = candidate
                break
        except OSError:
            continue
    if python is None:
        board.close()
        pytest.skip("no Python interpreter that the user nobody may run")

    def try_open():
        return as_nobody(python, probe, board.path).stdout.strip()
    try:
        assert try_open() == "opened"                  # nothing holds it yet
        port = open_port(board.path, 115200)
        try:
            assert try_open() == "refused %d" % errno.EBUSY
        finally:
            close_port(port)
        assert try_open() == "opened"                  # TIOCNXCL on close: it does not outlive the gateway
    finally:
        board.close()


def test_a_second_opener_in_the_same_program_gets_portbusy():
    board = PtyBoard()
    port = open_port(board.path, 115200)
    try:
        with pytest.raises(PortBusy):
            open_port(board.path, 115200)
    finally:
        close_port(port)
        board.close()


def _status_board(gateway, port):
    st = gateway.status()
    if not st:
        return None
    for b in st["boards"]:
        if b["port"] == port:
            return b
    return None


def test_monitor_beside_the_gateway_refuses_unless_it_only_listens(stack):
    board = stack.start_board("mon-1", interval_ms=200, status_interval_ms=1000, rtc_set=True)
    gw = stack.start_gateway()
    wait_for(lambda: (_status_board(gw, board.tty) or {}).get("committed_n", 0) >= 3, WAIT_S, "readings stored")
    proc = run_cli("monitor", board.tty, "--seconds", "2")
    assert_clean_error(proc, "in use by pid %d (" % gw.proc.pid, "monitor --listen")
    tap = os.path.join(gw.dir, "tap.sock")
    proc = run_cli("monitor", "--listen", board.tty, "--tap", tap, "--seconds", "3")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any(" R " in line and " ! " not in line for line in lines), proc.stdout      # the board's readings
    assert any(" > A " in line for line in lines), proc.stdout                          # the gateway's acks
    assert "Traceback" not in proc.stderr
    # The gateway lost nothing to the monitor: no bad line, no gap, every reading stored in order.
    st = _status_board(gw, board.tty)
    assert st["bad_frames"] == 0 and st["gaps"] == 0, st
    seqs = [r[2] for r in stack.readings("mon-1")]
    assert seqs == list(range(1, len(seqs) + 1))
    proc = run_cli("monitor", "--listen", "/dev/no-such-board", "--tap", tap, "--seconds", "1")
    assert_clean_error(proc, "does not serve /dev/no-such-board")


def test_a_second_gateway_on_the_same_port_opens_nothing_and_acknowledges_nothing(stack):
    board = stack.start_board("dup-1", interval_ms=200, status_interval_ms=1000, rtc_set=True)
    first = stack.start_gateway()
    wait_for(lambda: (_status_board(first, board.tty) or {}).get("committed_n", 0) >= 2, WAIT_S, "first gateway")
    second = GatewayProc(stack, stack.boards, name="gateway-2")
    second.start()
    try:
        held = wait_for(lambda: (_status_board(second, board.tty) or {}).get("port_error"), WAIT_S,
                        "the second gateway's open to fail")
        assert _gateway_pid_named(held, first.proc.pid), held
        before = (_status_board(first, board.tty) or {})["committed_n"]
        wait_for(lambda: _status_board(first, board.tty)["committed_n"] >= before + 5, WAIT_S, "more readings")
        st2 = second.status()
        assert st2["committed_rows"] == 0 and st2["boards"][0]["port_open"] is False, st2
        assert st2["boards"][0]["opens"] == 0 and st2["boards"][0]["frames"] == 0, st2
        assert "in use by pid %d" % first.proc.pid in second.log_text()
        assert second.log_text().count("cannot open") <= 2            # one warning, not one per try
        assert board.status()["rx_errors"] == 0
    finally:
        second.stop()


# --- 2. stale tty links ------------------------------------------------------------------------------------------

def _start_vboard(state):
    os.makedirs(state, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "tools.sim.vboard", "--board", "link-1", "--state", state,
                             "--interval-ms", "500"], cwd=ROOT, env=process_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    r, _, _ = select.select([proc.stdout], [], [], WAIT_S)
    assert r, "the board did not start"
    banner = proc.stdout.readline().decode()
    pty = banner.split(" on ", 1)[1].split(" ", 1)[0]
    return proc, pty


@pytest.mark.parametrize("how", ["quit", "SIGTERM", "SIGINT", "SIGHUP"])
def test_vboard_withdraws_its_tty_link_on_every_exit(tmp_path, how):
    state = str(tmp_path / "b")
    link = os.path.join(state, "tty")
    os.makedirs(state)
    os.symlink("/dev/null", link)                     # a stale link whose target is not ours
    proc, pty = _start_vboard(state)
    try:
        assert os.readlink(link) == pty               # replaced at start
        if how == "quit":
            from tools.sim.vboard.board import control
            assert control(state, "quit") == "ok"
        else:
            proc.send_signal(getattr(signal, how))
        proc.wait(WAIT_S)
        assert not os.path.lexists(link), "the tty link outlived the board (%s)" % how
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def test_a_killed_vboards_link_is_withdrawn_by_the_stack(stack):
    board = stack.start_board("kill-1", interval_ms=500)
    assert os.path.islink(board.tty)
    board.kill()
    assert not os.path.lexists(board.tty)


@pytest.mark.micropython
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP"])
def test_mpboard_withdraws_its_tty_link_on_exit(tmp_path, sig):
    from tests.mpy import require_micropython
    require_micropython()
    flash = str(tmp_path / "flash")
    link = str(tmp_path / "tty")
    os.symlink("/dev/null", link)
    proc = subprocess.Popen([sys.executable, "-m", "tools.sim.mpboard", "--flash", flash], cwd=ROOT, env=process_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        r, _, _ = select.select([proc.stdout], [], [], 60)
        assert r, "mpboard did not start"
        banner = proc.stdout.readline().decode()
        assert os.readlink(link) == banner.split(" on ", 1)[1].split(" ", 1)[0]
        proc.send_signal(getattr(signal, sig))
        proc.wait(30)
        assert not os.path.lexists(link)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


# --- 3. short boots -----------------------------------------------------------------------------------------------

# The scenario: a board in a reset loop. Each time it is off (USB re-enumerating) for OFF_S, then up for
# BOOT_LIFE_S. A gateway whose reopen backoff has grown past those (main: 0.2, 0.4, 0.8, 1.6 ... 5 s) never hears it.
OFF_S = 1.6
BOOT_LIFE_S = 0.5


def test_short_boots_are_all_recorded(stack):
    board = stack.start_board("boots-1", interval_ms=1000, status_interval_ms=5000, rtc_set=True)
    gw = stack.start_gateway()
    wait_for(lambda: (_status_board(gw, board.tty) or {}).get("synced"), WAIT_S, "the first hello")
    boots = [board.status()["boot"]]
    for _ in range(8):
        board.kill()
        time.sleep(OFF_S)
        board.start()
        boots.append(board.status()["boot"])
        time.sleep(BOOT_LIFE_S)
    board.kill()

    def recorded():
        rows = stack.query("SELECT detail FROM board_events WHERE board = %s AND event = 'boot'", ("boots-1",))
        return {int(d.split(",")[0].split()[1]) for (d,) in rows}
    try:
        wait_for(lambda: set(boots) <= recorded(), WAIT_S, "every boot in board_events")
    except TimeoutError:
        pytest.fail("boots %s, recorded %s" % (boots, sorted(recorded())))
    assert "retrying in 5.0 s" not in gw.log_text()


# --- 4. one line, exit 1; a port that goes away; warnings that cannot fill a disk -------------------------------

def test_unknown_url_scheme_and_bad_baudrate_are_one_line(dbserver, tmp_path):
    proc = run_cli("monitor", "serial:///dev/ttyACM0", "--seconds", "1")
    assert_clean_error(proc, "unknown URL scheme 'serial'")
    proc = run_cli("monitor", "/dev/ttyACM0", "--baudrate", "-5", "--seconds", "1")
    assert_clean_error(proc, "baudrate")
    env = {"SOIL_DB_PASSWORD": dbserver.gateway_password}
    for board, words in (('url = "serial:///dev/ttyACM0"', ("[[board]] number 1", "unknown URL scheme")),
                         ('url = "/dev/ttyACM0"\nbaudrate = -5', ("[[board]] number 1", "baudrate"))):
        cfg = write_config(tmp_path, dbserver.port, extra="\n[[board]]\n%s\n" % board)
        try:
            proc = run_cli("run", "-c", cfg, env_extra=env, timeout=20)
        except subprocess.TimeoutExpired:
            pytest.fail("`run` kept running with a board it can never open (%s)" % board)
        assert_clean_error(proc, *words)
        assert len(proc.stderr.strip().splitlines()) == 1
    cfg = write_config(tmp_path, dbserver.port)
    try:
        proc = run_cli("run", "-c", cfg, "--board", "serial://x", env_extra=env, timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("`run --board serial://x` kept running")
    assert_clean_error(proc, "--board serial://x", "unknown URL scheme")
    with pytest.raises(ConfigError, match="baudrate"):
        from_dict({"board": [{"url": "loop://", "baudrate": 0}]})


def _read_until(stream, predicate, what, timeout=WAIT_S):
    """Lines from a child's pipe until `predicate(line)`; returns that line."""
    deadline = time.monotonic() + timeout
    seen = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no %s in %r" % (what, seen[-10:]))
        r, _, _ = select.select([stream], [], [], left)
        if not r:
            continue
        line = stream.readline().decode(errors="replace")
        if not line:
            raise TimeoutError("the monitor stopped before %s: %r" % (what, seen[-10:]))
        seen.append(line)
        if predicate(line):
            return line


def test_monitor_says_when_the_board_resets_and_waits_for_it(stack):
    board = stack.start_board("reset-1", interval_ms=200, status_interval_ms=1000, rtc_set=True)
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "monitor", board.tty, "--query"], cwd=ROOT,
                            env=process_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _read_until(proc.stdout, lambda line: " R " in line, "a reading")
        board.kill()                                      # the board resets: its port goes away
        lost = _read_until(proc.stderr, lambda line: "port lost" in line, "the port-lost line")
        assert lost.startswith("soil-gateway: %s: port lost" % board.tty)
        board.start()
        boot = board.status()["boot"]
        _read_until(proc.stderr, lambda line: "port back" in line, "the port-back line")
        _read_until(proc.stdout, lambda line: " R " in line and line.split()[3] == str(boot), "a new boot's reading")
        proc.send_signal(signal.SIGINT)
        proc.wait(WAIT_S)
        assert proc.returncode == 0
        assert b"Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


class _Missing:
    tty = "/dev/soil-no-such-board"


def test_a_board_url_that_never_exists_warns_once_and_shows_in_status(stack):
    board = stack.start_board("there-1", interval_ms=500, rtc_set=True)
    gw = stack.start_gateway(boards=[board, _Missing()])
    st = wait_for(lambda: (lambda b: b if b and b.get("open_failures", 0) >= 4 else None)(
        _status_board(gw, _Missing.tty)), WAIT_S, "four failed opens in the status")
    assert st["port_open"] is False and "No such file" in st["port_error"], st
    assert st["open_warnings_suppressed"] >= 3, st
    assert gw.log_text().count("%s: cannot open" % _Missing.tty) == 1
    assert (_status_board(gw, board.tty) or {}).get("port_open") is True   # the other board is served meanwhile


def test_a_babbling_cable_gets_a_few_warnings_and_a_count(stack):
    from gateway.ratelimit import FIRST
    board = stack.start_board("babble-1", interval_ms=100, status_interval_ms=500, rtc_set=True)
    gw = stack.start_gateway()
    wait_for(lambda: (_status_board(gw, board.tty) or {}).get("committed_n", 0) >= 2, WAIT_S, "readings")
    garbage = b"".join(b"garbage line %03d\n" % i for i in range(55)).hex()

    def babbled():
        board.control("noise " + garbage)
        st = _status_board(gw, board.tty)
        return st if st and st["bad_frames"] >= 500 else None
    st = wait_for(babbled, 60, "500 bad lines")
    logged = gw.log_text().count("dropped a bad line")
    assert logged <= FIRST, "%d bad lines, %d warnings logged" % (st["bad_frames"], logged)
    wait_for(lambda: _status_board(gw, board.tty)["warnings_suppressed"] >= 400, WAIT_S, "the count in status")
    print("babble: %d bad lines, %d warnings logged, %d counted in status" % (
        st["bad_frames"], logged, _status_board(gw, board.tty)["warnings_suppressed"]))
    before = _status_board(gw, board.tty)["committed_n"]
    wait_for(lambda: _status_board(gw, board.tty)["committed_n"] >= before + 3, WAIT_S, "readings after the noise")
    seqs = [r[2] for r in stack.readings("babble-1")]
    assert seqs == list(range(1, len(seqs) + 1))                  # nothing lost to the noise


def test_repeat_limiter_says_how_many_it_left_out():
    from gateway.ratelimit import RepeatLimiter
    now = [0.0]
    lim = RepeatLimiter(first=3, interval_s=10.0, clock=lambda: now[0])
    log = logging.getLogger("gateway.protocol.test-limiter")
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())
    h = Keep()
    log.addHandler(h)
    log.addFilter(lim)
    log.propagate = False
    try:
        for i in range(100):
            log.warning("%s: dropped a bad line (%s): %r", "/dev/ttyACM0", "no frame", i)
        log.warning("%s: dropped a bad line (%s): %r", "/dev/ttyACM1", "no frame", 0)   # another port: its own
        assert len(records) == 4 and lim.suppressed("/dev/ttyACM0") == 97
        now[0] = 11.0
        lim.flush()
        assert records[-1].startswith("/dev/ttyACM0: 97 more warnings like"), records[-1]
    finally:
        log.removeFilter(lim)
        log.removeHandler(h)


def test_the_board_thread_survives_an_unexpected_error(caplog):
    """A bug behind the port (here the protocol raising) costs one error line and a reopen, never the thread."""
    class Fragile(Recorder):
        def data_received(self, data):
            if b"!" in data:
                raise RuntimeError("a bug behind the port")
            super().data_received(data)
    board = PtyBoard()
    rec = Fragile()
    t = SerialTransport(Cfg(board.path), rec)
    caplog.set_level(logging.ERROR, logger="gateway.transport")
    t.start()
    try:
        assert rec.wait_for(lambda: len(rec.made) == 1)
        board.send(b"!")
        assert rec.wait_for(lambda: len(rec.made) == 2)          # reopened by the same, living thread
        board.send(b"after\n")
        assert rec.wait_for(lambda: b"after\n" in rec.data)
        assert [r.getMessage() for r in caplog.records] == [
            "port-t: unexpected RuntimeError: a bug behind the port; retrying"]
    finally:
        t.stop()
        board.close()
