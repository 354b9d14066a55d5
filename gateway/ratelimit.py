"""Repeated warnings per port, rate limited: a babbling cable must not fill a Pi's SD card with its log.

110,000 garbage lines in 108 s once became 109,634 warnings, 21.6 MB of log. `RepeatLimiter` is a logging filter the
gateway puts on its per-port loggers (gateway.protocol, gateway.transport): a warning whose message starts with the
port (`"%s: ..." % port`) passes FIRST times per INTERVAL_S for that port and message; the rest are counted, and one
summary line per port and message says how many were left out once its interval is over. The counts stay in the
status snapshot (`warnings_suppressed` per port); what the lines were about is counted there too (`bad_frames`).
"""

import logging
import threading
import time

FIRST = 5
INTERVAL_S = 60.0


class RepeatLimiter(logging.Filter):
    def __init__(self, first=FIRST, interval_s=INTERVAL_S, clock=time.monotonic):
        super().__init__()
        self.first = first
        self.interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._windows = {}             # (logger name, port, message) -> [window start, passed, suppressed]
        self._suppressed = {}          # port -> warnings left out so far

    def suppressed(self, port):
        """How many warnings about `port` were left out since the gateway started."""
        return self._suppressed.get(port, 0)

    def filter(self, record):
        if record.levelno != logging.WARNING or not isinstance(record.msg, str) or \
                not record.msg.startswith("%s: ") or not isinstance(record.args, tuple) or not record.args:
            return True
        port = record.args[0]
        key = (record.name, port, record.msg)
        now = self._clock()
        summary = None
        with self._lock:
            w = self._windows.get(key)
            if w is None or now - w[0] >= self.interval_s:
                if w is not None and w[2]:
                    summary = (key, w[2], now - w[0])
                self._windows[key] = [now, 1, 0]
                passed = True
            elif w[1] < self.first:
                w[1] += 1
                passed = True
            else:
                w[2] += 1
                self._suppressed[port] = self._suppressed.get(port, 0) + 1
                passed = False
        if summary is not None:
            self._say(*summary)
        return passed

    def flush(self):
        """Summaries for every interval that is over: called now and then (the gateway's status loop), so the
        count of a burst that stopped is still said."""
        now = self._clock()
        due = []
        with self._lock:
            for key, w in list(self._windows.items()):
                if now - w[0] >= self.interval_s:
                    if w[2]:
                        due.append((key, w[2], now - w[0]))
                    del self._windows[key]
        for item in due:
            self._say(*item)

    @staticmethod
    def _say(key, count, span_s):
        name, port, msg = key
        logging.getLogger(name).warning("%s: %d more warnings like %r left out in the last %.0f s (counted in the "
                                        "status: warnings_suppressed)", port, count, msg[4:60], span_s)
