"""The redundant pair on the real rp2 port: two virtual Picos (two emulator processes) joined by an emulated I2C
wire on I2C1 (GP6/GP7, boards.py's hb_i2c), the standby's side the real `machine.I2CTarget` in memory mode, the
master's the real `machine.I2C` (tools/sim/vpico/devices/wire.mjs, i2c_target.mjs).

First the wire alone (the I2C target mode of the emulator against MicroPython's own classes), then the issue's story:
the soil firmware flashed as master and standby with `tools/flash.py` (what `make flash BOARD=pico ROLE=... PORT=...`
runs), one gateway, a private MariaDB; the master's emulator killed, the standby takes over, the master comes back
and takes over again. As in tests/test_pair.py, the checks are on what the database holds: every one-second slot
stored once, by one collector.
"""

import datetime
import json
import os
import subprocess
import sys

import pytest

from tests.rp2.vpico import REPO, VPico, mpremote, wait_for

TARGET_SETUP = """
import machine
mem = bytearray(b'0123456789abcdef')
got = []
def h(t):
    got.append((t.irq().flags(), t.memaddr))
tgt = machine.I2CTarget(1, addr=8, mem=mem, scl=machine.Pin(7), sda=machine.Pin(6))
tgt.irq(h, machine.I2CTarget.IRQ_END_WRITE | machine.I2CTarget.IRQ_END_READ)
print('ready')
"""

MASTER = """
import machine
i2c = machine.I2C(1, scl=machine.Pin(7), sda=machine.Pin(6), freq=100000)
i2c.writeto_mem(8, 2, b'HELLO')
print(bytes(i2c.readfrom_mem(8, 0, 10)))
try:
    i2c.writeto_mem(9, 0, b'x')
except OSError as e:
    print('no target at 9:', e.args[0])
"""


def pair_boards(tmp, image, names=("m", "t")):
    sock = os.path.join(tmp, "hb.sock")
    master = VPico(os.path.join(tmp, names[0]), image, devices=["wire"], opts=["wire.peer=" + sock])
    standby = VPico(os.path.join(tmp, names[1]), image, devices=["wire"], opts=["wire.listen=" + sock])
    return master, standby


def test_i2c_target_on_one_virtual_pico_answers_machine_i2c_on_another(rp2_image, tmp_path):
    master, target = pair_boards(str(tmp_path), rp2_image)
    with target, master:
        r = mpremote(target, "exec", TARGET_SETUP)
        assert r.stdout.strip() == "ready"
        r = mpremote(master, "exec", MASTER)
        assert r.stdout.split() == ["b'01HELLO789'", "no", "target", "at", "9:", "5"], r.stdout
        r = mpremote(target, "resume", "exec", "print(bytes(mem)); print(got)")
        mem, got = r.stdout.strip().splitlines()
        assert mem == "b'01HELLO789abcdef'"
        # The handler ran: END_WRITE (32) after the 5 bytes written at 2, END_READ (16) after the read from 0; the
        # write that only sets the address for the read ends with none (MicroPython's memory-mode rules).
        assert got == "[(32, 2), (16, 0)]"


def test_a_dead_target_is_a_nack_and_a_returning_one_is_heard(rp2_image, tmp_path):
    master, target = pair_boards(str(tmp_path), rp2_image)
    with master:
        probe = "import machine\ni2c = machine.I2C(1, scl=machine.Pin(7), sda=machine.Pin(6))\n" \
                "try:\n    i2c.writeto_mem(8, 0, b'x'); print('ack')\nexcept OSError as e:\n    print('nack', e.args[0])\n"
        assert mpremote(master, "exec", probe).stdout.split() == ["nack", "5"]     # nobody on the other end
        with target:
            mpremote(target, "exec", TARGET_SETUP)
            assert mpremote(master, "exec", probe).stdout.split() == ["ack"]
        assert mpremote(master, "exec", probe).stdout.split() == ["nack", "5"]     # its process ended
