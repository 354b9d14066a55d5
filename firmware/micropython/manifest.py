# Freezes the portable core and this port's adapter into a MicroPython firmware image, so their bytecode, constants
# and names run from flash and only their objects take heap (docs/MICROPYTHON.md, "A firmware image with the core
# frozen"). In MicroPython's source tree (v1.27), with this repository at SOIL:
#
#     make -C ports/rp2 BOARD=RPI_PICO submodules
#     make -C ports/rp2 BOARD=RPI_PICO FROZEN_MANIFEST=$SOIL/firmware/micropython/manifest.py
#     make -C ports/esp32 BOARD=ESP32_GENERIC FROZEN_MANIFEST=$SOIL/firmware/micropython/manifest.py   # ESP-IDF set up
#
# then flash the image (rp2: copy build-RPI_PICO/firmware.uf2 to the RPI-RP2 drive) and copy only main.py and
# config.json: `make flash ... FLASH_ARGS=--frozen` does that. Paths here are relative to this file.

# What the port's stock image freezes (asyncio, onewire, dht, ...). A Pico W's board manifest adds the network
# stack: use include("$(BOARD_DIR)/manifest.py") there if you want it; this firmware talks over USB only.
include("$(PORT_DIR)/boards/manifest.py")

# micropython-lib's SD card driver (hal.Card imports `sdcard`); on a card-less bench board it costs nothing.
require("sdcard")

# The portable core, every module (firmware/lib/soil), at -O3 as make flash compiles it.
package("soil", base_path="../lib", opt=3)

# The MicroPython adapter. main.py stays a file on the board: it is tiny, and config.json lives beside it.
module("hal.py", opt=3)
module("boards.py", opt=3)
module("startup.py", opt=3)
module("boardmain.py", opt=3)
