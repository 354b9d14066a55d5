"""Setting the board's clock on the gateway's word (a `T` frame), never on its own (flaw F3).

Its own module because it runs once per new battery or clock fault: the collector loads it for the call
(soil.ondemand) instead of holding it in RAM.
"""

from soil.timeparse import parse_iso


def set_clock(c, iso_time):
    """Set collector `c`'s RTC to `iso_time` (`YYYY-MM-DDTHH:MM:SSZ`) and send a status frame with the new clock
    state. A time that does not parse is ignored (the codec checked its shape; Feb 30 still gets here); a clock
    that refuses it is logged, and the status frame tells the gateway, which sets it again."""
    try:
        tm = parse_iso(iso_time)
    except ValueError:
        return
    try:
        c.rtc.set_datetime(tm)
    except (OSError, ValueError) as e:
        if c._log:
            c._log("rtc: cannot set the clock (%r)" % (e,))
    c.send_status()
