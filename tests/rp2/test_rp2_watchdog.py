"""The RP2040's watchdog after Ctrl-C: a started machine.WDT cannot be stopped through MicroPython's API, so a Pico
whose firmware mpremote (or a serial monitor) interrupted used to reset `wdt_ms` later, in the middle of a `make
flash` or a REPL session. hal.stop_watchdog clears the watchdog's CTRL.ENABLE on the way back to the REPL; the
real rp2 firmware on the virtual Pico (whose rp2040js watchdog resets the chip when it runs out) shows it."""

import pytest

from tests.rp2.story import make_flash, monitor
from tests.rp2.vpico import VPico, mpremote

pytestmark = pytest.mark.timeout(600)

WDT_MS = 2000


def test_a_board_stopped_by_ctrl_c_is_not_reset_by_its_watchdog(tmp_path, rp2_frozen_image):
    with VPico(str(tmp_path / "pico"), rp2_frozen_image) as board:
        make_flash(board, "rp2-wdt", "--frozen", "--set", "wdt_ms=%d" % WDT_MS)
        assert " R " in monitor(board, 4)                     # main.py runs: its watchdog is started and fed
        # mpremote interrupts main.py (Ctrl-C), then the board sleeps three watchdog periods at the raw REPL.
        done = mpremote(board, "exec", "import time, machine\n"
                        "t = time.ticks_ms()\n"
                        "time.sleep_ms(%d)\n"
                        "print('awake', time.ticks_diff(time.ticks_ms(), t), machine.mem32[0x40058000] >> 30 & 1)"
                        % (3 * WDT_MS), check=False, timeout=90)
        log = board.log()
    assert done.returncode == 0 and "awake" in done.stdout, (done.stdout, done.stderr, log[-2000:])
    slept, enabled = done.stdout.split("awake")[1].split()
    assert int(slept) >= 3 * WDT_MS and enabled == "0", done.stdout
    assert "reset (watchdog)" not in log, log[-2000:]
