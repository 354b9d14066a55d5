# boot.py of the virtual MicroPython board (tools/sim/mpboard); `make flash BOARD=sim` deploys it, a real board
# never gets it. It fits the simulated board's parts (tools/sim/micropython/board/simboard.py): a DS1307 on the
# RTC's I2C bus, an SD card in the slot with os.VfsFat over it (the WebAssembly MicroPython has no VfsFat of its
# own: without this, main.py stops with "module 'os' has no attribute 'VfsFat'"), and a soil probe on the ADC.
# It needs the board started with `--path tools/sim/micropython/board --package chips=tools/sim/chips`.
import time

try:
    import simboard
except ImportError:
    simboard = None
    print("boot.py: no simulated hardware: start the board with --path tools/sim/micropython/board "
          "--package chips=tools/sim/chips")
if simboard is not None:
    simboard.fit(time.ticks_ms)
