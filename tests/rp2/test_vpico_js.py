"""The virtual Pico's pure JS models under node:test (tools/sim/vpico/test/*.test.mjs: the DS1307's datasheet rules,
the UF2 loader, and whatever the other devices add there)."""

import os
import shutil
import subprocess

import pytest

from tests.rp2.vpico import REPO


def test_node_test_suite():
    if shutil.which("node") is None:
        pytest.skip("rp2: node is not installed")
    folder = os.path.join(REPO, "tools", "sim", "vpico")
    files = sorted(f for f in os.listdir(os.path.join(folder, "test")) if f.endswith(".test.mjs"))
    done = subprocess.run(["node", "--test"] + ["test/" + f for f in files], cwd=folder, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "# fail 0" in done.stdout
