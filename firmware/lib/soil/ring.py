"""Publishing the ring: the samples a collector kept in RAM while the other collector of its pair published.

A standby publishes the samples later than the master's last one when it takes over; a master that comes back
publishes those from the agreed hand-back time on. Both are rare moments, so this is a module of its own that the
roles load for the call (soil.ondemand) instead of holding it in RAM; the ring itself is filled by
`Collector.sample`.
"""

from soil import timefmt


def publish(c, after_epoch, from_epoch):
    """Publish collector `c`'s ring samples later than `after_epoch` and not earlier than `from_epoch` (either may be
    None: no bound), oldest first, then empty the ring and publish live samples from `from_epoch` on. Returns how
    many were published. They go out as cached readings (flag C), not live ones."""
    n = 0
    for epoch, raw, flags in c.ring:
        if (after_epoch is None or epoch > after_epoch) and (from_epoch is None or epoch >= from_epoch):
            c._publish(epoch, timefmt.from_epoch(epoch), raw, flags)
            n += 1
    c.ring = []
    c.publish_from = from_epoch
    return n
