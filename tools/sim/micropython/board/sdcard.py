"""Stand-in for micropython-lib's `sdcard` driver, and for `os.VfsFat` over it (MicroPython subset).

The card itself is the portable card model, `chips.sdcard.Card` (tools/sim/chips/sdcard.py, the same file the
CPython virtual board runs): block accounting, ENOSPC after a partial write, Linux errno numbers, faults. It sits
in the simulated board's one slot, `machine.SIM.card`, with its files in a folder of the interpreter's in-memory
filesystem (outside the MicroPython heap, so heap figures measured with it count the firmware only);
tools/sim/micropython/board/simboard.py puts it there and saves the folder between runs: the same card in the next boot.

- `SDCard(spi, cs)` has the driver's constructor and block-device methods (readblocks / writeblocks / ioctl, the
  card's block size). Like the driver, it raises `OSError("no SD card")` (text, no errno) when no card answers:
  the slot is empty or the card is `removed`.
- The WebAssembly port of MicroPython is built without VfsFat (and without littlefs), so the FAT code itself cannot
  run here: `VfsFat(bdev)` is a user VFS with the methods `os.mount` calls, each one call of the card model (no
  rename: the card interface has none). A board's VfsFat says EIO where the card model says ENODEV (a card pulled
  while mounted); firmware/micropython/hal.py treats both alike.
"""

import machine
from micropython import const

_EIO = const(5)
_EPERM = const(1)


class SDCard:
    """The block device: the card in `machine.SIM.card`, reached over `spi` with chip select `cs`."""

    def __init__(self, spi, cs, baudrate=1320000):
        if not hasattr(spi, "baudrate") or not hasattr(cs, "value"):
            raise TypeError("SDCard(spi, cs): a machine.SPI and a machine.Pin")
        cs.value(1)
        card = machine.SIM.card
        if card is None or card.removed:
            raise OSError("no SD card")      # as micropython-lib's driver: text, no errno
        self.card = card

    def readblocks(self, block_num, buf, offset=0):
        raise OSError(_EIO)                  # VfsFat here never asks for raw blocks

    def writeblocks(self, block_num, buf, offset=0):
        raise OSError(_EIO)

    def ioctl(self, op, arg):
        if op == 4:
            return self.card.blocks          # block count
        if op == 5:
            return self.card.block_size      # block size
        return 0


class VfsFat:
    """The `os.VfsFat(bdev)` stand-in: what `os.mount` and the file functions call, over the card model."""

    def __init__(self, bdev):
        self.card = bdev.card

    def mount(self, readonly, mkfs):
        pass

    def umount(self):
        pass

    def open(self, path, mode):
        return self.card.open(path.lstrip("/"), mode)

    def ilistdir(self, path):
        card = self.card
        return iter([(n, 0x8000, 0, card.size(n)) for n in card.listdir()])

    def stat(self, path):
        name = path.strip("/")
        if not name:
            self.card.listdir()              # the card's own errors (removed: ENODEV)
            return (0x4000, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        return (0x8000, 0, 0, 0, 0, 0, self.card.size(name), 0, 0, 0)

    def statvfs(self, path):
        bs = self.card.block_size
        free = self.card.free_bytes() // bs
        return (bs, bs, self.card.blocks, free, free, 0, 0, 0, 0, 255)

    def remove(self, path):
        self.card.remove(path.lstrip("/"))

    def mkdir(self, path):
        raise OSError(_EPERM)                # the card is one flat folder

    def rmdir(self, path):
        raise OSError(_EPERM)

    def chdir(self, path):
        pass

    def getcwd(self):
        return "/"
