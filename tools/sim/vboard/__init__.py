"""The virtual board: the firmware's portable core on CPython, on the simulated chips, behind a real pseudo-terminal.

    python -m tools.sim.vboard --board b1 --state run/boards/b1      # board.py: the entry point and its control socket
                                                                     # hal.py: the simulation's HAL
"""
