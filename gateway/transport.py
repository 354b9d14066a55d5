"""One board's serial port, kept open and read on a thread of its own, feeding a protocol.

This is the gateway's `serial.threaded.ReaderThread`: it knows ports, not frames. It opens the port by pyserial URL
(`serial.serial_for_url`, so `/dev/ttyACM0`, a pseudo-terminal, `loop://`, `socket://`, `spy://` and
`hwgrep://` all work the same), hands whatever arrives to `protocol.data_received`, serialises writes from the
protocol's callers under one lock, and when the port fails (a board unplugged or reset, a pty closed) tells the
protocol and opens it again with bounded backoff. What the bytes mean is gateway/protocol.py's business.
"""

import logging
import threading

import serial

log = logging.getLogger("gateway.transport")

READ_TIMEOUT_S = 0.5      # a read returns as soon as a byte arrives; this only bounds how long stop() waits
BACKOFF_FIRST_S = 0.2     # the first retry after a failure; doubles up to BACKOFF_MAX_S
BACKOFF_MAX_S = 5.0


class SerialTransport:
    """Reads `board_cfg.url` at `board_cfg.baudrate` into `protocol` (connection_made(transport),
    data_received(bytes), connection_lost(exc)); `write(frame)` is safe from any thread."""

    def __init__(self, board_cfg, protocol):
        self.cfg = board_cfg
        self.protocol = protocol
        self.port = None
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        self._thread = threading.Thread(target=self._run, name="board:%s" % self.cfg.name, daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.port is not None:
            try:
                self.port.close()
            except Exception:
                pass

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

    def _open(self):
        port = serial.serial_for_url(self.cfg.url, do_not_open=True)
        port.baudrate = self.cfg.baudrate
        port.timeout = READ_TIMEOUT_S
        port.open()
        self.port = port

    def _run(self):
        backoff = BACKOFF_FIRST_S
        while not self._stop.is_set():
            try:
                if self.port is None or not self.port.is_open:
                    self._open()
                    log.info("%s: port open", self.cfg.name)
                    backoff = BACKOFF_FIRST_S
                    self.protocol.connection_made(self)
                port = self.port
                data = port.read(max(1, port.in_waiting))
                if data:
                    self.protocol.data_received(data)
            except (serial.SerialException, OSError) as e:
                self.protocol.connection_lost(e)
                if self.port is not None:
                    try:
                        self.port.close()
                    except Exception:
                        pass
                    self.port = None
                log.warning("%s: %s; retrying in %.1f s", self.cfg.name, e, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
