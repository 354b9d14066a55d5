"""Keeping a board's clock right (flaw F3): whether it needs setting, and the T frame sent on a second boundary.

A board's DS1307 is only ever set by the gateway's `T` frame (docs/PROTOCOL.md). Every hello and status carries the
board's clock time and state; this policy decides from them, against the gateway's own clock, whether to set it.
It is a class of its own so the rule and the timing can be tested with a fake clock and a fake timer, without a
port or a protocol, and so nothing else in the gateway decides when a board's clock is set.
"""

import threading
import time

from gateway import frames
from soil import utc


class ClockKeeper:
    """Sets one board's clock when it is not running right (`clock` is not `ok`), cannot be read, or is more than
    `tolerance_s` away from `now()`; at most one setting is under way at a time.

    The DS1307 counts whole seconds and restarts its second when set, so the T frame goes out on the gateway's
    next second boundary carrying that second: the board's clock then agrees with ours to a few milliseconds.

    `now()` is the gateway's clock (seconds since the epoch, UTC). `timer(delay_s, fn, args)` has the signature of
    threading.Timer and returns an object with daemon, start() and is_alive(); a test hands in one it fires."""

    def __init__(self, tolerance_s=2.0, now=time.time, timer=threading.Timer):
        self.tolerance_s = tolerance_s
        self._now = now
        self._timer = timer
        self._pending = None          # the timer of the T frame not yet sent
        self.offset_s = None          # the board's clock minus ours at the last check (whole seconds: the DS1307's
                                      # resolution); None before the first or when the board's time was unreadable

    def needs_setting(self, rtc_time, clock):
        """Does a board that reports `rtc_time` ('YYYY-MM-DDTHH:MM:SSZ') and clock state `clock` need setting?"""
        off = None
        try:
            off = utc.to_epoch(utc.parse_iso(rtc_time)) - self._now()
        except ValueError:
            pass
        self.offset_s = off
        return clock != "ok" or off is None or abs(off) > self.tolerance_s

    @property
    def setting(self):
        """A T frame is scheduled and not yet sent."""
        return self._pending is not None and self._pending.is_alive()

    def check(self, rtc_time, clock, send):
        """Schedule `send(T frame)` on the next second boundary if the board's clock needs setting and no setting
        is under way. Returns True when it scheduled one."""
        if not self.needs_setting(rtc_time, clock) or self.setting:
            return False
        now = self._now()
        boundary = int(now) + 1
        timer = self._timer(boundary - now, send, (frames.settime(utc.iso(time.gmtime(boundary)[:6])),))
        timer.daemon = True
        timer.start()
        self._pending = timer
        return True
