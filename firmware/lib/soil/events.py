"""The frames only a collector of a redundant pair sends, now and then: events (`E`: takeover, hand-back, standby
missing or back) and witness queries (`V`: does the gateway still hear the master?). docs/PROTOCOL.md has both.

Their own module because they are rare: the roles (soil.master, soil.standby) send them through soil.ondemand,
which loads this module for the call, so a board does not hold their code in RAM. soil.frames re-exports the two
encoders for the gateway and the tests.
"""

from soil import utc
from soil.wire import encode

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

_MAX_DETAIL = const(60)


def event(name, detail, board_time):
    """A collector event. `detail` is free text, made safe for a frame: separators and control characters become
    spaces, and it is cut to 60 characters."""
    clean = ""
    for ch in detail[:_MAX_DETAIL]:
        clean += " " if (ch in ",*$" or ch < " " or ch > "~") else ch
    return encode("E", (name, clean, board_time))


def witness_query(master_id):
    """A standby asks the gateway: do you still hear this master?"""
    return encode("V", (master_id,))


def send_event(c, name, detail):
    """Send event `name` from collector `c`, stamped with its clock, and log it."""
    tm, _ = c.read_clock()
    c.uplink.send_control(event(name, detail, utc.iso(tm)))
    if c._log:
        c._log("event %s: %s" % (name, detail))


def send_witness_query(c, master_id):
    c.uplink.send_control(witness_query(master_id))
