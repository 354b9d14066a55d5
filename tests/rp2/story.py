"""The issue-13 story on the virtual Pico, shared by the stock and frozen runs (test_rp2_story.py) and the bench
(tools/bench/rp2.py): `make flash BOARD=pico PORT=<its pty>`, the frames in `soil-gateway monitor`, the gateway
storing the readings in a private MariaDB with the DS1307's times."""

import os
import re
import subprocess
import sys
import time
import types

from tests.rp2.vpico import REPO, mpremote
from tools.demo.stack import GatewayProc, admin_query, wait_for
from tools.rp2 import images

MONITOR_LINE = re.compile(r"^\d\d:\d\d:\d\d R (\d+) (\d+) (\d+) (\S+) (\d+) ", re.M)


def sdcard_args():
    """The flash arguments of an offline user: micropython-lib's sdcard driver from a checkout, here the one the
    image was built from, instead of `mpremote mip install sdcard` (which downloads it). Flash compiles it to
    lib/sdcard.mpy, as mip would have installed it."""
    driver = images.sdcard_driver()
    assert driver, "no micropython-lib checkout in the rp2 cache (tools/rp2/build.sh src)"
    return ("--sdcard", driver)


def install_sdcard_offline(board):
    """The driver alone, before any firmware (the card tests drive it from the REPL first): lib/sdcard.mpy as
    `make flash ... --sdcard FILE` deploys it (tools/flash.py's own function)."""
    import tempfile
    from tools import flash
    with tempfile.TemporaryDirectory(prefix="soil-sdcard-") as tmp:
        host, target = flash.sdcard_deployment(sdcard_args()[1], tmp, mpy=True)
        mpremote(board, "mkdir", ":lib", check=False)
        mpremote(board, "cp", host, ":" + target)


def make_flash(board, board_id, *flash_args, timeout=600):
    """`make flash BOARD=pico PORT=... ID=...` as a user types it; returns (seconds, stderr)."""
    t = time.monotonic()
    args = ["make", "-s", "flash", "BOARD=pico", "PORT=%s" % board.tty, "ID=%s" % board_id]
    if flash_args:
        args.append("FLASH_ARGS=%s" % " ".join(flash_args))
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:], board.log()[-2000:])
    return time.monotonic() - t, done.stderr


def monitor(board, seconds):
    """`soil-gateway monitor PORT --seconds N`: the frames decoded, one line each."""
    done = subprocess.run([sys.executable, "-m", "gateway", "monitor", board.tty, "--seconds", str(seconds)],
                          cwd=REPO, capture_output=True, text=True, timeout=seconds + 60)
    assert done.returncode == 0, (done.stdout, done.stderr)
    return done.stdout


def gateway_for(dbserver, run_dir, boards):
    """The gateway service (tools/demo/stack.GatewayProc, as the demo and the integration tests run it) against the
    session's private server (tests/conftest.py `dbserver`)."""
    stack = types.SimpleNamespace(db=dbserver, db_servers=[], db_options={}, run_dir=run_dir,
                                  gateway_password=dbserver.gateway_password)
    return GatewayProc(stack, boards).start()


def rtc_rows(dbserver, board_id):
    return admin_query(dbserver.admin_kwargs(), "SELECT boot, seq, date_saved, moisture_raw, source, time_quality, "
                       "received_at FROM plants WHERE board = %s AND time_quality = 'rtc' ORDER BY boot, seq",
                       (board_id,))


def wait_rtc_rows(dbserver, board_id, n, timeout):
    return wait_for(lambda: (lambda r: r if len(r) >= n else None)(rtc_rows(dbserver, board_id)), timeout,
                    "%d readings of %s with RTC times" % (n, board_id), interval=0.5)
