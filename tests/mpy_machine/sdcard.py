"""Simulated micropython-lib `sdcard` module, plus a stand-in for `os.VfsFat` (MicroPython subset).

`SDCard(spi, cs)` has the driver's constructor and block-device methods (readblocks / writeblocks / ioctl,
512-byte blocks). The WebAssembly port of MicroPython is built without VfsFat (and without littlefs), so the FAT
code itself cannot run here: `SimFat(bdev)` is a user VFS, mounted with the real `os.mount`, that keeps the card's
files as plain files in a folder of the interpreter's in-memory filesystem (`bdev.root`), outside the MicroPython
heap, so heap figures measured with it count the firmware only. What it keeps honest:
- the errors are the Linux numbers a board's VfsFat raises (ENOENT 2, EEXIST 17, ENOSPC 28), not WASI's;
- capacity: `statvfs` reports the card's free space, a write past it raises ENOSPC after writing what fits;
- `SDCard(..., present=False)` (or `bdev.present = False` later) is a card that does not answer: EIO / ENODEV.
tests/mpy_machine/simboard.py saves the folder between runs: the same card in the next boot.
"""

import os

_WASI_TO_LINUX = {44: 2, 20: 17, 31: 21, 54: 20, 55: 39}
_EIO = 5
_ENOSPC = 28
_BLOCK = 512


def _linux(e):
    code = e.args[0] if e.args and isinstance(e.args[0], int) else _EIO
    return OSError(_WASI_TO_LINUX.get(code, code))


class SDCard:
    """The block device. `root` is the folder holding the card's files (SimFat's backing store)."""

    def __init__(self, spi, cs, baudrate=1320000, root="/simcard", blocks=16384, present=True):
        if not hasattr(spi, "baudrate") or not hasattr(cs, "value"):
            raise TypeError("SDCard(spi, cs): a machine.SPI and a machine.Pin")
        cs.value(1)
        self.present = present
        if not present:
            raise OSError("no SD card")      # as micropython-lib's driver: text, no errno
        self.root = root
        self.blocks = blocks
        try:
            os.mkdir(root)
        except OSError:
            pass

    def readblocks(self, block_num, buf, offset=0):
        raise OSError(_EIO)                  # SimFat never asks for raw blocks

    def writeblocks(self, block_num, buf, offset=0):
        raise OSError(_EIO)

    def ioctl(self, op, arg):
        if op == 4:
            return self.blocks               # block count
        if op == 5:
            return _BLOCK                    # block size
        return 0


class _File:
    def __init__(self, fs, f):
        self._fs = fs
        self._f = f

    def _check(self):
        if not self._fs.bdev.present:
            raise OSError(_EIO)

    def read(self, n=-1):
        self._check()
        return self._f.read(n)

    def readinto(self, buf):
        self._check()
        return self._f.readinto(buf)

    def write(self, data):
        self._check()
        room = self._fs.free()
        if len(data) > room:
            if room > 0:
                self._f.write(data[:room])
                self._f.flush()
            raise OSError(_ENOSPC)
        return self._f.write(data)

    def seek(self, offset, whence=0):
        return self._f.seek(offset, whence)

    def tell(self):
        return self._f.tell()

    def flush(self):
        self._check()
        self._f.flush()

    def close(self):
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SimFat:
    """The `os.VfsFat(bdev)` stand-in: the VFS methods `os.mount` calls, over the folder `bdev.root`."""

    def __init__(self, bdev):
        self.bdev = bdev
        self.root = bdev.root

    def mount(self, readonly, mkfs):
        pass

    def umount(self):
        pass

    def _p(self, path):
        if not self.bdev.present:
            raise OSError(_EIO)
        return self.root + "/" + path.lstrip("/")

    def free(self):
        used = 0
        for name in os.listdir(self.root):
            used += (os.stat(self.root + "/" + name)[6] + _BLOCK - 1) // _BLOCK * _BLOCK
        return self.bdev.blocks * _BLOCK - used

    def open(self, path, mode):
        p = self._p(path)
        try:
            return _File(self, open(p, mode))
        except OSError as e:
            raise _linux(e)

    def ilistdir(self, path):
        self._p(path)
        return iter([(n, 0x8000, 0, os.stat(self.root + "/" + n)[6]) for n in os.listdir(self.root)])

    def stat(self, path):
        p = self._p(path)
        try:
            return os.stat(p)
        except OSError as e:
            raise _linux(e)

    def statvfs(self, path):
        self._p(path)
        free = self.free() // _BLOCK
        return (_BLOCK, _BLOCK, self.bdev.blocks, free, free, 0, 0, 0, 0, 255)

    def remove(self, path):
        p = self._p(path)
        try:
            os.remove(p)
        except OSError as e:
            raise _linux(e)

    def rename(self, a, b):
        os.rename(self._p(a), self._p(b))

    def mkdir(self, path):
        raise OSError(1)                     # the card is one flat folder here

    def rmdir(self, path):
        raise OSError(1)

    def chdir(self, path):
        pass

    def getcwd(self):
        return "/"
