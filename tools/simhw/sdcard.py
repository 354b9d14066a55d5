"""A simulated SD card: the `card` interface of docs/ARCHITECTURE.md over a folder on the host.

Why a folder and not a dict in RAM: a virtual board is a process, and "reset the board" means killing that process
and starting a new one on the same card. The card's content must outlive the process, exactly like a real card
outlives a brown-out. A new `SimCard(host_dir, ...)` on the same folder sees everything that was written before.

Layout of `host_dir`:

    host_dir/card/<name>      the card's files (one flat folder, like the firmware's view of the card)
    host_dir/faults.json      optional fault control file (see below); never visible on the card

Space is accounted in blocks, like FAT: a file of `size` bytes uses `ceil(size / block_size)` data blocks plus one
directory block; the card has `capacity_bytes // block_size` blocks. `free_bytes()` is the number of free blocks
times the block size.

Full card (chosen to match MicroPython's FAT driver, `vfs_fat_file.c`): a write that needs more blocks than are
free writes the bytes that still fit in the blocks it can allocate, then raises `OSError(ENOSPC)`. A caller
therefore sees a partial (torn) write on ENOSPC, as on a real board, and must cope with it. Creating a file needs
one free block (its directory entry) and otherwise raises ENOSPC without creating anything.

Writes go straight to the host file (write-through): a write that returned is on the card. The sim cannot catch a
missing `flush()`; a power cut is modelled at the write that is in progress when it happens.

Faults (attributes on the object, or keys of `faults.json`):

- `full` (bool): free space is forced to 0; writes inside blocks a file already owns still succeed (an in-place
  rewrite needs no new block), anything that needs a new block raises ENOSPC.
- `removed` (bool): every operation, including those on files already open, raises `OSError(ENODEV)`.
- `write_error` (bool): every operation that changes the card (write, create, truncate, remove) raises
  `OSError(EIO)` and changes nothing; reads still work.
- `power_cut_after(nbytes, tail='prefix')`: a one-shot fault. After `nbytes` more bytes have been written, the write
  in progress persists only its first bytes up to that count; with `tail='zeros'` or `'garbage'` the rest of that
  block is then filled with zero bytes or seeded random bytes (what FAT can leave after a cut: the cluster was
  allocated, the data never arrived). Then `PowerCut` is raised. `PowerCut` is a `BaseException`, so firmware code
  that catches `Exception` / `OSError` cannot swallow it; the virtual board catches it at the top and exits hard.
  After a cut this `SimCard` object is dead (every call raises `PowerCut` again): make a new one on the same folder,
  which is what a reboot does.
- `power_cut_before_remove()`: a one-shot fault: the next `remove()` raises `PowerCut` without removing, to test
  that a crash between "write the pointer" and "delete the file" is harmless.

`faults.json` lets a test flip faults inside a running board process. It is re-read before each operation when its
(mtime, size, inode) changed, so polling it costs one `stat`. Keys: `full`, `removed`, `write_error`,
`power_cut_before_remove` (booleans) and `power_cut_after` (`{"nbytes": N, "tail": "zeros"}` or null). A key that
is absent leaves that fault as it is. Write the file atomically (write a temporary file, then `os.replace`); a file
that does not parse is ignored until it changes again. When a one-shot fault that came from the file fires, the sim
removes its key from the file, so the board that restarts after the cut does not fire it a second time.
"""

import errno
import json
import os
import random

__all__ = ["SimCard", "PowerCut"]

CONTROL_FILE = "faults.json"
_TAILS = ("prefix", "zeros", "garbage")
_MODES = ("rb", "wb", "ab", "r+b")


class PowerCut(BaseException):
    """The simulated board lost power. Not an `Exception`: nothing in the firmware may catch it."""


def _oserror(code, detail=""):
    return OSError(code, os.strerror(code) + (": " + detail if detail else ""))


class SimCard:
    """An SD card over `host_dir/card/`, with block accounting and injectable faults (see the module docstring)."""

    def __init__(self, host_dir, capacity_bytes, block_size=512, seed=0):
        if block_size <= 0 or capacity_bytes < block_size:
            raise ValueError("capacity must hold at least one block")
        self.host_dir = str(host_dir)
        self.root = os.path.join(self.host_dir, "card")
        os.makedirs(self.root, exist_ok=True)
        self.capacity_bytes = capacity_bytes
        self.block_size = block_size
        self.blocks = capacity_bytes // block_size
        self._rng = random.Random(seed)
        self.full = False
        self.removed = False
        self.write_error = False
        self.dead = False
        self._cut = None  # [bytes_left, tail, from_control_file]
        self._cut_remove = None  # None or from_control_file flag
        self._ctl_sig = None
        self.bytes_written = 0  # statistics for tests and benchmarks
        self.largest_read = 0  # the most bytes one read asked for: shows whether a parser reads with a bound

    # --- faults -------------------------------------------------------------------------------------------------
    def power_cut_after(self, nbytes, tail="prefix"):
        """Arm a one-shot power cut after `nbytes` more written bytes; `nbytes=None` disarms it."""
        if nbytes is None:
            self._cut = None
            return
        if tail not in _TAILS:
            raise ValueError("tail must be one of %r" % (_TAILS,))
        if nbytes < 0:
            raise ValueError("nbytes must be >= 0")
        self._cut = [int(nbytes), tail, False]

    def power_cut_before_remove(self, armed=True):
        """Arm (or disarm) a one-shot power cut at the next `remove()`, before anything is removed."""
        self._cut_remove = False if armed else None

    def clear_faults(self):
        """Disarm every fault set on this object (does not touch `faults.json`)."""
        self.full = self.removed = self.write_error = False
        self._cut = None
        self._cut_remove = None

    @property
    def power_cut_armed(self):
        return self._cut is not None or self._cut_remove is not None

    def _control_path(self):
        return os.path.join(self.host_dir, CONTROL_FILE)

    def _poll_control(self):
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
                self._cut = None
            else:
                tail = spec.get("tail", "prefix")
                if tail not in _TAILS:
                    tail = "prefix"
                self._cut = [int(spec.get("nbytes", 0)), tail, True]
        if "power_cut_before_remove" in ctl:
            self._cut_remove = True if ctl["power_cut_before_remove"] else None

    def _forget_control_key(self, key):
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

    def _fire(self, key):
        self.dead = True
        raise PowerCut("simulated power cut (%s)" % key)

    def _enter(self):
        """Every operation starts here: a dead card stays dead, faults are refreshed, a removed card answers ENODEV."""
        if self.dead:
            raise PowerCut("the card lost power earlier; make a new SimCard (reboot)")
        self._poll_control()
        if self.removed:
            raise _oserror(errno.ENODEV, "card removed")

    # --- space --------------------------------------------------------------------------------------------------
    def _blocks_for(self, size):
        return (size + self.block_size - 1) // self.block_size

    def _used_blocks(self):
        used = 0
        for name in os.listdir(self.root):
            used += 1 + self._blocks_for(os.path.getsize(os.path.join(self.root, name)))
        return used

    def _free_blocks(self):
        if self.full:
            return 0
        return max(0, self.blocks - self._used_blocks())

    def _path(self, name):
        if not isinstance(name, str) or not name or "/" in name or "\\" in name or name in (".", ".."):
            raise _oserror(errno.EINVAL, repr(name))
        return os.path.join(self.root, name)

    # --- the card interface -------------------------------------------------------------------------------------
    def open(self, name, mode="rb"):
        self._enter()
        if mode not in _MODES:
            raise ValueError("mode must be one of %r" % (_MODES,))
        path = self._path(name)
        exists = os.path.isfile(path)
        if mode in ("rb", "r+b"):
            if not exists:
                raise _oserror(errno.ENOENT, name)
        else:
            if self.write_error:
                raise _oserror(errno.EIO, "write error")
            if not exists and self._free_blocks() < 1:
                raise _oserror(errno.ENOSPC, "no room for a directory entry")
        return _SimFile(self, name, path, mode)

    def remove(self, name):
        self._enter()
        path = self._path(name)
        if self.write_error:
            raise _oserror(errno.EIO, "write error")
        if self._cut_remove is not None:
            from_file = self._cut_remove
            self._cut_remove = None
            if from_file:
                self._forget_control_key("power_cut_before_remove")
            self._fire("before remove of " + name)
        try:
            os.remove(path)
        except FileNotFoundError:
            raise _oserror(errno.ENOENT, name)

    def listdir(self):
        self._enter()
        return sorted(os.listdir(self.root))

    def size(self, name):
        self._enter()
        path = self._path(name)
        try:
            return os.path.getsize(path)
        except FileNotFoundError:
            raise _oserror(errno.ENOENT, name)

    def free_bytes(self):
        self._enter()
        return self._free_blocks() * self.block_size


class _SimFile:
    """An open file on a SimCard. Every call goes through the card, so faults apply to files already open."""

    def __init__(self, card, name, path, mode):
        self._card = card
        self.name = name
        self._path = path
        self._mode = mode
        self._append = mode == "ab"
        self._f = open(path, mode)

    def _check(self):
        if self._f is None:
            raise ValueError("I/O operation on closed file")
        self._card._enter()

    def read(self, n=-1):
        self._check()
        want = n if n is not None and n >= 0 else os.path.getsize(self._path)
        self._card.largest_read = max(self._card.largest_read, want)
        return self._f.read(n)

    def readinto(self, buf):
        self._check()
        self._card.largest_read = max(self._card.largest_read, memoryview(buf).nbytes)
        return self._f.readinto(buf)

    def seek(self, offset, whence=0):
        self._check()
        return self._f.seek(offset, whence)

    def tell(self):
        self._check()
        return self._f.tell()

    def flush(self):
        self._check()
        self._f.flush()

    def write(self, data):
        self._check()
        card = self._card
        if self._mode == "rb":
            raise _oserror(errno.EBADF, "file opened for reading")
        if card.write_error:
            raise _oserror(errno.EIO, "write error")
        data = bytes(data)
        n = len(data)
        bs = card.block_size
        old_size = os.path.getsize(self._path)
        pos = old_size if self._append else self._f.tell()
        end = pos + n
        need = card._blocks_for(max(old_size, end)) - card._blocks_for(old_size)
        allowed = n
        if need > 0:
            free = card._free_blocks()
            if need > free:
                limit = (card._blocks_for(old_size) + free) * bs
                allowed = max(0, min(n, limit - pos))
        cut = card._cut
        if cut is not None and cut[0] < allowed:
            keep = cut[0]
            tail = cut[1]
            card._cut = None
            stop = pos + keep
            fill = 0
            if tail != "prefix":
                fill = card._blocks_for(stop) * bs - stop
            if tail == "zeros":
                torn = data[:keep] + bytes(fill)
            else:
                torn = data[:keep] + bytes(card._rng.getrandbits(8) for _ in range(fill))
            self._f.write(torn)
            self._f.flush()
            card.bytes_written += keep
            self._f.close()
            self._f = None
            if cut[2]:
                card._forget_control_key("power_cut_after")
            card._fire("after %d bytes, tail=%s" % (keep, tail))
        if cut is not None:
            cut[0] -= allowed
        if allowed:
            self._f.write(data[:allowed])
            self._f.flush()
            card.bytes_written += allowed
        if allowed < n:
            raise _oserror(errno.ENOSPC, "card full after %d of %d bytes" % (allowed, n))
        return n

    def close(self):
        if self._f is not None:
            f = self._f
            self._f = None
            f.close()  # never raises: a close after a failure must not hide the failure

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
