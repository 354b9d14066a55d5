"""The SD card model (tools/sim/chips/sdcard.py) on a host folder, with a fault control file a test can write.

The card itself (block accounting, ENOSPC after a partial write, the faults, `PowerCut`) is the portable model, the
same file the MicroPython harness runs. This subclass lays it out on the host and adds the one thing only a host
process has: faults flipped from outside the running board.

Why a folder and not a dict in RAM: a virtual board is a process, and "reset the board" means killing that process
and starting a new one on the same card. A new `SimCard(host_dir, ...)` on the same folder sees everything that was
written before.

Layout of `host_dir`:

    host_dir/card/<name>      the card's files (one flat folder, like the firmware's view of the card)
    host_dir/faults.json      optional fault control file (see below); never visible on the card

`faults.json` lets a test flip faults inside a running board process. It is re-read before each operation when its
(mtime, size, inode) changed, so polling it costs one `stat`. Keys: `full`, `removed`, `write_error`,
`power_cut_before_remove` (booleans) and `power_cut_after` (`{"nbytes": N, "tail": "zeros"}` or null). A key that
is absent leaves that fault as it is. Write the file atomically (write a temporary file, then `os.replace`); a file
that does not parse is ignored until it changes again. When a one-shot fault that came from the file fires, the
card removes its key from the file, so the board that restarts after the cut does not fire it a second time.
"""

import json
import os

from tools.sim.chips.sdcard import Card, PowerCut

__all__ = ["SimCard", "PowerCut", "CONTROL_FILE"]

CONTROL_FILE = "faults.json"


class SimCard(Card):
    """An SD card over `host_dir/card/`, with faults from `host_dir/faults.json` too (see the module docstring)."""

    def __init__(self, host_dir, capacity_bytes, block_size=512, seed=0):
        self.host_dir = str(host_dir)
        os.makedirs(self.host_dir, exist_ok=True)
        Card.__init__(self, os.path.join(self.host_dir, "card"), capacity_bytes, block_size, seed)
        self._ctl_sig = None

    def _control_path(self):
        return os.path.join(self.host_dir, CONTROL_FILE)

    def _check(self):
        if not self.dead:
            self._poll()
        Card._check(self)

    def _poll(self):
        try:
            st = os.stat(self._control_path())
        except FileNotFoundError:
            return
        sig = (st.st_mtime_ns, st.st_size, st.st_ino)
        if sig == self._ctl_sig:
            return
        try:
            with open(self._control_path(), "r", encoding="utf-8") as f:
                ctl = json.load(f)
        except (OSError, ValueError):
            return  # half-written or invalid: try again when it changes
        self._ctl_sig = sig
        if not isinstance(ctl, dict):
            return
        for key in ("full", "removed", "write_error"):
            if key in ctl:
                setattr(self, key, bool(ctl[key]))
        if "power_cut_after" in ctl:
            spec = ctl["power_cut_after"]
            if spec is None:
                self.power_cut_after(None)
            else:
                tail = spec.get("tail", "prefix")
                self.power_cut_after(max(0, int(spec.get("nbytes", 0))), tail if tail in ("zeros", "garbage")
                                     else "prefix", source=CONTROL_FILE)
        if "power_cut_before_remove" in ctl:
            self.power_cut_before_remove(bool(ctl["power_cut_before_remove"]), source=CONTROL_FILE)

    def _fire(self, key, source, what):
        if source == CONTROL_FILE:
            self._forget(key)
        Card._fire(self, key, source, what)

    def _forget(self, key):
        """A one-shot fault from faults.json fired: take it out of the file so the next boot does not fire it."""
        path = self._control_path()
        try:
            with open(path, "r", encoding="utf-8") as f:
                ctl = json.load(f)
            ctl.pop(key, None)
            tmp = path + ".tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(ctl, f)
            os.replace(tmp, path)
        except (OSError, ValueError):
            pass
