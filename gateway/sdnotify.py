"""The sd_notify protocol (systemd's `sd_notify(3)`), written out so the gateway needs no library for it.

systemd starts a `Type=notify` service with $NOTIFY_SOCKET naming a Unix datagram socket: a path, or a name in the
abstract namespace written with a leading "@" (the kernel's leading NUL byte). The service sends it newline-separated
`KEY=value` assignments, one datagram per message: READY=1 (started), STATUS=... (the line `systemctl status`
shows), WATCHDOG=1 (alive), STOPPING=1 (shutting down). With `WatchdogSec=` set, systemd also passes $WATCHDOG_USEC
(the period in microseconds) and $WATCHDOG_PID (the process that must ping; another process must not); the
convention (sd_watchdog_enabled(3)) is to ping at half the period.

Outside systemd (no $NOTIFY_SOCKET) every call is a no-op, so the gateway runs the same on a bench. A send that fails
(the socket went away) is logged once and otherwise ignored: the service manager is told, never waited for.

`journal_stream_is_stderr()` is the sd-daemon test for "stderr goes to journald": $JOURNAL_STREAM holds the
`device:inode` of the stream systemd connected, and it counts only while stderr is still that stream (a child whose
stderr was redirected to a file inherits the variable but not the stream).
"""

import logging
import os
import socket

log = logging.getLogger("gateway.sdnotify")


def socket_address(value):
    """$NOTIFY_SOCKET as an address for socket.sendto(): "@name" is the abstract namespace (a leading NUL byte)."""
    if value.startswith("@"):
        return "\0" + value[1:]
    return value


class SdNotify:
    """One service's link to its service manager; `environ` is os.environ unless a test gives its own."""

    def __init__(self, environ=None):
        environ = os.environ if environ is None else environ
        self.address = socket_address(environ["NOTIFY_SOCKET"]) if environ.get("NOTIFY_SOCKET") else None
        self.watchdog_s = watchdog_period(environ)
        self._sock = None
        self._failed = False

    @property
    def enabled(self):
        return self.address is not None

    def send(self, **fields):
        """One datagram of KEY=value lines: send(READY=1, STATUS="..."). Returns whether it was sent."""
        if self.address is None:
            return False
        text = "\n".join("%s=%s" % (k, str(v).replace("\n", " ")) for k, v in fields.items())
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(text.encode(), self.address)
        except OSError as e:
            if not self._failed:
                log.warning("systemd notify socket %s: %s (the service manager is not told)",
                            self.address.replace("\0", "@"), e.strerror or e)
                self._failed = True
            return False
        self._failed = False
        return True

    def close(self):
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_period(environ):
    """The watchdog period in seconds ($WATCHDOG_USEC), or None: unset, not a positive number, or $WATCHDOG_PID
    names another process (the watchdog is then that process's to ping)."""
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    pid = environ.get("WATCHDOG_PID")
    if pid:
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            return None
    return usec / 1e6


def journal_stream_is_stderr(environ=None, fd=2):
    """Whether stderr is the journald stream systemd set up ($JOURNAL_STREAM = "device:inode" of `fd`)."""
    environ = os.environ if environ is None else environ
    value = environ.get("JOURNAL_STREAM", "")
    try:
        dev, ino = (int(part) for part in value.split(":"))
        st = os.fstat(fd)
    except (ValueError, OSError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)
