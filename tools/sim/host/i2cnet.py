"""The heartbeat wire between two simulated boards: an `I2CBus` in one process, its controller in another.

Why: in the simulation every board is its own OS process (tools/sim/vboard/board.py), but the master and the standby share a
dedicated I2C wire for the heartbeat (Listing 8-6: the master writes to the standby at address 8 every 3 s). The
standby process owns the wire (`BusServer` over its `I2CBus`, where its `MemTarget` sits); the master's process
drives it through `RemoteI2C`, a `machine.I2C` look-alike. The only thing that crosses the process boundary is
`I2CBus.transfer(segments, stop)`, which tools/sim/host/i2c.py made the single way into a bus for exactly this.

What the master sees is what it would see on copper:

- the standby's process is gone (killed, never started, socket missing, connection refused, peer died in the middle
  of a transaction): nobody ACKs, `OSError(19)` ENODEV, at once. Flaw F12 (the master ignores the result of the
  I2C write) is caught by killing the standby;
- the standby is alive but holds the wire longer than `timeout` (a handler that blocks, a stopped process):
  `OSError(110)` ETIMEDOUT, like MicroPython's `machine.I2C` when a target stretches SCL beyond its timeout. The
  transaction may have reached the target;
- the wire is cut (`set_cut(path, True)` creates `<path>.cut`): both processes keep running, every transaction
  NACKs (ENODEV) and the target sees nothing at all, no START, no byte, no IRQ.

The next call after any failure connects again, so a standby that comes back is found without anyone's help.

Wire format (Unix-domain stream socket; every message is a 4-byte big-endian length, then the body):

    request  u8 op (1 = transfer)  u8 flags (bit 0: stop)  u8 n_segments
             per segment: u8 address (7-bit)  u8 is_read  u16 length  [length bytes, writes only]
    reply    u8 errno (0 = success)
             success: u8 n_results, then per result in segment order:
                      write: u16 bytes ACKed      read: u16 length, length bytes
             failure: the rest is the error message, UTF-8

There may be fewer results than segments (a data NACK ends the transaction, as on the local bus). One connection
carries any number of requests, one at a time; the server serves several connections (each on its own thread, the
bus lock orders them). A transaction costs one round trip, tens of microseconds on a host.
"""

import errno
import os
import select
import socket
import struct
import sys
import threading
import time
import traceback

from tools.sim.host.i2c import MachineI2C, ProbingBus

__all__ = ["BusServer", "RemoteBus", "RemoteI2C", "cut_path", "set_cut", "is_cut", "ENODEV", "ETIMEDOUT"]

ENODEV = errno.ENODEV  # 19: no target ACKed (standby gone, wire cut)
ETIMEDOUT = errno.ETIMEDOUT  # 110: the target held the wire past the controller's timeout
EIO = errno.EIO

OP_TRANSFER = 1
_LEN = struct.Struct(">I")
_REQ_HEAD = struct.Struct(">BBB")
_SEG = struct.Struct(">BBH")
_U16 = struct.Struct(">H")
MAX_MESSAGE = 1 << 20  # a sane bound on one message: a request with a wrong length prefix must not eat memory


def cut_path(path):
    """The fault file for the wire served at `path`: while it exists, the wire is cut."""
    return path + ".cut"


def set_cut(path, on):
    """Cut (`on=True`) or mend the wire at `path`. Both sides see it at their next transaction."""
    cp = cut_path(path)
    if on:
        with open(cp, "w") as f:
            f.write("cut\n")
    else:
        try:
            os.remove(cp)
        except FileNotFoundError:
            pass


def is_cut(path):
    return os.path.exists(cut_path(path))


def encode_request(segments, stop):
    parts = [_REQ_HEAD.pack(OP_TRANSFER, 1 if stop else 0, len(segments))]
    if len(segments) > 255:
        raise ValueError("at most 255 segments in one transaction")
    for address, is_read, payload in segments:
        if not 0 <= address <= 0x7F:
            raise ValueError("7-bit I2C address expected, got %r" % (address,))
        if is_read:
            n = int(payload)
            if not 0 <= n <= 0xFFFF:
                raise ValueError("read length out of range: %r" % (payload,))
            parts.append(_SEG.pack(address, 1, n))
        else:
            data = bytes(payload)
            if len(data) > 0xFFFF:
                raise ValueError("write too long: %d bytes" % len(data))
            parts.append(_SEG.pack(address, 0, len(data)))
            parts.append(data)
    body = b"".join(parts)
    return _LEN.pack(len(body)) + body


def decode_request(body):
    """(segments, stop) from a request body; ValueError if it is malformed."""
    op, flags, n = _REQ_HEAD.unpack_from(body, 0)
    if op != OP_TRANSFER:
        raise ValueError("unknown op %d" % op)
    pos = _REQ_HEAD.size
    segments = []
    for _ in range(n):
        address, is_read, length = _SEG.unpack_from(body, pos)
        pos += _SEG.size
        if is_read:
            segments.append((address, True, length))
        else:
            data = body[pos:pos + length]
            if len(data) != length:
                raise ValueError("truncated write segment")
            pos += length
            segments.append((address, False, data))
    if pos != len(body):
        raise ValueError("trailing bytes in request")
    return segments, bool(flags & 1)


def encode_reply(segments, results):
    parts = [bytes((0, len(results)))]
    for (_, is_read, _), result in zip(segments, results):
        if is_read:
            parts.append(_U16.pack(len(result)))
            parts.append(bytes(result))
        else:
            parts.append(_U16.pack(result))
    body = b"".join(parts)
    return _LEN.pack(len(body)) + body


def encode_error(err, message):
    body = bytes((err & 0xFF or EIO,)) + message.encode("utf-8", "replace")
    return _LEN.pack(len(body)) + body


def decode_reply(segments, body):
    """The results list, or raise the OSError the reply carries."""
    err = body[0]
    if err:
        raise OSError(err, body[1:].decode("utf-8", "replace"))
    n = body[1]
    pos = 2
    results = []
    for address, is_read, _ in segments[:n]:
        if is_read:
            (length,) = _U16.unpack_from(body, pos)
            pos += 2
            results.append(bytes(body[pos:pos + length]))
            pos += length
        else:
            (acked,) = _U16.unpack_from(body, pos)
            pos += 2
            results.append(acked)
    return results


def _nodev(address, why):
    return OSError(ENODEV, "I2C address 0x%02x did not ACK (%s)" % (address, why))


class BusServer:
    """Serves `bus` (an `I2CBus`) on a Unix-domain socket at `path`, from daemon threads.

    `start()` binds and returns at once (a stale socket file left by a killed process is replaced; a live server
    at the same path is an `OSError(EADDRINUSE)`), `close()` stops serving and removes the socket file if it is still
    ours. Usable as a context manager. Targets' IRQ handlers run on the connection's thread, inside `transfer`.

    `transactions` counts requests answered, `cut_nacks` the ones refused because the wire was cut.
    """

    def __init__(self, bus, path):
        self.bus = bus
        self.path = path
        self.cut_file = cut_path(path)
        self.transactions = 0
        self.cut_nacks = 0
        self._sock = None
        self._ino = None
        self._wake_r = self._wake_w = None
        self._threads = []
        self._conns = set()
        self._lock = threading.Lock()
        self._closing = False

    def start(self):
        if os.path.lexists(self.path):
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(self.path)
            except OSError:
                os.remove(self.path)  # left by a process that died: nobody is listening
            else:
                raise OSError(errno.EADDRINUSE, "an I2C wire is already served at %s" % self.path)
            finally:
                probe.close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(self.path)
        sock.listen(8)
        self._ino = os.stat(self.path).st_ino
        self._sock = sock
        self._wake_r, self._wake_w = os.pipe()
        t = threading.Thread(target=self._accept_loop, name="i2cnet-accept", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def __enter__(self):
        return self.start() if self._sock is None else self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        """Stop accepting, drop every connection (their controllers see ENODEV), remove our socket file."""
        with self._lock:
            if self._closing or self._sock is None:
                return
            self._closing = True
            conns = list(self._conns)
            threads = list(self._threads)
        os.write(self._wake_w, b"x")
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in threads:
            if t is not threading.current_thread():
                t.join(2.0)
        self._sock.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        try:
            if os.stat(self.path).st_ino == self._ino:
                os.remove(self.path)
        except FileNotFoundError:
            pass

    def _accept_loop(self):
        while True:
            ready, _, _ = select.select([self._sock, self._wake_r], [], [])
            if self._wake_r in ready:
                return
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            with self._lock:
                if self._closing:
                    conn.close()
                    return
                self._conns.add(conn)
                t = threading.Thread(target=self._serve, args=(conn,), name="i2cnet-bus", daemon=True)
                self._threads = [x for x in self._threads if x.is_alive()]
                self._threads.append(t)
            t.start()

    def _serve(self, conn):
        holding = False  # this connection left the bus without STOP (stop=False)
        rfile = conn.makefile("rb")
        try:
            while True:
                head = rfile.read(4)
                if len(head) < 4:
                    return
                (n,) = _LEN.unpack(head)
                if n > MAX_MESSAGE:
                    return
                body = rfile.read(n)
                if len(body) < n:
                    return
                try:
                    segments, stop = decode_request(body)
                except (ValueError, struct.error):
                    return  # a peer that speaks something else: hang up on it
                reply = self._answer(segments, stop)
                holding = not stop and reply[4] == 0
                conn.sendall(reply)
        except OSError:
            return
        finally:
            if holding:
                try:
                    self.bus.transfer((), True)  # the controller vanished mid-transaction: the bus goes idle
                except Exception:
                    pass
            rfile.close()
            conn.close()
            with self._lock:
                self._conns.discard(conn)

    def _answer(self, segments, stop):
        self.transactions += 1
        if os.path.exists(self.cut_file):
            self.cut_nacks += 1
            address = segments[0][0] if segments else 0
            return encode_error(ENODEV, "I2C address 0x%02x did not ACK (wire cut)" % address)
        try:
            results = self.bus.transfer(segments, stop)
        except OSError as exc:
            return encode_error(exc.errno or EIO, exc.strerror or str(exc))
        except Exception as exc:  # a bug in a simulated target: the controller must still get an answer
            traceback.print_exc(file=sys.stderr)
            return encode_error(EIO, "simulated target failed: %r" % (exc,))
        return encode_reply(segments, results)


class RemoteBus(ProbingBus):
    """The controller's end of the wire: `transfer(segments, stop)` and `scan()`, like an `I2CBus`, over a socket.

    One connection, opened on first use and again after any failure. `timeout` bounds a whole call (connect, send,
    reply). Failures are I2C failures (see the module docstring); the connection is dropped after any of them so a
    late reply can never be taken for the answer to the next request.
    """

    def __init__(self, path, timeout=0.5):
        self.path = path
        self.timeout = timeout
        self._sock = None
        self._buf = bytearray(4096)
        self._lock = threading.Lock()
        self.reconnects = 0

    def close(self):
        with self._lock:
            self._drop()

    def _drop(self):
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _connect(self, deadline, address):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            s.connect(self.path)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            s.close()
            raise _nodev(address, "nothing listening at %s: %s" % (self.path, exc.strerror)) from None
        except socket.timeout:
            s.close()
            raise OSError(ETIMEDOUT, "I2C wire at %s: connect timed out" % self.path) from None
        except OSError as exc:
            s.close()
            raise _nodev(address, "cannot reach %s: %s" % (self.path, exc)) from None
        self._sock = s
        self.reconnects += 1

    def _recv_exact(self, n, deadline, address):
        """n bytes from the socket before the deadline, as a bytes object."""
        out = bytearray()
        while len(out) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise OSError(ETIMEDOUT, "I2C address 0x%02x: no answer within %.3f s (target holds the wire)"
                              % (address, self.timeout))
            self._sock.settimeout(left)
            try:
                k = self._sock.recv_into(self._buf, min(len(self._buf), n - len(out)))
            except socket.timeout:
                raise OSError(ETIMEDOUT, "I2C address 0x%02x: no answer within %.3f s (target holds the wire)"
                              % (address, self.timeout)) from None
            except OSError as exc:
                raise _nodev(address, "the far end died mid-transaction: %s" % exc) from None
            if not k:
                raise _nodev(address, "the far end died mid-transaction")
            out += self._buf[:k]
        return bytes(out)

    def transfer(self, segments, stop=True):
        segments = [(a, bool(r), p) for a, r, p in segments]
        request = encode_request(segments, stop)
        address = segments[0][0] if segments else 0
        with self._lock:
            deadline = time.monotonic() + self.timeout
            try:
                sent = False
                if self._sock is not None:
                    try:
                        self._sock.settimeout(max(deadline - time.monotonic(), 0.001))
                        self._sock.sendall(request)
                        sent = True
                    except OSError:
                        # the server went away between calls (EPIPE): nothing reached a target, connect again
                        self._drop()
                if not sent:
                    self._connect(deadline, address)
                    try:
                        self._sock.sendall(request)
                    except OSError as exc:
                        raise _nodev(address, "the far end died: %s" % exc) from None
                (n,) = _LEN.unpack(self._recv_exact(4, deadline, address))
                if n < 1 or n > MAX_MESSAGE:
                    raise OSError(EIO, "I2C wire at %s: garbled reply" % self.path)
                body = self._recv_exact(n, deadline, address)
            except BaseException:
                self._drop()
                raise
        return decode_reply(segments, body)


class RemoteI2C(MachineI2C):
    """MicroPython's `machine.I2C` methods over the wire served at `path` (readfrom_mem, readfrom_mem_into,
    writeto_mem, writeto, readfrom, readfrom_into, writevto, scan), with the same semantics as the local
    `MachineI2C`, because it is that class driving a `RemoteBus`."""

    def __init__(self, path, timeout=0.5):
        super().__init__(RemoteBus(path, timeout))

    @property
    def path(self):
        return self.bus.path

    def close(self):
        """Drop the connection (the next call connects again)."""
        self.bus.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
