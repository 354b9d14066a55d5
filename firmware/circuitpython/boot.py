"""CircuitPython boot.py: runs once after a hard reset, before USB is set up.

1. A second USB serial port for the gateway. `usb_cdc.data` carries the protocol's frames (docs/PROTOCOL.md), so
   the console (REPL, `print`, tracebacks) stays free for a person at the bench. On Linux the two ports are
   /dev/serial/by-id/usb-Adafruit_..._<serial>-if00 (console) and ...-if02 (data): give the gateway the -if02 one.

2. CIRCUITPY stays writable from USB, read-only to the board (CircuitPython's default), unless settings.toml says
   `SOIL_FLASH_FALLBACK = 1`. By default everything the board writes goes to the SD card (the journal, the
   boot-counter slot) or the DS1307's NVRAM, never to the internal flash, so a person can edit settings.toml or
   update the code over USB at any time, and the FAT on the flash is never written from two sides at once (which
   is what corrupts it when the board also gets write access while a computer has the drive mounted). The price:
   while the card is away, readings wait in RAM, and a power cut loses them (code.py says so in one line).
   With `SOIL_FLASH_FALLBACK = 1` this file remounts CIRCUITPY writable for the board, so the fallback journal
   keeps them in /fallback on the internal flash instead; the computer then sees the drive read-only. To edit it
   over USB again, start the board in safe mode (boot.py does not run there) and set the line to 0.
"""

import os

import storage
import usb_cdc

usb_cdc.enable(console=True, data=True)
if os.getenv("SOIL_FLASH_FALLBACK") == 1:
    storage.remount("/", readonly=False)
