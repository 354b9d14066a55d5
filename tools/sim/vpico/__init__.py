"""The virtual Pico: the real rp2 MicroPython firmware on the rp2040js emulator, behind a pty (README.md)."""
