"""Portable core of the soil-moisture logger.

Pure Python that runs unchanged on MicroPython, CircuitPython and CPython. Nothing here imports a platform
module: the bus, clock, card and serial link are handed in by a port's entry point, which builds its hardware
once and calls `soil.board.build` (docs/ARCHITECTURE.md has the table of modules and their jobs).

The package itself holds the library's version and the one `const` every module uses.
"""

__version__ = "0.2.0"

try:
    from micropython import const  # noqa: F401 - re-exported: `from soil import const` in every module
except ImportError:  # CPython
    def const(x):
        """MicroPython's `const()`: folded by its compiler, the value itself elsewhere."""
        return x
