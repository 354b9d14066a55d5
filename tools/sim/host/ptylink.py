"""A board's USB serial port, simulated as a real pseudo-terminal.

The gateway opens the slave side exactly as it opens `/dev/ttyACM0` (pyserial, termios and all); the board side
writes into the master. Bytes leave at the configured baud rate (10 bits per byte: start, 8 data, stop), so a
replay benchmark over this link measures what a real UART would allow, not what a memory copy allows.
"""

import errno
import os
import time
import tty


class PtyLink:
    """The board end of the line: `write` (paced, never blocks), `read` (never blocks), `path`, `fileno()`."""

    def __init__(self, baudrate=115200, clock=time.monotonic):
        self.baudrate = baudrate
        self._clock = clock
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)            # no echo, no newline translation: bytes are bytes
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)
        self._bytes_per_s = baudrate / 10.0 if baudrate else None
        self._credit = 0.0
        self._last = clock()
        self._burst = 64                  # a UART FIFO's worth of bytes may leave at once
        self.bytes_out = 0
        self.bytes_in = 0
        self._pending_noise = b""
        self.rx_log = bytearray()         # the last 64 KiB the gateway sent, for tests that audit the line

    def fileno(self):
        return self.master

    def _refill(self):
        now = self._clock()
        if self._bytes_per_s is None:
            self._credit = float(1 << 20)
        else:
            self._credit = min(self._credit + (now - self._last) * self._bytes_per_s, float(self._burst))
        self._last = now

    def write(self, data):
        """Accept as many bytes as the line can carry by now; return how many."""
        if self._pending_noise:
            noise, self._pending_noise = self._pending_noise, b""
            self._raw_write(noise)
        self._refill()
        n = min(len(data), int(self._credit))
        if n <= 0:
            return 0
        written = self._raw_write(data[:n])
        self._credit -= written
        self.bytes_out += written
        return written

    def _raw_write(self, data):
        try:
            return os.write(self.master, data)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EIO):
                return 0                  # nobody reading (EIO: no one has the slave open): the board waits
            raise

    def read(self):
        try:
            data = os.read(self.master, 4096)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EIO):
                return b""
            raise
        self.bytes_in += len(data)
        self.rx_log += data
        if len(self.rx_log) > 65536:
            del self.rx_log[:-65536]
        return data

    def seconds_until_credit(self, nbytes=1):
        """How long until `nbytes` may be written (0 if now): lets the board's loop sleep exactly that long."""
        if self._bytes_per_s is None:
            return 0.0
        self._refill()
        missing = nbytes - self._credit
        return max(0.0, missing / self._bytes_per_s)

    def inject_noise(self, data):
        """Line noise for tests: bytes that go out ahead of the next frame, outside the protocol."""
        self._pending_noise += data

    def close(self):
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


# The board's `tty` symlink is its /dev/ttyACM0: it must exist exactly while the board is up. The kernel hands a
# freed /dev/pts/N to the next pty anyone opens, so a link left behind by a stopped board leads a gateway that retries
# the path to a stranger's board. Both simulated boards (tools/sim/vboard, tools/sim/mpboard) publish and withdraw
# their link through these three, on every exit path they can see (SIGKILL is the one they cannot: the next start on
# the same folder replaces the link, and tools/demo/stack.py's kill() withdraws it).

def publish_link(link, target):
    """Point `link` at `target` atomically (a reader sees the old link or the new one, never none)."""
    tmp = link + ".tmp"
    if os.path.lexists(tmp):
        os.remove(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, link)


def withdraw_link(link, target):
    """Remove `link` if it still points at `target` (our pty); a link another board published since is left alone.
    Returns whether it removed it."""
    try:
        if os.readlink(link) != target:
            return False
        os.remove(link)
        return True
    except OSError:
        return False


def remove_stale_link(link):
    """At start, before this board has a pty: any link at `link` is a previous board's, stale; remove it so nothing
    opens the pty it points at (freed, or by now another program's) while this board starts."""
    try:
        if os.path.islink(link):
            os.remove(link)
    except OSError:
        pass
