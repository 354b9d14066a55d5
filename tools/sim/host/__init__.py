"""The host side of the simulation (CPython only): what connects the chip models (tools/sim/chips) to the processes of
a bench, and what only a host process has.

    i2c.py        the virtual I2C bus and the controller APIs the firmware and Adafruit's drivers use
    i2cnet.py     that bus between processes (a pair's heartbeat wire over a Unix socket)
    i2ctarget.py  a memory-mode I2C target (the standby's side of the wire), with its handler timed (flaw F11)
    ptylink.py    the serial line: a real pseudo-terminal, paced at the baud rate
    adc.py        the soil-moisture probe on an ADC input
    ds1307.py     the DS1307 model with a JSON state file: a new process is the next power-up
    sdcard.py     the SD card model over a host folder, with a fault control file a test writes
"""
