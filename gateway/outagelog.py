"""What the log says about a database outage: its first messages, then at most one line a minute, then its end.

The writer retries every few hundred milliseconds while the database is away, and each failure's message can differ
from the last (a Galera look-up names every node and why it is unusable, and a far node's error flips between
"cannot connect" and "lost connection"), so logging each new text meant 4 warnings a second, 600 characters each,
for as long as a site was cut off. Here an outage gets its first `first` distinct messages, then one line per
`repeat_s` with the latest message and how many failures were not logged, and one line when it ends, with how
long it lasted. A failure of another kind (a configuration error after an unreachable server) is logged at once.
The status snapshot always has the latest message (the writer keeps it); only the log is thinned.
"""

import logging
import time

FIRST = 3
REPEAT_S = 60.0


class OutageLog:
    def __init__(self, logger, what, first=FIRST, repeat_s=REPEAT_S, clock=time.monotonic):
        self.log = logger
        self.what = what
        self.first = first
        self.repeat_s = repeat_s
        self._clock = clock
        self._began = None            # clock time of the outage's first failure; None while all is well
        self._said = []               # texts logged in this outage
        self._said_at = None
        self._kind = None
        self._quiet = 0               # failures not logged since the last line

    def failed(self, err, level=logging.WARNING):
        """One failed attempt: logged when it is news (see the module's docstring)."""
        text = str(err)
        now = self._clock()
        if self._began is None:
            self._began = now
        kind = type(err)
        if text in self._said and kind is self._kind and now - self._said_at < self.repeat_s:
            self._quiet += 1
            return
        if kind is self._kind and len(self._said) >= self.first and now - self._said_at < self.repeat_s:
            self._quiet += 1
            return
        if self._quiet:
            self.log.log(level, "%s: %s (failed %d more times since the last line)", self.what, text,
                         self._quiet)
        else:
            self.log.log(level, "%s: %s", self.what, text)
        self._said.append(text)
        self._said_at = now
        self._kind = kind
        self._quiet = 0

    def recovered(self):
        """The outage is over: one line saying how long it lasted (nothing when no outage was under way)."""
        if self._began is None:
            return
        self.log.info("%s is back after %.1f s", self.what, self._clock() - self._began)
        self._began = self._said_at = self._kind = None
        self._said = []
        self._quiet = 0
