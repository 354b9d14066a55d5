"""A memory-mode I2C target: MicroPython's `machine.I2CTarget(..., mem=buf)` as a part on a simulated bus, written once
for CPython and MicroPython.

Why: the standby board is an I2C *target* on the heartbeat wire (address 8 in the book's Listing 8-6). Its firmware
sees the master only through what MicroPython 1.25+'s `machine.I2CTarget` gives it in memory mode: a bytearray the
controller writes into and reads from, and an IRQ handler called at the end of each write or read. This model is
driven byte by byte (on_start / on_write / on_read / on_stop): on CPython by `tools.sim.host.i2c.I2CBus` (locally,
or behind `tools.sim.host.i2cnet.BusServer` in another process; tools/sim/host/i2ctarget.py times its handler on
the host's clock), under MicroPython by the simulated `machine.I2C` (tools/sim/micropython/board/machine.py, whose
`machine.I2CTarget` is this model behind MicroPython's constructor). It follows the state machine of MicroPython's
`extmod/machine_i2c_target.c`, so firmware written against it behaves the same on a board:

- the first `mem_addrsize // 8` bytes of a write select the memory address (big-endian, modulo `len(mem)`); later
  bytes are stored at auto-incrementing addresses that wrap at the end of `mem`;
- a read returns `mem` bytes from the current address on (it continues where the last access stopped);
- `memaddr` is the address the controller last selected (latched when the address bytes are complete);
- events: `IRQ_ADDR_MATCH_WRITE` / `IRQ_ADDR_MATCH_READ` at each (repeated) START to us, `IRQ_WRITE_REQ` per data
  byte written, `IRQ_READ_REQ` per byte read, `IRQ_END_WRITE` at the STOP or repeated START that ends a write phase,
  `IRQ_END_READ` at the one that ends a read phase in which a byte was read. As on the board, a write that only
  selects the memory address (the first half of `readfrom_mem`) ends with no `IRQ_END_WRITE`, and a bare address
  probe (`scan`) ends with one;
- `irq(handler, trigger=IRQ_END_READ | IRQ_END_WRITE, hard=False)` returns an IRQ object whose `flags()` names the
  event being handled; the ADDR_MATCH and REQ triggers need `hard=True`, as on ports with hard IRQs.

Why the handler runs synchronously, on the bus thread, inside the transaction: that is the interrupt context the
firmware's handler lives in (on a board a soft handler runs a little later from the scheduler, a hard one at once;
both must be short). Running it inline makes a handler that blocks visible twice: the controller's transaction
takes that long (the wire is held, as with clock stretching), and, given a `clock` (seconds), every call's duration
is measured into `handler_calls`, `handler_total_s`, `handler_max_s` and `handler_last_s`. That is the measuring
stick for flaw F11 (the book blinks an LED with `delay(1000)` inside the I2C receive interrupt): a test asserts
`handler_max_s` stays small.

A handler that raises does not take the bus down: the error is kept in `handler_error` and reported
(`handler_failed`, printed), and (like MicroPython's hard IRQs) the handler is disabled.

`deinit()` makes the target stop answering: every START to it is NACKed (the controller sees `OSError(ENODEV)`).
"""

__all__ = ["MemTarget", "TargetIRQ"]

# Trigger bits: the values of MicroPython's extmod/machine_i2c_target.c.
IRQ_ADDR_MATCH_READ = 1 << 0
IRQ_ADDR_MATCH_WRITE = 1 << 1
IRQ_READ_REQ = 1 << 2
IRQ_WRITE_REQ = 1 << 3
IRQ_END_READ = 1 << 4
IRQ_END_WRITE = 1 << 5
_IRQ_ALL_HARD = IRQ_ADDR_MATCH_READ | IRQ_ADDR_MATCH_WRITE | IRQ_READ_REQ | IRQ_WRITE_REQ
_IRQ_ALL = _IRQ_ALL_HARD | IRQ_END_READ | IRQ_END_WRITE
_UNSET = object()

# States of the memory-mode state machine (the C file's names).
_INACTIVE = 0
_IDLE = 1
_ADDR_MATCH_READ = 2
_ADDR_MATCH_WRITE = 3
_MEM_ADDR_SELECT = 4
_READING = 5
_WRITING = 6


class TargetIRQ:
    """What `MemTarget.irq()` returns: MicroPython's IRQ object for an I2C target (`flags()`, `trigger()`)."""

    def __init__(self):
        self.handler = None
        self.trigger_mask = 0
        self.hard = False
        self._flags = 0

    def flags(self):
        """The event of the handler call in progress (one `IRQ_*` bit); it keeps the last event afterwards."""
        return self._flags

    def trigger(self, new_trigger=None):
        """The enabled triggers; with an argument, replace them (MicroPython's `irq.trigger(new)`)."""
        if new_trigger is not None:
            self.trigger_mask = new_trigger & _IRQ_ALL
            self._flags = 0
        return self.trigger_mask


class MemTarget:
    """A memory-mode I2C target over `mem` (any writable buffer: `bytearray`, `memoryview`).

    Attach it to a bus: `bus.attach(8, MemTarget(bytearray(32)))`. `mem_addrsize` is 0, 8, 16, 24 or 32 bits, as in
    MicroPython (0: no address bytes, every write starts at the current address). `clock`, if given, times the
    handlers (seconds, high resolution).
    """

    IRQ_ADDR_MATCH_READ = IRQ_ADDR_MATCH_READ
    IRQ_ADDR_MATCH_WRITE = IRQ_ADDR_MATCH_WRITE
    IRQ_READ_REQ = IRQ_READ_REQ
    IRQ_WRITE_REQ = IRQ_WRITE_REQ
    IRQ_END_READ = IRQ_END_READ
    IRQ_END_WRITE = IRQ_END_WRITE

    def __init__(self, mem, mem_addrsize=8, clock=None):
        if mem_addrsize < 0 or mem_addrsize > 32 or mem_addrsize % 8:
            raise ValueError("mem_addrsize must be 0, 8, 16, 24 or 32")
        if not isinstance(mem, bytearray):
            raise TypeError("mem must be a bytearray")
        if not len(mem):
            raise ValueError("mem must not be empty")
        self.mem = mem
        self._mem_len = len(self.mem)
        self._addr_bytes = mem_addrsize // 8
        self._clock = clock
        self._state = _IDLE
        self._addr = 0  # the running memory address (auto-increments)
        self._addr_count = 0  # address bytes still expected in this write
        self.memaddr = 0  # the address the controller last selected (MicroPython's I2CTarget.memaddr)
        self._irq = TargetIRQ()
        self.handler_calls = 0
        self.handler_total_s = 0.0
        self.handler_max_s = 0.0
        self.handler_last_s = 0.0
        self.handler_error = None

    # -- the MicroPython API ------------------------------------------------------------------------------------

    def irq(self, handler=_UNSET, trigger=_UNSET, hard=_UNSET):
        """Set the handler (called as `handler(target)`) and its triggers and return the IRQ object; called with no
        argument at all, return the IRQ object unchanged (how a handler asks `target.irq().flags()`). The defaults
        are MicroPython's: `handler=None, trigger=IRQ_END_READ | IRQ_END_WRITE, hard=False`.

        `irq(None)` disables the handler. ValueError when an ADDR_MATCH or REQ trigger is asked for without
        `hard=True` (MicroPython: "hard IRQ required").
        """
        irq = self._irq
        if handler is _UNSET and trigger is _UNSET and hard is _UNSET:
            return irq
        handler = None if handler is _UNSET else handler
        trigger = IRQ_END_READ | IRQ_END_WRITE if trigger is _UNSET else trigger
        hard = False if hard is _UNSET else hard
        if trigger & _IRQ_ALL_HARD and not hard:
            raise ValueError("hard IRQ required")
        irq.handler = handler
        irq.hard = bool(hard)
        irq.trigger_mask = trigger & _IRQ_ALL
        irq._flags = 0
        return irq

    def deinit(self):
        """Stop responding: every later START to this target is NACKed, and no handler is called again."""
        self._state = _INACTIVE
        self._irq.handler = None
        self._irq.trigger_mask = 0

    def reset_handler_stats(self):
        """Zero the handler timings (e.g. after start-up, before the part of a test that measures)."""
        self.handler_calls = 0
        self.handler_total_s = 0.0
        self.handler_max_s = 0.0
        self.handler_last_s = 0.0

    # -- the byte-level protocol of the simulated buses --------------------------------------------------------

    def on_start(self, is_read):
        if self._state == _INACTIVE:
            return False
        self._end_phase()
        if is_read:
            self._event(IRQ_ADDR_MATCH_READ)
            self._state = _ADDR_MATCH_READ
        else:
            self._event(IRQ_ADDR_MATCH_WRITE)
            self._state = _ADDR_MATCH_WRITE
        return True

    def on_write(self, byte):
        if self._state == _INACTIVE:
            return False
        self._event(IRQ_WRITE_REQ)
        if self._state == _ADDR_MATCH_WRITE:
            self._state = _MEM_ADDR_SELECT
            self._addr_count = self._addr_bytes
            self._addr = 0  # as in the C code, also with mem_addrsize=0: every write starts at 0
        if self._state == _MEM_ADDR_SELECT and self._addr_count:
            self._addr = (self._addr << 8) | byte
            self._addr_count -= 1
            if not self._addr_count:
                self._addr %= self._mem_len
                self.memaddr = self._addr
            return True
        if self._state == _MEM_ADDR_SELECT:
            self._state = _WRITING
        self.mem[self._addr] = byte
        self._addr += 1
        if self._addr >= self._mem_len:
            self._addr = 0
        return True

    def on_read(self):
        if self._state == _INACTIVE:
            return 0xFF  # nobody drives SDA: the pull-up reads as ones
        self._event(IRQ_READ_REQ)
        self._state = _READING
        val = self.mem[self._addr]
        self._addr += 1
        if self._addr >= self._mem_len:
            self._addr = 0
        return val

    def on_stop(self):
        if self._state != _INACTIVE:
            self._end_phase()

    # -- internals ---------------------------------------------------------------------------------------------

    def _end_phase(self):
        """STOP or repeated START: close the phase that was open (the C file's reset_helper)."""
        state = self._state
        if state == _MEM_ADDR_SELECT and self._addr_count:
            # only part of a multi-byte address arrived: nothing is latched into memaddr (as in the C code); keep
            # the partial address inside mem so a following read cannot run off its end
            self._addr %= self._mem_len
            self._addr_count = 0
        self._state = _IDLE
        if state == _READING:
            self._event(IRQ_END_READ)
        elif state in (_ADDR_MATCH_WRITE, _WRITING):
            self._event(IRQ_END_WRITE)

    def _event(self, flag):
        irq = self._irq
        handler = irq.handler
        if handler is None or not irq.trigger_mask & flag:
            return
        irq._flags = flag
        clock = self._clock
        t0 = clock() if clock is not None else 0.0
        try:
            handler(self)
        except Exception as exc:  # a firmware bug must not take the simulated wire down with it
            self.handler_error = exc
            irq.handler = None
            self.handler_failed(exc)
        finally:
            dt = clock() - t0 if clock is not None else 0.0
            self.handler_calls += 1
            self.handler_total_s += dt
            self.handler_last_s = dt
            if dt > self.handler_max_s:
                self.handler_max_s = dt

    def handler_failed(self, exc):
        """Report a handler that raised (it is disabled); the host layer prints the traceback."""
        print("I2CTarget: uncaught exception in IRQ handler; handler disabled: %r" % (exc,))
