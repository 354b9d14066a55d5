"""CircuitPython boot.py: runs once after a hard reset, before USB is set up.

1. A second USB serial port for the gateway. `usb_cdc.data` carries the protocol's frames (docs/PROTOCOL.md), so
   the console (REPL, `print`, tracebacks) stays free for a person at the bench. On Linux the two ports are
   /dev/serial/by-id/usb-Adafruit_..._<serial>-if00 (console) and ...-if02 (data): give the gateway the -if02 one.

2. CIRCUITPY stays writable from USB, read-only to the board (CircuitPython's default; no storage.remount here).
   Everything the board writes goes to the SD card (the journal, the boot-counter slot) or the DS1307's NVRAM
   (the boot counter, the clock marker), never to the internal flash. So a person can edit settings.toml or
   update the code over USB at any time, and the FAT on the flash is never written from two sides at once (which
   is what corrupts it when the board also gets write access while a computer has the drive mounted).
"""

import usb_cdc

usb_cdc.enable(console=True, data=True)
