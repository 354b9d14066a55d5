"""A virtual I2C bus that simulated chips sit on, and the controller APIs the firmware and Adafruit's drivers use.

Why byte level: a fake that answers `readfrom_mem(0x68, 0, 7)` with canned bytes tests nothing about the register
pointer, repeated starts, auto-increment or NACKs, which is exactly where RTC drivers go wrong. Here a target sees
what a real I2C target sees on the wire:

    on_start(is_read)      START or repeated START addressed to it; return False to NACK the address
    on_write(byte) -> bool one byte from the controller; return True to ACK it
    on_read() -> int       the controller clocks one byte out of the target
    on_stop()              STOP (the bus is free again)

Why `transfer(segments, stop)` is the only way in: every controller call becomes one list of plain tuples
`(address, is_read, bytes_or_count)` executed atomically under the bus lock and answered with plain values. A later
transport can carry exactly that over a socket (the bus in one process, boards in others) without touching the
chips or the controllers.

Two controller facades are built on it:

- `MachineI2C`: MicroPython's `machine.I2C` methods (what the portable core is handed, docs/ARCHITECTURE.md).
  An address NACK raises `OSError(19)` (ENODEV), like MicroPython.
- `BusioI2C`: CircuitPython's / Blinka's `busio.I2C` (locking, `start`/`end` slices, `writeto_then_readfrom`), so
  Adafruit's unmodified `adafruit_ds1307` can drive the same simulated chip.

Faults: `bus.cut = True` is a broken wire: nothing ACKs, every transaction fails as an address NACK, and the targets
see nothing.
"""

import errno
import threading

__all__ = ["I2CBus", "MachineI2C", "BusioI2C", "ENODEV", "EIO"]

ENODEV = errno.ENODEV  # 19: no target ACKed its address
EIO = errno.EIO  # 5: a target NACKed a data byte

SCAN_FIRST = 0x08  # MicroPython and CircuitPython scan 0x08..0x77: the rest are reserved addresses
SCAN_LAST = 0x77


def _nodev(address):
    return OSError(ENODEV, "I2C address 0x%02x did not ACK" % address)


class ProbingBus:
    """probe() and scan() for anything with `transfer(segments, stop)`: the local bus and the remote wire alike."""

    def probe(self, address):
        """True if something ACKs `address` (a zero-length write: START, address, STOP)."""
        try:
            self.transfer(((address, False, b""),))
        except OSError:
            return False
        return True

    def scan(self):
        """Addresses 0x08..0x77 that ACK, ascending, found the way a controller finds them: by probing."""
        return [a for a in range(SCAN_FIRST, SCAN_LAST + 1) if self.probe(a)]


class I2CBus(ProbingBus):
    """The wire: a set of targets by 7-bit address, one transaction at a time.

    `cut` makes every transaction NACK (SDA pulled high by the pull-up, nobody answering).
    """

    def __init__(self):
        self._targets = {}
        self._lock = threading.RLock()
        self._open = None  # target addressed by a transaction that ended without STOP (stop=False)
        self.cut = False
        self.transactions = 0  # every START that was not a repeated START, for tests and the bench

    def attach(self, address, target):
        """Connect `target` at 7-bit `address`; ValueError if the address is taken or out of range."""
        if not 0 <= address <= 0x7F:
            raise ValueError("7-bit I2C address expected, got %r" % (address,))
        with self._lock:
            if address in self._targets:
                raise ValueError("I2C address 0x%02x is already taken" % address)
            self._targets[address] = target

    def detach(self, address):
        """Disconnect whatever is at `address` (like pulling the module off the breadboard) and return it."""
        with self._lock:
            return self._targets.pop(address, None)

    def addresses(self):
        """Addresses with a target attached, ascending (what a scan would find if every target ACKs)."""
        with self._lock:
            return sorted(self._targets)

    def transfer(self, segments, stop=True):
        """Run one transaction: a START, then each segment (later ones after a repeated START), then STOP.

        `segments` is a sequence of `(address, is_read, payload)`: for a write `payload` is the bytes to send, for
        a read it is the number of bytes to clock in. Returns one result per segment: for a write the number of
        data bytes the target ACKed (it stops sending at the first NACK, and no later segment runs), for a read
        the bytes read. An address NACK raises `OSError(ENODEV)` after a STOP. With `stop=False` the bus is left
        held, and the next `transfer` begins with a repeated START (MicroPython's `stop=False`).
        """
        with self._lock:
            results = []
            current = self._open
            self._open = None
            if current is None:
                self.transactions += 1
            try:
                for address, is_read, payload in segments:
                    target = None if self.cut else self._targets.get(address)
                    if target is not None and target.on_start(bool(is_read)) is False:
                        target = None
                    if current is not None and current is not target:
                        current.on_stop()  # it sees the bus go to another address; as good as a STOP to it
                    current = target
                    if target is None:
                        raise _nodev(address)
                    if is_read:
                        out = bytearray(payload)
                        for i in range(payload):
                            out[i] = target.on_read() & 0xFF
                        results.append(bytes(out))
                    else:
                        acked = 0
                        for b in payload:
                            if not target.on_write(b & 0xFF):
                                break
                            acked += 1
                        results.append(acked)
                        if acked < len(payload):
                            break  # a data NACK ends the transaction (MicroPython soft I2C does the same)
            except BaseException:
                if current is not None:
                    current.on_stop()
                raise
            if stop or current is None:
                if current is not None:
                    current.on_stop()
            else:
                self._open = current
            return results

def _memaddr_bytes(memaddr, addrsize):
    if addrsize not in (8, 16):
        raise ValueError("addrsize must be 8 or 16")
    n = addrsize // 8
    return (memaddr & ((1 << addrsize) - 1)).to_bytes(n, "big")


class MachineI2C:
    """MicroPython's `machine.I2C` over an `I2CBus` (the methods the portable core may call).

    `writeto` returns the number of ACKed bytes like MicroPython; `writeto_mem` raises `OSError(EIO)` on a data
    NACK where MicroPython's soft I2C would only write fewer bytes: a driver must not believe a half write.
    `address_nack`: the errno a NACKed address raises, which differs by port: ENODEV on esp32 (the default), EIO on
    rp2 (ports/rp2/machine_i2c.c maps every pico-sdk error but a timeout to EIO).
    """

    def __init__(self, bus, address_nack=ENODEV):
        self.bus = bus
        self.address_nack = address_nack

    def _transfer(self, segments, stop=True):
        try:
            return self.bus.transfer(segments, stop)
        except OSError as e:
            if e.args and e.args[0] == ENODEV and self.address_nack != ENODEV:
                raise OSError(self.address_nack, e.args[1] if len(e.args) > 1 else "address NACK")
            raise

    def scan(self):
        return self.bus.scan()

    def writeto(self, addr, buf, stop=True):
        return self._transfer(((addr, False, bytes(buf)),), stop)[0]

    def readfrom(self, addr, nbytes, stop=True):
        return self._transfer(((addr, True, nbytes),), stop)[0]

    def readfrom_into(self, addr, buf, stop=True):
        data = self.readfrom(addr, len(buf), stop)
        buf[:] = data

    def writevto(self, addr, vector, stop=True):
        return self.writeto(addr, b"".join(bytes(v) for v in vector), stop)

    def readfrom_mem(self, addr, memaddr, nbytes, *, addrsize=8):
        reg = _memaddr_bytes(memaddr, addrsize)
        res = self._transfer(((addr, False, reg), (addr, True, nbytes)))
        if len(res) < 2:
            raise OSError(EIO, "I2C address 0x%02x NACKed the register address" % addr)
        return res[1]

    def readfrom_mem_into(self, addr, memaddr, buf, *, addrsize=8):
        buf[:] = self.readfrom_mem(addr, memaddr, len(buf), addrsize=addrsize)

    def writeto_mem(self, addr, memaddr, buf, *, addrsize=8):
        data = _memaddr_bytes(memaddr, addrsize) + bytes(buf)
        if self._transfer(((addr, False, data),))[0] != len(data):
            raise OSError(EIO, "I2C address 0x%02x NACKed a data byte" % addr)


class BusioI2C:
    """CircuitPython's `busio.I2C` (as Blinka implements it) over an `I2CBus`.

    Like CircuitPython, every transfer needs the lock (`try_lock`) and raises RuntimeError without it, so a driver
    that forgets to lock fails here as it would on a board.
    """

    def __init__(self, bus):
        self.bus = bus
        self._locked = False
        self._guard = threading.Lock()

    def try_lock(self):
        with self._guard:
            if self._locked:
                return False
            self._locked = True
            return True

    def unlock(self):
        with self._guard:
            self._locked = False

    def deinit(self):
        self.unlock()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.deinit()
        return False

    def _check_lock(self):
        if not self._locked:
            raise RuntimeError("Function requires lock")

    def scan(self):
        self._check_lock()
        return self.bus.scan()

    def writeto(self, address, buffer, *, start=0, end=None, stop=True):
        self._check_lock()
        if end is None:
            end = len(buffer)
        data = bytes(buffer[start:end])
        if self.bus.transfer(((address, False, data),), stop)[0] != len(data):
            raise OSError(EIO, "I2C address 0x%02x NACKed a data byte" % address)

    def readfrom_into(self, address, buffer, *, start=0, end=None, stop=True):
        self._check_lock()
        if end is None:
            end = len(buffer)
        buffer[start:end] = self.bus.transfer(((address, True, end - start),), stop)[0]

    def writeto_then_readfrom(
        self, address, buffer_out, buffer_in, *, out_start=0, out_end=None, in_start=0, in_end=None, stop=False
    ):
        self._check_lock()
        if out_end is None:
            out_end = len(buffer_out)
        if in_end is None:
            in_end = len(buffer_in)
        data = bytes(buffer_out[out_start:out_end])
        res = self.bus.transfer(((address, False, data), (address, True, in_end - in_start)))
        if len(res) < 2:
            raise OSError(EIO, "I2C address 0x%02x NACKed a data byte" % address)
        buffer_in[in_start:in_end] = res[1]
