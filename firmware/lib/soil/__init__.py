"""Portable core of the soil-moisture logger.

Pure Python that runs unchanged on MicroPython, CircuitPython and CPython. Nothing here imports a platform
module: the bus, clock, card and serial link are handed in by a port's entry point (see docs/ARCHITECTURE.md).
"""

VERSION = "0.1.0"
