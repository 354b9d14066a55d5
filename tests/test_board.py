"""soil.board: one set of settings for every port, and the one function that assembles a board from them and a HAL.

The HAL here is the simulation's (tools/sim/vboard/hal.py: a register-level DS1307 on a byte-level I2C bus, an SD card
with block accounting); the pair's wire is the byte-level bus with the standby's memory-mode target. What is
checked: every port spells every setting (config.json, settings.toml, vboard flags), a wrong value is refused
with a message naming the setting as the user wrote it, and build() gives each role its settings, the hand-back
ones included (the MicroPython port could not set those before there was one assembly).
"""

import argparse
import json
import os

import pytest

from tools.sim.vboard.hal import SimHAL
from soil import board, heartbeat
from soil.journal import DEFAULT_MAX_BYTES
from tools.sim.host.i2c import I2CBus, MachineI2C
from tools.sim.host.i2ctarget import MemTarget

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def lookup(values):
    return lambda name, default: values.get(name, default)


def test_defaults_and_types():
    s = board.settings(lookup({"board": "bed-1", "interval_ms": "250"}))
    assert s["interval_ms"] == 250                         # settings.toml may hold "250" or 250
    assert s["role"] == "single" and s["journal_max"] == DEFAULT_MAX_BYTES and s["hb_address"] == heartbeat.ADDRESS
    assert set(s) == set(board.NAMES)


@pytest.mark.parametrize("values, message", [
    ({}, "board is not set"),
    ({"board": "bed 1"}, "board must be 1-32 characters"),
    ({"board": "b", "role": "boss"}, "role must be one of single, master, standby, got 'boss'"),
    ({"board": "b", "full_policy": "drop_all"}, "full_policy must be one of drop_oldest, drop_newest"),
    ({"board": "b", "interval_ms": "fast"}, "interval_ms must be a whole number, got 'fast'"),
    ({"board": "b", "interval_ms": True}, "interval_ms must be a whole number"),
    ({"board": "b", "window": 0}, "window must be above 0, got 0"),
    ({"board": "b", "hb_address": 0x78}, "hb_address must be an I2C address from 0x08 to 0x77, got 120"),
    ({"board": 7}, "board must be text, got 7"),
])
def test_a_wrong_value_is_refused_naming_the_setting(values, message):
    with pytest.raises(ValueError) as e:
        board.settings(lookup(values))
    assert message in str(e.value)


def test_messages_use_the_ports_spelling():
    with pytest.raises(ValueError, match=r"^SOIL_WINDOW must be above 0"):
        board.settings(lookup({"board": "b", "window": -1}), lambda n: "SOIL_" + n.upper())


def test_unknown_names_are_reported():
    assert board.unknown(["board", "intervall_ms", "role"]) == ["intervall_ms"]


def test_every_port_spells_every_setting():
    """config.example.json (MicroPython) and the vboard's flags list every setting with its default;
    tests/test_circuitpython_port.py checks settings.toml.example the same way."""
    with open(os.path.join(ROOT, "firmware", "micropython", "config.example.json")) as f:
        example = json.load(f)
    from tools.sim.vboard import board as vboard
    flags = {a.dest: a for a in vboard.build_parser()._actions if isinstance(a, argparse.Action)}
    for name, default, _ in board.SETTINGS:
        assert name in example, "config.example.json lacks %r" % name
        assert name in flags, "vboard has no --%s" % name.replace("_", "-")
        if default is not None:
            assert example[name] == default, name
            assert flags[name].default == default, name
    assert not board.unknown(k for k in example if k not in ("board_type", "pins", "wdt_ms"))


def sim_hal(tmp_path, name):
    hal = SimHAL(str(tmp_path / name), baudrate=0)
    hal.rtc_chip.set_time((2026, 11, 21, 12, 0, 0))
    return hal


def test_build_a_single_collector(tmp_path):
    hal = sim_hal(tmp_path, "one")
    try:
        c = board.build(board.settings(lookup({"board": "bed-1", "interval_ms": 500, "window": 8})), hal)
        assert (c.board_id, c.role, c.pair, c.boot) == ("bed-1", "single", None, 1)
        assert c.interval_ms == 500 and c.uplink.window == 8 and c.journal.max_bytes == DEFAULT_MAX_BYTES
        again = board.build(board.settings(lookup({"board": "bed-1"})), hal)
        assert again.boot == 2                              # the boot counter moved on (NVRAM and card)
    finally:
        hal.close()


def test_build_a_pair_gives_each_role_every_setting(tmp_path):
    wire = I2CBus()
    mem = bytearray(heartbeat.MEM_SIZE)
    target = MemTarget(mem)
    wire.attach(9, target)
    common = {"hb_address": 9, "hb_interval_ms": 2000, "hb_timeout_ms": 6000, "witness_timeout_ms": 1500,
              "handback_after_ms": 4000, "handback_margin_s": 3, "witness_recheck_ms": 12000, "interval_ms": 500}
    shal = sim_hal(tmp_path, "standby")
    mhal = sim_hal(tmp_path, "master")
    try:
        shal.hb_target, shal.hb_mem, shal.hb_end_write = target, mem, MemTarget.IRQ_END_WRITE
        standby = board.build(board.settings(lookup(dict(common, board="b", role="standby"))), shal)
        role = standby.pair
        assert (standby.role, role.state, standby.publishing) == ("standby", "watching", False)
        assert (role.timeout_ms, role.witness_timeout_ms, role.beat_interval_ms, role.handback_after_ms,
                role.handback_margin_s, role.recheck_ms) == (6000, 1500, 2000, 4000, 3, 12000)
        assert standby.ring_limit == (6000 + 1500 + 2 * 2000) // 500 + 8
        mhal.hb_i2c = MachineI2C(wire)
        master = board.build(board.settings(lookup(dict(common, board="a", role="master"))), mhal)
        assert (master.role, master.pair.address, master.pair.interval_ms, master.publishing) == ("master", 9, 2000,
                                                                                                 True)
        assert master.ring_limit == 4 * 3 * 1000 // 500 + 16   # four hand-back margins: the margin is settable now
    finally:
        shal.close()
        mhal.close()


def test_a_role_without_its_wire_says_so(tmp_path):
    hal = sim_hal(tmp_path, "lonely")
    try:
        for role in ("standby", "master"):
            with pytest.raises(ValueError, match="role %s needs the pair's wire" % role):
                board.build(board.settings(lookup({"board": "b", "role": role})), hal)
    finally:
        hal.close()
