"""A site's link to another site's database node, on loopback: a TCP relay that can be cut and mended.

Why: on one machine every node's SQL port is reachable from every gateway, so isolating a node's group
communication (gmcast.isolate) alone leaves its site's gateway free to write to the far nodes, which a site whose
network link failed could not do. A site's gateway reaches its own node directly and each far node through one of
these relays; cutting a site cuts its relays as well, and then the site has only its own node, outside the quorum.

    link = WanLink(target_port=3307)      # listens on 127.0.0.1:link.port, forwards to 127.0.0.1:3307
    link.cut()                            # live connections are reset, new ones are refused
    link.mend()
    link.close()

A cut link accepts and at once resets new connections (RST, as an unreachable route answers a local stack), so the
gateway's connect fails in milliseconds rather than after its connect timeout.
"""

import selectors
import socket
import struct
import threading

_CHUNK = 65536


def _reset(sock):
    """Close with RST (SO_LINGER 0): the peer sees "connection reset", not a clean end of stream."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class WanLink:
    """One relay thread: accepts on a free loopback port, pipes bytes both ways to the target port."""

    def __init__(self, target_port, target_host="127.0.0.1"):
        self.target = (target_host, int(target_port))
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.setblocking(False)
        self.port = self._listener.getsockname()[1]
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._listener, selectors.EVENT_READ, None)
        self._peer = {}                  # socket -> the socket it pipes to
        self._lock = threading.Lock()
        self._cut = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="wan-link-%d" % self.port, daemon=True)
        self._thread.start()

    @property
    def is_cut(self):
        return self._cut

    def cut(self):
        """From now on the link carries nothing: open connections are reset, new ones refused."""
        with self._lock:
            self._cut = True
        self._wake()

    def mend(self):
        with self._lock:
            self._cut = False

    def close(self):
        self._closed = True
        self._wake()
        self._thread.join(5)

    def _wake(self):
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def _drop(self, sock):
        other = self._peer.pop(sock, None)
        for s in (sock, other):
            if s is None:
                continue
            self._peer.pop(s, None)
            try:
                self._sel.unregister(s)
            except (KeyError, ValueError):
                pass
            _reset(s)

    def _accept(self):
        try:
            client, _ = self._listener.accept()
        except (BlockingIOError, OSError):
            return
        if self._cut:
            _reset(client)
            return
        try:
            server = socket.create_connection(self.target, timeout=5)
        except OSError:
            _reset(client)               # the far node is down: the gateway sees the connection fail
            return
        for s in (client, server):
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._peer[client], self._peer[server] = server, client
        self._sel.register(client, selectors.EVENT_READ, "pipe")
        self._sel.register(server, selectors.EVENT_READ, "pipe")

    def _pipe(self, sock):
        other = self._peer.get(sock)
        if other is None:
            return
        try:
            data = sock.recv(_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop(sock)
            return
        try:
            other.setblocking(True)      # a loopback peer drains at once; blocking keeps the relay simple
            other.sendall(data)
            other.setblocking(False)
        except OSError:
            self._drop(sock)

    def _run(self):
        try:
            while not self._closed:
                if self._cut:
                    for s in list(self._peer):
                        self._drop(s)
                for key, _ in self._sel.select(0.5):
                    if key.data is None:
                        self._accept()
                    elif key.data == "wake":
                        try:
                            self._wake_r.recv(64)
                        except OSError:
                            pass
                    else:
                        self._pipe(key.fileobj)
        finally:
            for s in list(self._peer):
                self._drop(s)
            for s in (self._listener, self._wake_r, self._wake_w):
                s.close()
            self._sel.close()
