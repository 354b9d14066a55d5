"""The rp2 tests' handle on the virtual Pico: tools/sim/vpico/proc.py (shared with the bench)."""

from tools.sim.vpico.proc import REPO, VPico, mpremote, wait_for  # noqa: F401
