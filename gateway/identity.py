"""Which board owns each board id: the gateway's registry of identities, shared by every port.

A board id is a setting, so two boards can be given the same one (two Feathers flashed with one default). A
reading's identity is (board, boot, seq): with one id, two boards' readings collide, and a collision looks like a
reading already stored, so the board would be told to forget a reading that never reached a row (issue 11). The
hello therefore carries the board's hardware uid (soil.codec), and the first uid to say hello with an id owns it,
recorded in `boards.uid` (ReadingStore.claim_identity, one statement, so two ports or two gateways agree).

Another uid with the same id is refused: its hello is not confirmed, so nothing of it is acknowledged and the board
keeps every reading on its card. The gateway says so once, in one log line, one `board_events` row
(`identity_collision`) and its status, naming both boards' uids and ports. Nothing is deleted: once the operator
renames the refused board, its kept readings are sent under the new id.
"""

import logging
import threading
import time

from gateway.dbconn import DatabaseError

log = logging.getLogger("gateway.identity")

RECHECK_S = 10.0     # a refused (board, uid) is checked against the boards table again at most this often


class IdentityRegistry:
    """`claim(session, board, uid)` -> None when `uid` may use `board` on the session's port, else the reason
    (text) it may not. `store` is a ReadingStore of its own (the writer's connection belongs to the writer thread);
    the ports' threads call claim, one at a time."""

    def __init__(self, store, now=time.monotonic):
        self._store = store
        self._now = now
        self._lock = threading.Lock()
        self._owners = {}        # board id -> (uid, port) of the board that owns it
        self._refused = {}       # (board, uid) -> [reason, checked_at, recorded in board_events]
        self.alerts = []         # one dict per collision, for the gateway's status
        self._last_error = None  # the database error last logged (said once, not at every hello)

    def claim(self, session, board, uid):
        port = session.cfg.name
        with self._lock:
            owner = self._owners.get(board)
            if owner is not None and owner[0] == uid:
                self._owners[board] = (uid, port)
                return None
            seen = self._refused.get((board, uid))
            if seen is not None and self._now() - seen[1] < RECHECK_S:
                self._record(board, seen)
                return seen[0]
            try:
                owner_uid, owner_port = self._store.claim_identity(board, uid, port)
            except DatabaseError as e:
                if str(e) != self._last_error:
                    self._last_error = str(e)
                    log.warning("board id %s cannot be checked against the boards table yet (%s): nothing is "
                                "acknowledged to it until it can", board, e)
                return "board id %s cannot be checked against the boards table yet (%s)" % (board, e)
            self._last_error = None
            if owner_uid == uid:
                self._owners[board] = (uid, port)
                self._refused.pop((board, uid), None)
                return None
            if owner is not None and owner[0] == owner_uid:
                owner_port = owner[1]
            if seen is None:
                seen = self._refused[(board, uid)] = [None, 0.0, False]
                reason = ("board id %s is used by two boards: uid %s on port %s owns it, uid %s on port %s is "
                          "refused; its readings stay on its card, unacknowledged, until it is renamed"
                          % (board, owner_uid, owner_port, uid, port))
                seen[0] = reason
                log.error("identity collision: %s", reason)
                self.alerts.append({"alert": "identity_collision", "board": board, "owner_uid": owner_uid,
                                    "owner_port": owner_port, "refused_uid": uid, "refused_port": port})
            seen[1] = self._now()
            self._record(board, seen)
            return seen[0]

    def close(self):
        self._store.close()

    def _record(self, board, seen):
        """The board_events row, once; tried again at the next hello while the database cannot take it."""
        if seen[2]:
            return
        try:
            self._store.add_board_event(board, "identity_collision", seen[0][:255])
            seen[2] = True
        except DatabaseError:
            pass
