"""One board's serial port, kept open and read on a thread of its own, feeding a protocol.

This is the gateway's `serial.threaded.ReaderThread`: it knows ports, not frames. It opens the port by pyserial URL
(`serial.serial_for_url`, so `/dev/ttyACM0`, a pseudo-terminal, `loop://`, `socket://`, `spy://` and
`hwgrep://` all work the same), hands whatever arrives to `protocol.data_received`, serialises writes from the
protocol's callers under one lock, and when the port fails (a board unplugged or reset, a pty closed) tells the
protocol and opens it again. What the bytes mean is gateway/protocol.py's business.

One program per port. Two readers of one serial port each get some of the bytes: a second gateway would acknowledge
readings the first never stored, a serial monitor beside the gateway garbles both. So a port is opened exclusively,
twice over: pyserial's `exclusive=True` takes a `flock(LOCK_EX)` on it (every program that asks for the lock, any
user, root included, is refused while we hold it; pyserial-based tools, `soil-gateway monitor`, minicom and
picocom with their lock options ask) and a tty also gets `TIOCEXCL`, which refuses every further `open()` of it, by
any program, except to root (CAP_SYS_ADMIN bypasses it). When the open fails because someone holds the port, the
error names them: `in use by pid 812 (soil-gateway run -c /etc/soil/gateway.toml)`, from /proc/locks and /proc.
TIOCEXCL lasts until the tty's last close or TIOCNXCL: `stop()` clears it, but a gateway killed with -9 leaves it on
a pty whose board end stays open (tools/sim), and only root can open that pty again until the board restarts.

Reopening. A port that was open and vanished (a board reset: USB re-enumerates, a virtual board's pty goes away) is
watched: its path is looked at every REOPEN_S and opened the moment it is back, so a board that resets and lives a
second is still heard saying hello. Any other URL that was open (socket://) is retried every REOPEN_S for
REOPEN_FAST_S. A URL that never opened backs off from BACKOFF_FIRST_S to BACKOFF_MAX_S. Failures to open are
logged once, then at most once per WARN_EVERY_S (with how many tries failed), and `status()` shows them.

`tap` (gateway/tap.py) gets a copy of every byte read and written: the read-only view `soil-gateway monitor
--listen` shows, which takes nothing from the port.
"""

import errno
import fcntl
import logging
import os
import stat
import termios
import threading
import time

import serial

log = logging.getLogger("gateway.transport")

READ_TIMEOUT_S = 0.5      # a read returns as soon as a byte arrives; this only bounds how long stop() waits
BACKOFF_FIRST_S = 0.2     # a URL that never opened: the first retry; doubles up to BACKOFF_MAX_S
BACKOFF_MAX_S = 5.0
REOPEN_S = 0.02           # a port that was open and vanished: look for it again this often
REOPEN_FAST_S = 10.0      # ... for this long when it is not a path that can be watched (socket://)
WARN_EVERY_S = 60.0       # the same port failing to open: at most one warning this often
_BUSY = (errno.EAGAIN, errno.EWOULDBLOCK, errno.EBUSY)   # flock held (EWOULDBLOCK) or TIOCEXCL (EBUSY)


class PortBusy(serial.SerialException):
    """Another program holds the port (its lock or its exclusive open); the message names it."""

    def __init__(self, err, message):
        super().__init__(message)
        self.errno = err


def check_url(url):
    """Raise ValueError with one clear sentence when `url` cannot name a port (an unknown scheme such as
    `serial://`); opens nothing, so a board that is unplugged right now still passes."""
    if not isinstance(url, str) or not url:
        raise ValueError("a port URL must be a non-empty string")
    if "://" in url:
        try:
            serial.serial_for_url(url, do_not_open=True)
        except ValueError as e:
            scheme = url.split("://", 1)[0]
            raise ValueError("%s: unknown URL scheme %r (a device path such as /dev/ttyACM0, or loop://, socket://, "
                             "rfc2217://, spy://, hwgrep://)" % (url, scheme)) from e
        except (serial.SerialException, OSError):
            pass          # a known scheme whose target is absent right now (hwgrep:// with nothing plugged in)


def check_baudrate(baudrate):
    if isinstance(baudrate, bool) or not isinstance(baudrate, int) or baudrate <= 0:
        raise ValueError("baudrate must be a positive whole number, not %r" % (baudrate,))


def port_holders(path):
    """Who else has the device `path` open, as "pid N (command)" strings: the holder of its flock first (from
    /proc/locks), else every other process with it open (from /proc/*/fd). Empty when unknown."""
    try:
        st = os.stat(path)
    except (OSError, TypeError, ValueError):
        return []
    me = os.getpid()
    pids = []
    key = "%02x:%02x:%d" % (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    try:
        with open("/proc/locks") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 6 and parts[1] == "FLOCK" and parts[5] == key and parts[4].isdigit():
                    pid = int(parts[4])
                    if pid != me and pid not in pids:
                        pids.append(pid)
    except OSError:
        pass
    if not pids and stat.S_ISCHR(st.st_mode):
        for pid in _pids():
            if pid != me and _has_open(pid, st.st_rdev):
                pids.append(pid)
    return ["pid %d (%s)" % (pid, _command(pid)) for pid in pids]


def _pids():
    try:
        return sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
    except OSError:
        return []


def _has_open(pid, rdev):
    folder = "/proc/%d/fd" % pid
    try:
        fds = os.listdir(folder)
    except OSError:
        return False
    for fd in fds:
        try:
            st = os.stat(os.path.join(folder, fd))
        except OSError:
            continue
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == rdev:
            return True
    return False


def _command(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return "?"
    if not argv:
        return "?"
    text = " ".join([os.path.basename(argv[0])] + argv[1:])
    return text if len(text) <= 120 else text[:117] + "..."


def open_port(url, baudrate, timeout=READ_TIMEOUT_S):
    """Open `url` exclusively (flock, and TIOCEXCL on a tty). Raises PortBusy naming the holders when another
    program has it, serial.SerialException for any other failure."""
    port = serial.serial_for_url(url, do_not_open=True, exclusive=True)
    port.baudrate = baudrate
    port.timeout = timeout
    try:
        port.open()
    except serial.SerialException as e:
        if e.errno in _BUSY:
            holders = port_holders(url)
            raise PortBusy(e.errno, "%s is in use by %s" % (url, ", ".join(holders) or "another program"))
        raise
    fd = getattr(port, "fd", None)
    if isinstance(fd, int) and os.isatty(fd):
        try:
            fcntl.ioctl(fd, termios.TIOCEXCL)
        except OSError:
            pass
    return port


def close_port(port):
    """Close a port from open_port, clearing TIOCEXCL first (it would outlive us on a pty whose other end stays)."""
    fd = getattr(port, "fd", None)
    if isinstance(fd, int):
        try:
            fcntl.ioctl(fd, termios.TIOCNXCL)
        except OSError:
            pass
    try:
        port.close()
    except Exception:
        pass


class SerialTransport:
    """Reads `board_cfg.url` at `board_cfg.baudrate` into `protocol` (connection_made(transport),
    data_received(bytes), connection_lost(exc)); `write(frame)` is safe from any thread. `tap`, if given, has
    `publish(port_name, direction, data)` (direction b"<" from the board, b">" to it)."""

    def __init__(self, board_cfg, protocol, tap=None, clock=time.monotonic):
        check_url(board_cfg.url)
        check_baudrate(board_cfg.baudrate)
        self.cfg = board_cfg
        self.protocol = protocol
        self.tap = tap
        self.port = None
        self._clock = clock
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        self.opens = 0                 # successful opens (the first and every reopen)
        self.open_failures = 0         # failed opens since the port was last open
        self.port_error = None         # why it is not open right now
        self.warnings_suppressed = 0   # open failures not logged (WARN_EVERY_S)
        self._last_warned = None
        self._warned_at = 0.0
        self._lost_at = None           # when an open port failed (None: not lost, or never open)

    def start(self):
        self._thread = threading.Thread(target=self._run, name="board:%s" % self.cfg.name, daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.port is not None:
            close_port(self.port)

    def status(self):
        """For the gateway's status snapshot."""
        port = self.port
        return {"port_open": bool(port is not None and port.is_open), "port_error": self.port_error,
                "opens": self.opens, "open_failures": self.open_failures,
                "open_warnings_suppressed": self.warnings_suppressed}

    def check_open(self):
        """Open the port as the service does, then close it again (`soil-gateway check`). Raises what the open
        raises (serial.SerialException, OSError, ValueError for a bad URL or baud rate)."""
        self._open()
        port, self.port = self.port, None
        port.close()

    def write(self, data):
        """Send bytes now, or drop them while the port is closed (the protocol recovers from lost frames)."""
        port = self.port
        if port is None:
            return
        with self._write_lock:
            try:
                port.write(data)
            except (serial.SerialException, OSError) as e:
                log.warning("%s: write failed: %s", self.cfg.name, e)
                return
        if self.tap is not None:
            self.tap.publish(self.cfg.name, b">", data)

    def _open(self):
        self.port = open_port(self.cfg.url, self.cfg.baudrate)

    def _run(self):
        backoff = BACKOFF_FIRST_S
        while not self._stop.is_set():
            try:
                if self.port is None or not self.port.is_open:
                    self._open()
                    log.info("%s: port open%s", self.cfg.name, " again" if self.opens else "")
                    self.opens += 1
                    self.open_failures = 0
                    self.port_error = None
                    self._lost_at = None
                    self._last_warned = None
                    backoff = BACKOFF_FIRST_S
                    self.protocol.connection_made(self)
                port = self.port
                data = port.read(max(1, port.in_waiting))
                if data:
                    if self.tap is not None:
                        self.tap.publish(self.cfg.name, b"<", data)
                    self.protocol.data_received(data)
            except (serial.SerialException, OSError) as e:
                was_open = self.port is not None
                if was_open:
                    self.protocol.connection_lost(e)
                    close_port(self.port)
                    self.port = None
                    self._lost_at = self._clock()
                    log.warning("%s: port lost (%s); reopening as soon as it is back", self.cfg.name, e)
                else:
                    self._open_failed(e, backoff)
                self.port_error = str(e)
                backoff = self._wait_to_reopen(backoff)
            except Exception as e:       # never a dead board thread behind a running service
                log.error("%s: unexpected %s: %s; retrying", self.cfg.name, type(e).__name__, e)
                log.debug("%s: the unexpected error", self.cfg.name, exc_info=True)
                self.port_error = "%s: %s" % (type(e).__name__, e)
                if self.port is not None:
                    close_port(self.port)
                    self.port = None
                self._stop.wait(BACKOFF_MAX_S)

    def _open_failed(self, err, backoff):
        self.open_failures += 1
        text = str(err)
        now = self._clock()
        if text != self._last_warned or now - self._warned_at >= WARN_EVERY_S:
            more = ""
            if self.open_failures > 1:
                more = " (%d tries so far)" % self.open_failures
            log.warning("%s: cannot open: %s%s; retrying", self.cfg.name, text, more)
            self._last_warned, self._warned_at = text, now
        else:
            self.warnings_suppressed += 1

    def _wait_to_reopen(self, backoff):
        """Wait before the next open; returns the backoff for the one after."""
        if self._lost_at is None:                                       # never open (or not since it was lost)
            self._stop.wait(backoff)
            return min(backoff * 2, BACKOFF_MAX_S)
        url = self.cfg.url
        if "://" not in url:
            # A device path: watch it, open it the moment it exists again. Looking costs a stat.
            self._stop.wait(REOPEN_S)
            while not self._stop.is_set() and not os.path.exists(url):
                self._stop.wait(REOPEN_S)
            if self.open_failures:                                      # it exists but does not open: back off
                self._stop.wait(backoff)
                return min(backoff * 2, BACKOFF_MAX_S)
            return BACKOFF_FIRST_S
        if self._clock() - self._lost_at < REOPEN_FAST_S:
            self._stop.wait(REOPEN_S)
            return BACKOFF_FIRST_S
        self._stop.wait(backoff)
        return min(backoff * 2, BACKOFF_MAX_S)
