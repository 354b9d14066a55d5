"""A virtual MicroPython board on a pseudo-terminal: the real MicroPython interpreter (WebAssembly) behind a real
REPL, with a host folder as its flash. See README.md in this folder; `python -m tools.sim.mpboard --help`."""
