"""tools.sim.host.i2c: the virtual bus behaves like a wire (ACK/NACK, repeated START, STOP) for both controller APIs."""

import errno

import pytest

from tools.sim.host.i2c import BusioI2C, I2CBus, MachineI2C


class Recorder:
    """A minimal register target that logs every bus event, to check what the bus shows a target."""

    def __init__(self, nack_after=None):
        self.events = []
        self.mem = bytearray(range(16))
        self.ptr = 0
        self.first = False
        self.nack_after = nack_after  # NACK the data byte after this many
        self.written = 0

    def on_start(self, is_read):
        self.events.append(("start", is_read))
        self.first = not is_read
        return True

    def on_write(self, byte):
        self.events.append(("w", byte))
        if self.first:
            self.first = False
            self.ptr = byte % 16
            return True
        if self.nack_after is not None and self.written >= self.nack_after:
            return False
        self.written += 1
        self.mem[self.ptr] = byte
        self.ptr = (self.ptr + 1) % 16
        return True

    def on_read(self):
        b = self.mem[self.ptr]
        self.events.append(("r", b))
        self.ptr = (self.ptr + 1) % 16
        return b

    def on_stop(self):
        self.events.append(("stop",))


@pytest.fixture
def bus():
    return I2CBus()


def test_empty_address_nacks_with_enodev(bus):
    i2c = MachineI2C(bus)
    for call in (
        lambda: i2c.readfrom_mem(0x68, 0, 7),
        lambda: i2c.writeto_mem(0x68, 0, b"\x00"),
        lambda: i2c.writeto(0x68, b"\x00"),
        lambda: i2c.readfrom(0x68, 1),
        lambda: i2c.readfrom_into(0x68, bytearray(1)),
        lambda: i2c.readfrom_mem_into(0x68, 0, bytearray(2)),
    ):
        with pytest.raises(OSError) as e:
            call()
        assert e.value.errno == errno.ENODEV == 19


def test_scan_finds_attached_targets_only(bus):
    bus.attach(0x68, Recorder())
    bus.attach(0x08, Recorder())
    bus.attach(0x03, Recorder())  # reserved range: scan does not look there
    assert MachineI2C(bus).scan() == [0x08, 0x68]
    bus.detach(0x08)
    assert MachineI2C(bus).scan() == [0x68]


def test_attach_rejects_taken_and_bad_addresses(bus):
    bus.attach(0x68, Recorder())
    with pytest.raises(ValueError):
        bus.attach(0x68, Recorder())
    with pytest.raises(ValueError):
        bus.attach(0x80, Recorder())


def test_cut_wire_nacks_everything_and_targets_see_nothing(bus):
    t = Recorder()
    bus.attach(0x50, t)
    i2c = MachineI2C(bus)
    bus.cut = True
    with pytest.raises(OSError) as e:
        i2c.readfrom_mem(0x50, 0, 1)
    assert e.value.errno == errno.ENODEV
    with pytest.raises(OSError):
        i2c.writeto(0x50, b"\x01\x02")
    assert i2c.scan() == []
    assert t.events == []
    bus.cut = False
    assert i2c.readfrom_mem(0x50, 3, 2) == b"\x03\x04"


def test_readfrom_mem_is_write_then_repeated_start_read(bus):
    t = Recorder()
    bus.attach(0x50, t)
    assert MachineI2C(bus).readfrom_mem(0x50, 2, 3) == b"\x02\x03\x04"
    assert t.events == [
        ("start", False), ("w", 2),
        ("start", True), ("r", 2), ("r", 3), ("r", 4),
        ("stop",),
    ]  # fmt: skip


def test_writeto_mem_is_one_transaction(bus):
    t = Recorder()
    bus.attach(0x50, t)
    MachineI2C(bus).writeto_mem(0x50, 5, b"\xaa\xbb")
    assert t.events == [("start", False), ("w", 5), ("w", 0xAA), ("w", 0xBB), ("stop",)]
    assert t.mem[5:7] == b"\xaa\xbb"
    assert bus.transactions == 1


def test_data_nack_counts_and_raises_for_mem_writes(bus):
    t = Recorder(nack_after=1)
    bus.attach(0x50, t)
    i2c = MachineI2C(bus)
    assert i2c.writeto(0x50, b"\x00\x11\x22\x33") == 2  # the pointer byte and one data byte were ACKed
    assert t.events[-1] == ("stop",)
    with pytest.raises(OSError) as e:
        i2c.writeto_mem(0x50, 0, b"\x44")
    assert e.value.errno == errno.EIO


def test_stop_false_keeps_the_bus_for_a_repeated_start(bus):
    t = Recorder()
    bus.attach(0x50, t)
    i2c = MachineI2C(bus)
    assert i2c.writeto(0x50, b"\x07", False) == 1
    assert ("stop",) not in t.events
    assert i2c.readfrom(0x50, 1) == b"\x07"
    assert t.events == [("start", False), ("w", 7), ("start", True), ("r", 7), ("stop",)]
    assert bus.transactions == 1


def test_target_may_nack_its_address(bus):
    class Busy(Recorder):
        def on_start(self, is_read):
            super().on_start(is_read)
            return False

    bus.attach(0x50, Busy())
    with pytest.raises(OSError) as e:
        MachineI2C(bus).writeto(0x50, b"\x00")
    assert e.value.errno == errno.ENODEV


def test_busio_facade_requires_the_lock_and_honours_slices(bus):
    t = Recorder()
    bus.attach(0x50, t)
    i2c = BusioI2C(bus)
    with pytest.raises(RuntimeError):
        i2c.scan()
    assert i2c.try_lock()
    assert not i2c.try_lock()
    assert i2c.scan() == [0x50]
    i2c.writeto(0x50, b"xx\x04\x99\x98yy", start=2, end=5)
    assert t.mem[4:6] == b"\x99\x98"
    out = bytearray(b"\x04")
    inn = bytearray(5)
    i2c.writeto_then_readfrom(0x50, out, inn, in_start=1, in_end=3)
    assert inn == bytearray(b"\x00\x99\x98\x00\x00")
    buf = bytearray(4)
    i2c.readfrom_into(0x50, buf, start=1)
    assert buf == bytearray(b"\x00\x06\x07\x08")
    with pytest.raises(OSError) as e:
        i2c.writeto(0x51, b"")
    assert e.value.errno == errno.ENODEV
    i2c.unlock()
    with pytest.raises(RuntimeError):
        i2c.writeto(0x50, b"\x00")
