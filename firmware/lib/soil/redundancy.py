"""Master and standby: two collectors, one series of readings, no gap and no double when either side fails.

Both boards sample all the time. Only the *active* one publishes (journal + uplink); the other keeps its samples
in a bounded RAM ring. That ring is what closes the gap: when a standby takes over, it publishes what it sampled
since the master's last stored sample, so the database has no missing slot across the failover.

Standby (decision table, also in docs/REDUNDANCY.md):

| heartbeat | gateway (witness) says | standby does |
| --- | --- | --- |
| arriving | - | watch: ring only |
| silent for the timeout | master alive (only the wire is cut) | stay standby, ask again after another timeout |
| silent for the timeout | master dead, last stored sample T | take over: publish ring samples after T, then live |
| silent for the timeout | no answer (gateway unreachable) | take over from the last beat's sample; rows say `standby` |
| arriving again while active | - | after a stable period pick a hand-back time H; publish samples before H, stop |
| silent while active | master alive (asked again every recheck period) | stand down to watching |

Master: it writes a beat every interval and reads the standby's status back. A NACK means the standby is gone
(flaw F12: the book ignored the result of the write): it reports `standby_missing`, and `standby_back` later.
After a reset it first reads the standby's status: if the standby is active, the master samples into its ring and
waits for the hand-back time H, then publishes its samples from H on.

All times here are the RTC's UTC epoch seconds (both clocks are set by the gateway); all durations are tick
differences.

Each role is its own module (soil.standby, soil.master) so a board loads only the code of the role it plays; this
module names both for code that wants either. The rare moments load their code when they come (soil.ondemand):
the standby's takeover, witness answers and hand-back (soil.takeover), publishing the ring (soil.ring), events and
witness queries (soil.events).
"""

from soil.master import MasterRole  # noqa: F401
from soil.standby import StandbyRole  # noqa: F401
