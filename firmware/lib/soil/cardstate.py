"""The collector's card state when the card fails, and the retry that brings it back (flaw F6: a failing card is
reported, and readings wait in RAM, never vanish).

Its own module because a board needs it only when its card misbehaves: the collector loads it for the call
(soil.ondemand) instead of holding it in RAM.
"""

try:
    from micropython import const
except ImportError:  # CPython, CircuitPython without the micropython module
    def const(x):
        return x

_ENODEV = const(19)
_ENOSPC = const(28)


def failed(c, err):
    """Collector `c`'s card raised OSError `err`: 'full' (ENOSPC), 'absent' (ENODEV: pulled or never there) or
    'error'; logged. Until the card works again, readings wait in RAM."""
    code = err.args[0] if err.args else 0
    if code == _ENOSPC:
        c.card_state = "full"
    elif code == _ENODEV:
        c.card_state = "absent"
    else:
        c.card_state = "error"
    if c._log:
        c._log("card: %s (%r)" % (c.card_state, err))


def retry(c):
    """Open the journal again (a card pushed back in is mounted again by the HAL): 'ok' if it works."""
    try:
        c.journal.open()
        c.card_state = "ok"
    except OSError as e:
        failed(c, e)
