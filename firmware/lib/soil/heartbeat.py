"""A redundant pair: two collectors, one series of readings, no gap and no double when either side fails.

Both boards sample all the time. Only the *active* one publishes (journal + uplink); the other keeps its samples
in a bounded RAM ring (soil.collector). That ring is what closes the gap: when a standby takes over, it publishes
what it sampled since the master's last stored sample, so the database has no missing slot across the failover.

This module is what both sides share: the heartbeat wire's layout, the record envelope and the pair's states.
Each side's code lives with its role, so a board loads only its own: soil.master (writes beats, reads the
standby's status) and soil.standby (reads beats, writes its status, decides takeovers and hand-backs).

The wire (the book's Listing 8-6, fixed) is a dedicated I2C bus. The standby is an I2C target in "memory mode"
(MicroPython's `machine.I2CTarget(mem=...)`, CircuitPython's `i2ctarget` behind the same interface, the
simulation's `MemTarget`). Its memory has two records:

    0x00..0x5F  beat    written by the master every interval and before it publishes a sample: who it is, its
                        boot and seq, the newest second it claims (it publishes no second it has not claimed),
                        whether its uplink works, and whether it is active or returning after a reset
    0x60..0x8F  status  read by the master after each beat: the standby's state and the seconds it publishes,
                        after `since` and before `until` (0: no end yet; kept after a hand-back, `until` then
                        one past the last second it published)

Who publishes a second is decided by these records at the moment of publishing, never by how promptly a loop
runs: the master publishes a second only if the status it read after claiming it leaves it to the master
(soil.master.owner), and the standby writes `asking` before it asks the gateway and takes over strictly after the
master's claim as the memory holds it then (docs/REDUNDANCY.md, "Who publishes which second").

Both records are text with a CRC (`B1,...*crc\\n`, `S1,...*crc\\n`) so a torn or half-updated record is rejected,
and a logic analyser shows them as readable ASCII.

The standby's decisions (also in docs/REDUNDANCY.md):

| heartbeat | gateway (witness) says | standby does |
| --- | --- | --- |
| arriving | - | watch: ring only |
| silent for the timeout | master alive (only the wire is cut) | stay standby, ask again after another timeout |
| silent for the timeout | master dead, last stored sample T | take over: publish ring samples after T and the claim |
| silent for the timeout | no answer (gateway unreachable) | take over after the master's claim; rows say `standby` |
| arriving again while active | - | after a stable period pick a hand-back time H; publish samples before H, stop |
| silent while active | master alive (asked again every recheck period) | stand down to watching |

The master writes a beat every interval and reads the standby's status back. A NACK means the standby is gone
(flaw F12: the book ignored the result of the write): it reports `standby_missing`, and `standby_back` later.
After a reset it first reads the standby's status: if the standby is active, the master samples into its ring and
waits for the hand-back time H, then publishes its samples from H on (and any the standby did not publish).

All times here are the RTC's UTC epoch seconds (both clocks are set by the gateway); all durations are tick
differences.
"""

from soil import const
from soil.crc import crc32_hex

ADDRESS = const(8)
MEM_SIZE = const(144)
BEAT_OFF = const(0)
BEAT_LEN = const(96)
STATUS_OFF = const(96)
STATUS_LEN = const(48)

# The pair's states (a role's `state`, and the state field of both records):
WATCHING = const("watching")    # standby: the master is alive, samples go to the ring
ASKING = const("asking")        # standby: no beat for the timeout; asking the gateway (the witness)
ACTIVE = const("active")        # collecting and publishing
HANDBACK = const("handback")    # standby: the master is back; publishing until the agreed hand-back time
RETURNING = const("returning")  # master: back after a reset while the standby is active; waiting for the hand-back
STATES = (WATCHING, ASKING, ACTIVE, HANDBACK, RETURNING)


def seal(body):
    """A record from its body (bytes): `body*crc\\n`."""
    return body + b"*" + crc32_hex(body) + b"\n"


def unseal(buf):
    """The body of a sealed record in `buf` (bytes-like), or None if it is torn, stale garbage or corrupt."""
    data = bytes(buf)
    nl = data.find(b"\n")
    if nl < 0:
        return None
    star = data.rfind(b"*", 0, nl)
    if star < 0 or data[star + 1:nl] != crc32_hex(data[:star]):
        return None
    try:
        return data[:star].decode()
    except UnicodeError:
        return None
