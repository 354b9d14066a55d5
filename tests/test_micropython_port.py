"""The MicroPython port (firmware/micropython/) under the real MicroPython interpreter, on a simulated `machine`.

tools/sim/micropython/board/ holds the simulated hardware (machine.py: Pin, ADC, a byte-level I2C, I2CTarget, SPI, WDT;
sdcard.py: the SD driver and an os.VfsFat stand-in, since the WebAssembly port has no VfsFat) and simboard.py,
which runs main.py's start-up and loop against it, with the USB line as two recording pipes and a minimal gateway
that confirms the hello and acks frames. The chips on it are the portable models of tools/sim/chips (the DS1307
and the SD card the CPython virtual board runs too), loaded as the package `chips` (PACKAGES). Each boot is one
interpreter process; the RTC registers and the card's files are carried to the next process, which is the board's
next boot.
"""

import json
import os
import shutil
import tempfile

import pytest

from gateway import frames
from tests.mpy import CHIPS, REPO, require_micropython, run_micropython
from tools.sim.micropython.heap import simstate

LIBS = ("firmware/lib", "firmware/micropython", "tools/sim/micropython/board")
PACKAGES = CHIPS


def boot(config, steps, state=None, gateway=True, off_s=0):
    """One boot of the simulated board; returns (tx frames, rx bytes, board dict, state for the next boot)."""
    d = tempfile.mkdtemp(prefix="mpyport-")
    try:
        with open(os.path.join(d, "script.py"), "w") as f:
            f.write("import simboard\nsimboard.main()\n")
        with open(os.path.join(d, "_simstate.py"), "w") as f:
            f.write(simstate(config, steps, state=state, gateway=gateway, off_s=off_s))
        proc = run_micropython(os.path.join(d, "script.py"), libs=LIBS, packages=PACKAGES, timeout=120)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    out = {}
    for line in proc.stdout.splitlines():
        key, _, rest = line.partition(" ")
        out[key] = rest
    tx = bytes.fromhex(out["TX"])
    decoded = []
    for line in tx.split(b"\n"):
        if line:
            decoded.append(frames.decode(line))      # every byte the board sent is a valid frame
    return decoded, bytes.fromhex(out["RX"]), json.loads(out["BOARD"]), json.loads(out["SIMSTATE"])


CFG = {"board": "bed1", "board_type": "pico", "role": "single", "interval_ms": 1000}


@pytest.mark.micropython
def test_boot_sends_hello_and_readings_and_journals_then_survives_a_reset():
    require_micropython()
    # Boot 1: nobody answers (gateway down): everything stays on the card.
    sent, _, board, state = boot(CFG, 1000, gateway=False)
    kinds = [k for k, _ in sent]
    assert kinds[0] == frames.HELLO
    hello = sent[0][1]
    assert hello[1] == "bed1" and hello[2] == 1 and hello[3] == 1 and hello[6] == "single"
    assert hello[5] == "halted"                      # a new DS1307 comes up with CH set: said, not hidden
    readings = [f for k, f in sent if k == frames.READING]
    assert len(readings) >= 8
    first = {}
    for n, b, seq, tm, raw, flags in readings:
        assert b == 1 and 0 <= raw <= 65535 and "Q" in flags
        first.setdefault(seq, (tm, raw))
    assert sorted(first) == list(range(1, board["seq"] + 1))
    assert board["pending"] == board["seq"] and board["card"] == "ok" and not board["wdt_overdue"]
    logs = [n for n in state["card"] if n.startswith("j") and n.endswith(".log")]
    assert logs and "boot.slt" in state["card"] and "jstate.bin" in state["card"]
    journal = b"".join(bytes.fromhex(state["card"][n]) for n in sorted(logs))
    assert journal.count(b"\n") == board["seq"]

    # Boot 2 on the same card and RTC (a reset): the boot counter goes up, the cache is replayed and acked.
    sent2, rx2, board2, state2 = boot(CFG, 1500, state=state, gateway=True, off_s=30)
    hello2 = sent2[0][1]
    assert sent2[0][0] == frames.HELLO and hello2[2] == 2
    replayed = {(f[1], f[2]) for k, f in sent2 if k == frames.READING}
    assert {(1, s) for s in first} <= replayed, "a reading cached before the reset was lost"
    boot1_frames = [f for k, f in sent2 if k == frames.READING and f[1] == 1]
    assert all("C" in f[5] for f in boot1_frames)    # replayed from the cache, with their own sample times
    assert {f[2]: (f[3], f[4]) for f in boot1_frames} == first
    assert any(f[1] == 2 and "L" in f[5] for k, f in sent2 if k == frames.READING)
    assert b"$T," in rx2 and board2["clock"] == "ok"  # the gateway set the clock; never the board at boot (F3)
    assert board2["pending"] == 0 and board2["inflight"] == 0 and not board2["wdt_overdue"]
    assert board2["led_changes"] > 0                  # acks blink the LED (a deadline, not a delay)
    logs2 = [n for n in state2["card"] if n.startswith("j") and n.endswith(".log")]
    assert len(logs2) <= 1                            # acked segments were deleted

    # Boot 3: the counter keeps going up (from the NVRAM and the card).
    sent3, _, _, _ = boot(CFG, 5, state=state2, gateway=False)
    assert sent3[0][1][2] == 3


@pytest.mark.micropython
@pytest.mark.parametrize("board_key", ["absent", "null"])
def test_default_board_id_derives_from_machine_unique_id(board_key):
    """config.json without a board id (config.example.json has `"board": null`): the hello names the board `b-` and
    the last 8 hex digits of machine.unique_id(), and carries the whole uid, under the real interpreter."""
    require_micropython()
    cfg = dict(CFG)
    if board_key == "absent":
        del cfg["board"]
    else:
        cfg["board"] = None
    sent, _, _, _ = boot(cfg, 1000, gateway=False)
    hello = [f for k, f in sent if k == frames.HELLO][0]
    assert (hello[1], hello[8]) == ("b-13572a2f", "e660383b13572a2f")     # the simulated machine's unique_id()


@pytest.mark.micropython
@pytest.mark.parametrize("role", ["master", "standby"])
def test_pair_roles_start_on_the_simulated_wire(role):
    require_micropython()
    cfg = dict(CFG, role=role, board="m1" if role == "master" else "s1")
    sent, _, board, _ = boot(cfg, 2500, gateway=False)
    hellos = [f for k, f in sent if k == frames.HELLO]
    assert hellos and hellos[0][6] == role           # (a master's standby_missing may come before its hello)
    events = [f[2] for k, f in sent if k == frames.EVENT]
    if role == "master":
        assert "standby_missing" in events            # F12: nobody ACKs at 0x08 on the pair's wire
    else:
        assert any(k == frames.WITNESS_QUERY for k, _ in sent)   # no beat for 10 s: ask the gateway first
        assert "takeover" in events                   # no answer within 3 s: take over
        assert any("S" in f[5] for k, f in sent if k == frames.READING)


@pytest.mark.micropython
@pytest.mark.parametrize("config, line", [
    (dict(CFG, window=0), "soil: cannot start: config.json: 'window' must be above 0, got 0; reset in 5000 ms"),
    (dict(CFG, role="boss"), "soil: cannot start: config.json: 'role' must be one of single, master, standby, got "
                             "'boss'; reset in 5000 ms"),
    (dict(CFG, intervall_ms=500), "soil: config.json: unknown setting 'intervall_ms' ignored"),
])
def test_a_wrong_setting_is_one_line_without_a_traceback(config, line):
    """main.main() on the simulated board: a user's mistake in config.json is said in one line naming the key, and
    the board resets to try again (machine.reset() ends the run here); no traceback for a mistake."""
    require_micropython()
    d = tempfile.mkdtemp(prefix="mpyport-")
    try:
        with open(os.path.join(d, "script.py"), "w") as f:
            # A start that fails resets (machine.Reset ends the run); one that works is not looped for good.
            run = "main.start(None, line)" if "intervall_ms" in config else "main.main(line)"
            f.write("import machine, simboard\nsimboard.prepare()\nimport main\n"
                    "line = (simboard._B['rx'], simboard._B['tx'])\n"
                    "try:\n    %s\nexcept machine.Reset:\n    print('RESET')\n" % run)
        with open(os.path.join(d, "_simstate.py"), "w") as f:
            f.write(simstate(config, 0, gateway=False))
        proc = run_micropython(os.path.join(d, "script.py"), libs=LIBS, timeout=120, packages=PACKAGES)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    assert line in proc.stderr.splitlines(), proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.micropython
def test_card_absent_readings_wait_on_the_flash_then_reach_the_card_and_the_gateway():
    """Issue 12: with the slot empty, readings wait in the fallback journal on the board's flash (/fallback, a card
    model of a Pico's LittleFS), survive the reset, and are moved to the card and sent when it is back."""
    require_micropython()
    _, _, board0, state = boot(CFG, 5, gateway=False)
    state["card_removed"] = True
    sent1, _, board1, state1 = boot(CFG, 600, state=state, gateway=False)
    assert board1["card"] == "absent" and board1["fallback"] and board1["dropped"] == 0
    assert board1["fallback_pending"] == board1["seq"] >= 5
    flash_logs = [n for n in state1["flash"] if n.startswith("j") and n.endswith(".log")]
    assert flash_logs and "jstate.bin" in state1["flash"]
    state1["card_removed"] = False                  # the card is pushed back in, and the board resets
    sent2, _, board2, state2 = boot(CFG, 1500, state=state1, gateway=True, off_s=5)
    replayed = {(f[1], f[2]) for k, f in sent2 if k == frames.READING}
    assert {(2, s) for s in range(1, board1["seq"] + 1)} <= replayed, "a reading kept on the flash was lost"
    assert board2["fallback_pending"] == 0 and board2["pending"] == 0 and board2["dropped"] == 0
    assert len([n for n in state2["flash"] if n.endswith(".log")]) <= 1   # moved segments deleted (the open one stays)


@pytest.mark.micropython
@pytest.mark.parametrize("role, kept", [("single", False), ("master", True), ("standby", True)])
def test_only_a_pairs_roles_keep_the_heartbeat_module(role, kept):
    """Heap diet: after main.start() a single board keeps no soil.heartbeat (start-up imports it for two settings'
    defaults only) while a pair's board keeps it, and each role keeps only its own side of the pair."""
    require_micropython()
    d = tempfile.mkdtemp(prefix="mpyport-")
    try:
        with open(os.path.join(d, "script.py"), "w") as f:
            f.write("import sys, simboard\nsimboard.prepare()\nimport main\n"
                    "hal, c = main.start(None, (simboard._B['rx'], simboard._B['tx']))\n"
                    "print('MODULES', ' '.join(sorted(n for n in sys.modules if n.startswith('soil'))))\n")
        with open(os.path.join(d, "_simstate.py"), "w") as f:
            f.write(simstate(dict(CFG, role=role), 0, gateway=False))
        proc = run_micropython(os.path.join(d, "script.py"), libs=LIBS, timeout=120, packages=PACKAGES)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("MODULES ")]
    assert line, proc.stdout + proc.stderr
    modules = line[0].split()[1:]
    assert ("soil.heartbeat" in modules) == kept, modules
    assert ("soil.standby" in modules) == (role == "standby") and ("soil.master" in modules) == (role == "master")
    assert "soil.board" not in modules and "soil.bootcount" not in modules
