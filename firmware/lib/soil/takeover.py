"""The standby's transitions (docs/REDUNDANCY.md has the table): the gateway's answer to a witness query, the
takeover (publish the ring after the master's last sample, then every sample), and the hand-back to a master that
came back.

Its own module because a standby runs it only when the master falls silent or returns: soil.ondemand loads it (with
the ring and event code it calls) for the call, and a standby that watches a healthy master holds none of it in
RAM. `role` is the soil.standby.StandbyRole whose state this changes; its `step()` decides when.
"""

from soil import timefmt
from soil.events import send_event
from soil.ring import publish


def on_witness(role, master_id, verdict, last_epoch):
    """The gateway's answer to a witness query (an `M` frame): `verdict` 'alive', 'dead' or 'unknown' about
    `master_id`, whose last sample the gateway has at `last_epoch` (None if it has none)."""
    if role.state == "asking":
        if verdict == "alive":
            role.state = "watching"
            role.watchdog.feed()              # ask again only after another full timeout
            role._publish_status()
        else:
            since = last_epoch if last_epoch else role.master_last_epoch
            take_over(role, since, "gateway: master %s" % verdict)
    elif role.state == "active" and verdict == "alive" and role._beats_since is None:
        # Active without beats, and the gateway hears the master: only the wire was cut. Stand down.
        role.c.publishing = False
        role.state = "watching"
        role.since = 0
        role.watchdog.feed()
        role._publish_status()
        send_event(role.c, "handback", "gateway hears master %s: standing down" % (master_id,))


def take_over(role, since, why):
    """Become the active collector: publish the ring's samples after `since` (the master's last sample, epoch
    seconds; all of them if None), then publish every sample."""
    c = role.c
    role.state = "active"
    role.since = since or 0
    role._beats_since = None
    role._last_check = c.ticks_ms()
    published = publish(c, since, None)   # what the master did not publish
    c.publishing = True
    role._publish_status()
    send_event(c, "takeover", "%s; %d ring samples after %s" % (why, published, _iso_or_dash(since)))


def start_handback(role):
    """The master has been beating again for `handback_after_ms`: agree on a hand-back time a margin from now
    (written to the status record, which the master reads), publish until then."""
    tm, _ = role.c.read_clock()
    role.handback_at = timefmt.to_epoch(tm) + role.handback_margin_s
    role.c.publish_until = role.handback_at
    role.state = "handback"
    role._publish_status()


def finish_handback(role):
    """The collector passed the hand-back time and stopped publishing: the master has it from here."""
    role.state = "watching"
    role.since = 0
    role.handback_at = 0
    role.watchdog.feed()
    role._publish_status()
    send_event(role.c, "handback", "master %s publishes from here" % (role.master_id,))


def _iso_or_dash(epoch):
    if not epoch:
        return "-"
    return timefmt.iso(timefmt.from_epoch(epoch))
