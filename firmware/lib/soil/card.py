"""What the core expects of a card: the error numbers of the `card` interface (docs/ARCHITECTURE.md).

Every HAL's card raises `OSError` with these Linux numbers whatever its driver said (micropython-lib's `sdcard`
raises `OSError("timeout ...")` with text only; the WebAssembly port's own filesystem uses WASI numbers), so the
journal, the slot files and the collector tell a missing file from a full, pulled or failing card the same way on
every board. `errno` modules cannot help: no port's has ENOSPC.
"""

from soil import const

ENOENT = const(2)    # no such file
EIO = const(5)       # the card failed
ENODEV = const(19)   # no card (pulled, never there, not answering)
ENOSPC = const(28)   # the card is full


def errno_of(exc):
    """The error number of OSError `exc`, or None (CPython keeps it in `errno`, MicroPython in `args[0]`)."""
    code = getattr(exc, "errno", None)
    if code is None and exc.args and isinstance(exc.args[0], int):
        code = exc.args[0]
    return code
