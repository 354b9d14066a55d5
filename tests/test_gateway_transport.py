"""gateway.transport.SerialTransport on real pyserial ports: `loop://`, a `socket://` peer that hangs up (the
reconnect), and a real pseudo-terminal with the real BoardProtocol on it and the test playing the board.

Every wait is on a condition or a file descriptor, bounded; nothing sleeps."""

import os
import select
import socket
import threading
import time

from gateway.protocol import BoardProtocol
from gateway.transport import SerialTransport
from gateway import frames
from soil import utc

WAIT_S = 10


class Cfg:
    def __init__(self, url, name="port-t"):
        self.url, self.baudrate, self.name = url, 115200, name


class Recorder:
    """A protocol that records what the transport tells it."""

    def __init__(self):
        self.made, self.lost, self.data = [], [], bytearray()
        self.cv = threading.Condition()

    def connection_made(self, transport):
        with self.cv:
            self.made.append(transport)
            self.cv.notify_all()

    def data_received(self, data):
        with self.cv:
            self.data += data
            self.cv.notify_all()

    def connection_lost(self, exc):
        with self.cv:
            self.lost.append(exc)
            self.cv.notify_all()

    def wait_for(self, predicate):
        with self.cv:
            return self.cv.wait_for(predicate, WAIT_S)


def test_loop_url_reads_back_what_it_writes():
    rec = Recorder()
    t = SerialTransport(Cfg("loop://"), rec)
    t.start()
    try:
        assert rec.wait_for(lambda: rec.made)
        assert rec.made == [t] and t.port.is_open
        t.write(b"$Q*00000000\n")
        t.write(b"second\n")
        assert rec.wait_for(lambda: bytes(rec.data) == b"$Q*00000000\nsecond\n")
    finally:
        t.stop()
    assert not t.port.is_open and rec.lost == []


def test_a_write_before_the_port_is_open_is_dropped():
    t = SerialTransport(Cfg("loop://"), Recorder())
    t.write(b"nothing to write to\n")
    assert t.port is None


def test_a_peer_that_hangs_up_is_reported_and_the_port_reopened():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(WAIT_S)
    rec = Recorder()
    t = SerialTransport(Cfg("socket://127.0.0.1:%d" % server.getsockname()[1]), rec)
    t.start()
    try:
        first, _ = server.accept()
        assert rec.wait_for(lambda: len(rec.made) == 1)
        first.sendall(b"before\n")
        assert rec.wait_for(lambda: rec.data == b"before\n")
        first.close()                                   # the board's end goes away
        assert rec.wait_for(lambda: rec.lost)
        second, _ = server.accept()                     # the transport opened the port again by itself
        assert rec.wait_for(lambda: len(rec.made) == 2)
        second.sendall(b"after\n")
        assert rec.wait_for(lambda: rec.data == b"before\nafter\n")
        t.write(b"to the board\n")
        second.settimeout(WAIT_S)
        assert second.recv(100) == b"to the board\n"
        second.close()
    finally:
        t.stop()
        server.close()


class PtyBoard:
    """The board's end of a real pseudo-terminal: the gateway opens the slave by its path, like /dev/ttyACM0."""

    def __init__(self):
        self.master, slave = os.openpty()
        self.path = os.ttyname(slave)
        self.slave = slave          # the test's own hold: the pty stays up whatever the gateway does
        self.buf = b""

    def send(self, frame):
        os.write(self.master, frame)

    def frame(self):
        """The next frame from the gateway, decoded; waits on the descriptor."""
        deadline = time.monotonic() + WAIT_S
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            assert left > 0, "no frame from the gateway (got %r)" % self.buf
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                self.buf += os.read(self.master, 256)
        line, self.buf = self.buf.split(b"\n", 1)
        return frames.decode(line)

    def close(self):
        os.close(self.master)
        os.close(self.slave)


def test_the_protocol_on_a_real_pty_with_the_test_as_the_board():
    board = PtyBoard()
    submitted = []
    got = threading.Condition()

    def submit(protocol, epoch, n, reading):
        with got:
            submitted.append((protocol, epoch, n, reading))
            got.notify_all()
    now = utc.iso(utc.from_epoch(int(time.time())))
    p = BoardProtocol(Cfg(board.path), submit, lambda: True)
    t = SerialTransport(p.cfg, p)
    t.start()
    try:
        assert board.frame() == (frames.QUERY, ())       # the port is open: the gateway asks for a hello
        assert p.connected.is_set()
        board.send(frames.hello("pty-1", 2, 5, now, "ok", "single", "1.0", "0badc0de"))
        assert board.frame() == (frames.ACK, (4, 2))
        board.send(frames.encode(frames.READING, (5, 2, 9, now, 700, "L")))
        with got:
            assert got.wait_for(lambda: submitted, WAIT_S)
        (protocol, epoch, n, reading), = submitted
        assert (protocol, epoch, n, reading.board, reading.seq, reading.raw) == (p, 1, 5, "pty-1", 9, 700)
        p.committed_through(epoch, n)                   # as the writer does after COMMIT
        assert board.frame() == (frames.ACK, (5, 2))
    finally:
        t.stop()
        board.close()
