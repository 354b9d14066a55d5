"""The virtual Pico's JavaScript models under node's own test runner (tools/sim/vpico/test/*.test.mjs): the SD
card's SPI protocol and the I2C target mode, driven byte by byte and register by register as the rp2 firmware and
the pico-sdk drive them. They need rp2040js and node, not the firmware image."""

import glob
import os
import re
import shutil
import subprocess

import pytest

from tests.rp2.conftest import VPICO_MODULES
from tests.rp2.vpico import REPO

pytestmark = pytest.mark.timeout(600)

TESTS = sorted(glob.glob(os.path.join(REPO, "tools", "sim", "vpico", "test", "*.test.mjs")))


def test_the_models_pass_their_node_tests():
    if shutil.which("node") is None or not os.path.isdir(VPICO_MODULES):
        pytest.skip("rp2: node or rp2040js missing (make vpico)")
    assert TESTS, "no tools/sim/vpico/test/*.test.mjs"
    done = subprocess.run(["node", "--test"] + TESTS, cwd=REPO, capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    passed = re.search(r"^# pass (\d+)$", done.stdout, re.M)
    assert "# fail 0" in done.stdout and passed and int(passed.group(1)) > 0, done.stdout[-2000:]
