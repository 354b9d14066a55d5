"""A simulated SD card: the card's filesystem as the firmware sees it, one file for CPython and MicroPython.

`Card(root, size)`, a card of `size` bytes, is the `card` interface of docs/ARCHITECTURE.md (open, remove, listdir,
size, free_bytes; files with read, readinto, write, seek, tell, flush, close) over `root`, one flat folder of files
in the filesystem of whichever interpreter runs it: a host folder under CPython (tools/sim/host/sdcard.py), a folder
of the in-memory filesystem under the WebAssembly MicroPython (tools/sim/micropython/board/sdcard.py mounts it where VfsFat
would be). The content lives in that folder, not in this object: a new `Card` on the same folder is the same card
after a reboot, exactly like a real card outlives a brown-out.

Space is accounted in blocks, like FAT: a file of n bytes uses `ceil(n / block_size)` data blocks (written
`-(-n // block_size)` below) plus one directory block; a card of `size` bytes has `size // block_size` blocks.
`free_bytes()` is the number of free blocks times the block size.

Full card (chosen to match MicroPython's FAT driver, `vfs_fat_file.c`): a write that needs more blocks than are
free writes the bytes that still fit in the blocks it can allocate, then raises `OSError(ENOSPC)`. A caller
therefore sees a partial (torn) write on ENOSPC, as on a real board, and must cope with it. Creating a file needs
one free block (its directory entry) and otherwise raises ENOSPC without creating anything.

Writes go straight to the folder (write-through): a write that returned is on the card. The model cannot catch a
missing `flush()`; a power cut is modelled at the write that is in progress when it happens.

Errors carry the Linux errno numbers a board's card gives (ENOENT 2, EIO 5, EBADF 9, ENODEV 19, EINVAL 22, ENOSPC
28), raised here, never passed on from the interpreter's own filesystem: the WebAssembly MicroPython's raises WASI
numbers (ENOENT is 44 there), so the model looks first (a name is missing when `os.stat` fails) and raises its own.

Faults (attributes, or calls):

- `full`: free space is forced to 0; writes inside blocks a file already owns still succeed (an in-place rewrite
  needs no new block), anything that needs a new block raises ENOSPC.
- `removed`: every operation, including those on files already open, raises `OSError(ENODEV)`.
- `write_error`: every operation that changes the card (write, create, truncate, remove) raises `OSError(EIO)` and
  changes nothing; reads still work.
- `power_cut_after(nbytes, tail='prefix')`: one shot. After `nbytes` more bytes have been written, the write in
  progress persists only its first bytes up to that count; with `tail='zeros'` or `'garbage'` the rest of that
  block is then filled with zero bytes or seeded pseudo-random bytes (what FAT can leave after a cut: the cluster
  was allocated, the data never arrived). Then `PowerCut` is raised. `PowerCut` is a `BaseException`, so firmware
  code that catches `Exception` / `OSError` cannot swallow it. After a cut this object is dead (every call raises
  `PowerCut` again): make a new one on the same folder, which is what a reboot does.
- `power_cut_before_remove()`: one shot: the next `remove()` raises `PowerCut` without removing, to test that a
  crash between "write the pointer" and "delete the file" is harmless.

Both one-shot faults take a `source`, handed to `_fire(key, source, what)` when they fire; tools/sim/host/sdcard.py
overrides it to take a fault that came from its control file out of that file, and `_check()`, which every
operation calls first, to read that file. `largest_read` is the most bytes one read asked for (it shows whether a
parser reads with a bound).

Names are few on purpose (private constants, which mpy-cross compiles away, and no attribute or helper beyond what
the rules need): under MicroPython every name a module uses is interned for good, and the simulation's names come
before the firmware's in the heap measurement (docs/MICROPYTHON.md, "Heap").
"""

import os

from . import Prng, const

_ENOENT = const(2)
_EIO = const(5)
_EBADF = const(9)
_ENODEV = const(19)
_EINVAL = const(22)
_ENOSPC = const(28)
_S_IFMT = const(0o170000)
_S_IFREG = const(0o100000)


class PowerCut(BaseException):
    """The simulated board lost power. Not an `Exception`: nothing in the firmware may catch it."""


def _size(path):
    """The size of the regular file at `path`, or -1 when there is none (whatever errno the interpreter says)."""
    try:
        st = os.stat(path)
    except OSError:
        return -1
    if st[0] & _S_IFMT != _S_IFREG:
        return -1
    return st[6]


class Card:
    """An SD card over the folder `root`, with block accounting and injectable faults (see the module docstring)."""

    def __init__(self, root, size, block_size=512, seed=0):
        if block_size <= 0 or size < block_size:
            raise ValueError("capacity must hold at least one block")
        try:
            os.mkdir(root)
        except OSError:
            pass  # there already (or its parent is missing: the listdir below says so)
        os.listdir(root)
        self.root = root
        self.block_size = block_size
        self.blocks = size // block_size
        self._rng = Prng(seed)
        self.full = False
        self.removed = False
        self.write_error = False
        self.dead = False
        self._cut = None  # [bytes left, tail, source]
        self._cut_remove = None  # the source that armed it, or None
        self.largest_read = 0

    # --- faults -------------------------------------------------------------------------------------------------
    def power_cut_after(self, nbytes, tail="prefix", source=""):
        """Arm a one-shot power cut after `nbytes` more written bytes; `nbytes=None` disarms it."""
        if nbytes is None:
            self._cut = None
            return
        if tail != "prefix" and tail != "zeros" and tail != "garbage":
            raise ValueError("tail must be 'prefix', 'zeros' or 'garbage'")
        if nbytes < 0:
            raise ValueError("nbytes must be >= 0")
        self._cut = [int(nbytes), tail, source]

    def power_cut_before_remove(self, on=True, source=""):
        """Arm (or with `on=False` disarm) a one-shot power cut at the next `remove()`, before anything is removed."""
        self._cut_remove = source if on else None

    @property
    def power_cut_armed(self):
        return self._cut is not None or self._cut_remove is not None

    def _fire(self, key, source, what):
        """The one-shot fault `key` ('power_cut_after' or 'power_cut_before_remove'), armed by `source`, fires."""
        self.dead = True
        raise PowerCut("simulated power cut (%s)" % what)

    def _check(self):
        """Every operation starts here: a dead card stays dead, a removed card answers ENODEV."""
        if self.dead:
            raise PowerCut("the card lost power earlier; make a new card on the same folder (reboot)")
        if self.removed:
            raise OSError(_ENODEV, "card removed")

    # --- space --------------------------------------------------------------------------------------------------
    def _free_blocks(self):
        if self.full:
            return 0
        used = 0
        for name in os.listdir(self.root):
            used += 1 - (-max(0, _size(self.root + "/" + name)) // self.block_size)
        return max(0, self.blocks - used)

    def _path(self, name):
        if not isinstance(name, str) or not name or "/" in name or "\\" in name or name == "." or name == "..":
            raise OSError(_EINVAL, "bad file name %r" % (name,))
        return self.root + "/" + name

    # --- the card interface -------------------------------------------------------------------------------------
    def open(self, name, mode="rb"):
        self._check()
        if mode != "rb" and mode != "wb" and mode != "ab" and mode != "r+b":
            raise ValueError("mode must be 'rb', 'wb', 'ab' or 'r+b'")
        path = self._path(name)
        exists = _size(path) >= 0
        if mode == "rb" or mode == "r+b":
            if not exists:
                raise OSError(_ENOENT, "no such file: " + name)
        else:
            if self.write_error:
                raise OSError(_EIO, "write error")
            if not exists and self._free_blocks() < 1:
                raise OSError(_ENOSPC, "no room for a directory entry")
        return _File(self, path, mode)

    def remove(self, name):
        self._check()
        path = self._path(name)
        if self.write_error:
            raise OSError(_EIO, "write error")
        if self._cut_remove is not None:
            source = self._cut_remove
            self._cut_remove = None
            self._fire("power_cut_before_remove", source, "before remove of " + name)
        if _size(path) < 0:
            raise OSError(_ENOENT, "no such file: " + name)
        os.remove(path)

    def listdir(self):
        self._check()
        return sorted(os.listdir(self.root))

    def size(self, name):
        self._check()
        n = _size(self._path(name))
        if n < 0:
            raise OSError(_ENOENT, "no such file: " + name)
        return n

    def free_bytes(self):
        self._check()
        return self._free_blocks() * self.block_size


class _File:
    """An open file on a Card. Every call goes through the card, so faults apply to files already open."""

    def __init__(self, card, path, mode):
        self._card = card
        self._path = path
        self.mode = mode
        self._f = open(path, mode)

    def _check(self):
        if self._f is None:
            raise ValueError("I/O operation on closed file")
        self._card._check()

    def read(self, n=-1):
        self._check()
        card = self._card
        if n is None or n < 0:
            want = _size(self._path)
            data = self._f.read()
        else:
            want = n
            data = self._f.read(n)
        if want > card.largest_read:
            card.largest_read = want
        return data

    def readinto(self, buf):
        self._check()
        if len(buf) > self._card.largest_read:
            self._card.largest_read = len(buf)
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
        if self.mode == "rb":
            raise OSError(_EBADF, "file opened for reading")
        if card.write_error:
            raise OSError(_EIO, "write error")
        f = self._f
        n = len(data)
        bs = card.block_size
        old_size = _size(self._path)
        pos = old_size if self.mode == "ab" else f.tell()
        had = -(-old_size // bs)  # blocks the file owns
        allowed = n
        need = -(-max(old_size, pos + n) // bs) - had
        if need > 0:
            free = card._free_blocks()
            if need > free:
                allowed = max(0, min(n, (had + free) * bs - pos))
        cut = card._cut
        if cut is not None and cut[0] < allowed:
            keep = cut[0]
            tail = cut[1]
            card._cut = None
            f.write(data[:keep])
            if tail != "prefix":
                stop = pos + keep
                fill = bytearray(-(-stop // bs) * bs - stop)  # to the end of the block
                if tail == "garbage":
                    for i in range(len(fill)):
                        fill[i] = card._rng()
                f.write(fill)
            f.flush()
            self.close()
            card._fire("power_cut_after", cut[2], "after %d bytes, tail=%s" % (keep, tail))
        if cut is not None:
            cut[0] -= allowed
        if allowed:
            f.write(data if allowed == n else data[:allowed])
            f.flush()
        if allowed < n:
            raise OSError(_ENOSPC, "card full after %d of %d bytes" % (allowed, n))
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
