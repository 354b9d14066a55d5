"""A read-only local tap of what the gateway's ports carry, for `soil-gateway monitor --listen`.

A serial port has one reader: a monitor that opens the port beside the gateway takes bytes the gateway never sees
(and the gateway's port is locked against it, gateway/transport.py). Instead the gateway copies every byte it reads
from a board and every byte it writes to one into this tap, a Unix socket beside its status file
(/run/soil-gateway/tap.sock under the systemd unit), and the monitor reads the copy. Nothing a client does reaches
a board: the tap reads one request line and never reads again.

The conversation. The client sends one line, the port it wants (the URL or name of a `[[board]]`, or a path that
resolves to the same device). The tap answers `ok NAME\\n`, or `error: ...\\n` and hangs up. After `ok` it sends
records: one byte of direction (`<` from the board, `>` to it), a 4-byte big-endian length, then that many bytes.
A client that cannot keep up loses records (at most MAX_QUEUED_BYTES wait for it), never slows the gateway down.
"""

import logging
import os
import socket
import struct
import threading

log = logging.getLogger("gateway.tap")

MAX_QUEUED_BYTES = 1 << 20
RECORD = struct.Struct(">cI")
_SEND_TIMEOUT_S = 5.0


class _Client:
    def __init__(self, conn, port_name):
        self.conn = conn
        self.port_name = port_name
        self.queue = []
        self.queued = 0
        self.lost = 0
        self.closed = False
        self.cv = threading.Condition()

    def offer(self, direction, data):
        with self.cv:
            if self.queued + len(data) > MAX_QUEUED_BYTES:
                self.lost += len(data)
                return
            self.queue.append(RECORD.pack(direction, len(data)) + bytes(data))
            self.queued += len(data)
            self.cv.notify()

    def close(self):
        with self.cv:
            self.closed = True
            self.cv.notify()

    def pump(self):
        try:
            while True:
                with self.cv:
                    self.cv.wait_for(lambda: self.queue or self.closed)
                    if self.closed:
                        return
                    chunk, self.queue, self.queued = b"".join(self.queue), [], 0
                self.conn.sendall(chunk)
        except OSError:
            pass
        finally:
            self.closed = True
            try:
                self.conn.close()
            except OSError:
                pass


class LineTap:
    """`publish(port_name, direction, data)` from any transport thread; `start()` / `stop()`."""

    def __init__(self, path):
        self.path = path
        self._ports = []               # (name, url) of every port the gateway serves
        self._clients = []
        self._lock = threading.Lock()
        self._sock = None
        self._thread = None
        self._bound = False            # the socket file is ours to remove

    def add_port(self, name, url):
        self._ports.append((name, url))

    def check(self):
        """Can the tap be served at its path? Removes a socket file left by a killed gateway; OSError when a
        running one answers there, or the folder is missing."""
        _remove_stale_socket(self.path)
        folder = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(folder):
            raise OSError("%s: no such folder for the tap" % folder)

    def start(self):
        self.check()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(self.path)
        except OSError:
            sock.close()
            raise
        self._bound = True
        os.chmod(self.path, 0o660)
        sock.listen(8)
        self._sock = sock
        self._thread = threading.Thread(target=self._accept, name="tap", daemon=True)
        self._thread.start()
        log.info("tap on %s (soil-gateway monitor --listen URL --tap %s)", self.path, self.path)

    def stop(self):
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            clients, self._clients = self._clients, []
        for c in clients:
            c.close()
        if self._bound:
            self._bound = False
            try:
                os.remove(self.path)
            except OSError:
                pass

    def publish(self, port_name, direction, data):
        with self._lock:
            clients = [c for c in self._clients if c.port_name == port_name]
            if any(c.closed for c in self._clients):
                self._clients = [c for c in self._clients if not c.closed]
        for c in clients:
            c.offer(direction, data)

    def find(self, wanted):
        """The name of the served port that `wanted` (a URL, name or path to the same device) means, or None."""
        for name, url in self._ports:
            if wanted in (name, url):
                return name
        real = os.path.realpath(wanted)
        for name, url in self._ports:
            if "://" not in url and os.path.realpath(url) == real:
                return name
        return None

    def _accept(self):
        while True:
            sock = self._sock
            if sock is None:
                return
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), name="tap-client", daemon=True).start()

    def _serve(self, conn):
        try:
            conn.settimeout(_SEND_TIMEOUT_S)
            request = b""
            while b"\n" not in request and len(request) < 4096:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                request += chunk
            wanted = request.split(b"\n", 1)[0].decode(errors="replace").strip()
            name = self.find(wanted) if wanted else None
            if name is None:
                served = ", ".join(n for n, _ in self._ports) or "none"
                conn.sendall(("error: this gateway does not serve %s (it serves: %s)\n" % (wanted or "(nothing)",
                                                                                          served)).encode())
                conn.close()
                return
            conn.sendall(("ok %s\n" % name).encode())
            conn.shutdown(socket.SHUT_RD)              # read-only: nothing a client sends goes anywhere
        except OSError:
            conn.close()
            return
        client = _Client(conn, name)
        with self._lock:
            self._clients.append(client)
        client.pump()


def _remove_stale_socket(path):
    """A socket file left by a gateway that was killed: remove it; one that answers belongs to a running gateway."""
    if not os.path.exists(path):
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        os.remove(path)
        return
    finally:
        probe.close()
    raise OSError("%s: another gateway is serving a tap here" % path)


def listen(path, wanted, timeout=5.0):
    """Connect to a gateway's tap for the port `wanted`; returns (socket, port name) or raises OSError with a
    sentence saying why."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except OSError as e:
        sock.close()
        raise OSError("no gateway tap at %s (%s): is the gateway running? Its tap is beside its --status file, or "
                      "[gateway] tap_path; give it with --tap PATH" % (path, e.strerror or e))
    sock.sendall(wanted.encode() + b"\n")
    answer = b""
    while not answer.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        answer += chunk
    text = answer.decode(errors="replace").strip()
    if not text.startswith("ok "):
        sock.close()
        raise OSError("gateway tap %s: %s" % (path, text[len("error: "):] if text.startswith("error: ") else
                                                  (text or "no answer")))
    sock.settimeout(None)
    return sock, text[3:]


def records(sock, tick_s=0.2):
    """(direction, bytes) records from a tap socket until it closes; (None, b"") every `tick_s` without any, so a
    caller can keep a deadline."""
    buf = b""
    sock.settimeout(tick_s)
    while True:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            yield None, b""
            continue
        if not chunk:
            return
        buf += chunk
        while len(buf) >= RECORD.size:
            direction, size = RECORD.unpack_from(buf)
            if len(buf) < RECORD.size + size:
                break
            yield direction, buf[RECORD.size:RECORD.size + size]
            buf = buf[RECORD.size + size:]
