"""The simulation port: the portable core on CPython over the simulated chips in tools/simhw."""
