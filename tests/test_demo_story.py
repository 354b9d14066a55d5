"""`make demo` end to end, and what the README says about it: the readings a brand-new board samples before the
gateway sets its clock are flagged suspect with time 2000-01-01, and the summary counts them (the README once
said "the very first reading", where each run had one to three)."""

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import private_dir, require_server

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROW = re.compile(r"row \d+\s+bed-1 boot (\d+) seq (\d+)\s+sampled (\S+ \S+)\s+raw \d+ (\w+)\s+(\w+)")


def test_demo_counts_the_readings_sampled_before_the_clock_was_set_as_the_readme_says():
    require_server()
    with private_dir("demo") as run_dir:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "firmware", "lib")]))
        done = subprocess.run([sys.executable, "-m", "tools.demo", "--run-dir", os.path.join(run_dir, "d")],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=380)
    out = done.stdout
    assert done.returncode == 0, (out[-3000:], done.stderr[-3000:])
    m = re.search(r"before the clock was set:\s+(\d+) \(seq ([\d, -]+):", out)
    assert m, out
    counted = int(m.group(1))
    printed = {int(seq): (sampled, quality) for _, seq, sampled, _, quality in ROW.findall(out)}
    unset = sorted(seq for seq, (sampled, quality) in printed.items() if quality == "suspect")
    assert counted >= 1 and [int(s) for s in m.group(2).split(", ")] == unset == list(range(1, counted + 1)), out
    assert all(printed[seq][0].startswith("2000-01-01") for seq in unset), printed
    assert re.search(r"\(\d+ s\)$", out.strip()), out[-300:]          # the demo says how long it took
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = " ".join(f.read().split())
    assert "The very first reading of a brand-new board" not in readme
    assert "before the gateway has set its clock" in readme and "about a minute and a half" not in readme
