"""The virtual Pico's SD card model (tools/sim/vpico/devices/sdcard*.mjs) under node:test: the SPI-mode protocol
byte by byte as micropython-lib's sdcard driver drives it, every fault, a blank card formatted by mkfs.fat, and the
card plugged into a real rp2040js RP2040 (skipped by node when rp2040js is not installed: `make vpico`)."""

import os
import shutil
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = ["tools/sim/vpico/test/sdcard.test.mjs", "tools/sim/vpico/test/sdcard_attach.test.mjs"]


def test_sdcard_model_node_tests():
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    if not any(shutil.which(p) or os.path.exists(p) for p in ("mkfs.fat", "/usr/sbin/mkfs.fat", "/sbin/mkfs.fat")):
        pytest.skip("mkfs.fat is not installed (bash tools/ensure-dosfstools.sh)")
    done = subprocess.run(["node", "--test"] + TESTS, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "# fail 0" in done.stdout
    print([line for line in done.stdout.splitlines() if line.startswith(("# pass", "# skipped"))])
