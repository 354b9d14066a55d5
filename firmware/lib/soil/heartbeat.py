"""The heartbeat between a master and a standby collector over a dedicated I2C wire (the book's Listing 8-6, fixed).

The standby is an I2C target in "memory mode" (MicroPython's `machine.I2CTarget(mem=...)`, CircuitPython's
`i2ctarget` behind the same interface, the simulation's `MemTarget`). Its memory has two records:

    0x00..0x5F  beat    written by the master every interval: who it is, its boot, its last sample (seq and
                        time), whether its uplink works, and whether it is active or returning after a reset
    0x60..0x8F  status  read by the master after each beat: the standby's state, since when it has been active,
                        and the time from which it hands the sampling back

Both records are text with a CRC (`B1,...*crc\\n`, `S1,...*crc\\n`) so a torn or half-updated record is rejected,
and a logic analyser shows them as readable ASCII.

This module is the wire's layout, the states and the record envelope. Each side's code lives with its role, so a
board loads only its own side: soil.master writes beats and reads the status (`encode_beat`, `decode_status`),
soil.standby reads beats and writes the status (`decode_beat`, `encode_status`, `Watchdog`, `Mailbox`).
"""

from soil.crc import crc32_hex

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

ADDRESS = const(8)
MEM_SIZE = const(144)
BEAT_OFF = const(0)
BEAT_LEN = const(96)
STATUS_OFF = const(96)
STATUS_LEN = const(48)

# The states, written as these literals by the roles (a named constant would be a global, and a name, in a board's
# RAM):
#   "watching"    standby: the master is alive, samples go to the ring
#   "asking"      standby: no beat for the timeout; asking the gateway (the witness)
#   "active"      collecting and publishing
#   "handback"    standby: the master is back; publishing until the agreed hand-back time
#   "returning"   master: back after a reset while the standby is active; waiting for the hand-back
STATES = ("watching", "asking", "active", "handback", "returning")


def seal(body):
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
