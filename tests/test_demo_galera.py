"""`make demo-galera` end to end (three Galera nodes, three site gateways, six virtual boards; a node killed, a
site cut off): it exits 0 and its summary, taken after the boards stopped sampling and drained, says every reading
sampled is stored once and every node holds the same rows."""

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import private_dir, require_server
from tools.galera.cluster import PROVIDER

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_demo_galera_node_killed_site_cut_off_every_reading_once():
    require_server()
    if not os.path.exists(PROVIDER):
        pytest.fail("galera-4 is not installed (make deps runs tools/ensure-galera.sh)")
    with private_dir("demo-galera") as run_dir:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "firmware", "lib")]))
        done = subprocess.run([sys.executable, "-m", "tools.demo.galera", "--run-dir", os.path.join(run_dir, "d")],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    out = done.stdout
    assert done.returncode == 0, (out[-3000:], done.stderr[-3000:])
    assert re.search(r"site 1's gateway now writes to node[23] \(via the link\)", out), out
    assert re.search(r"site 2's boards hold \d+ and \d+ readings on their cards", out), out
    summary = out[out.index("== 5."):]
    sampled = int(re.search(r"readings sampled:\s+(\d+)", summary).group(1))
    stored = int(re.search(r"readings stored:\s+(\d+)", summary).group(1))
    assert sampled == stored and stored >= 60, summary
    assert re.search(r"stored twice:\s+0\b", summary) and re.search(r"missing:\s+0\b", summary), summary
    assert "every node holds the same rows: yes" in summary, summary
