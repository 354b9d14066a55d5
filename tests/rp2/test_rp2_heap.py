"""BRIEF.md's firmware RAM budget on the real rp2 port: each role as `make flash` deploys it (.mpy on the stock
image, micropython-lib's sdcard as lib/sdcard.mpy, as `mpremote mip install sdcard` installs it), the heap
`gc.mem_alloc()` after start-up at most 48 KB, and at most 64 KB over a quiet 30 s run (tools/bench/rp2.py `heap`,
the same measurement `make bench` reports).

Heap sizes are not timings: the same image and the same firmware give the same bytes, run after run. What moves
them is code: every name the firmware interns stays in the board's RAM, and a qstr pool that fills is followed by
one twice its size (about 3.8 KB at the sixth pool of the stock image: docs/MICROPYTHON.md), so a few names more
can cost 4 KB at once. This test is where that shows first."""

import pytest

from tests.rp2.story import sdcard_args
from tests.rp2.vpico import VPico
from tools.bench import rp2 as bench

pytestmark = pytest.mark.timeout(900)

AFTER_START_UP = 48 * 1024
PEAK = 64 * 1024


def test_each_role_fits_the_heap_budget_on_the_stock_image(tmp_path, rp2_image):
    with VPico(str(tmp_path / "pico"), rp2_image) as board:
        bench.flash(board, *sdcard_args())
        heap = bench.heap(board, bench.ROLES, *sdcard_args())
    assert set(heap) == set(bench.ROLES), heap
    report = {role: ("%d B after start-up, %d B peak, %d names in %d pools"
                     % (h["start"] - h["base"], h["peak"] - h["base"], h["qstrs"], h["qstr_pools"]))
              for role, h in heap.items()}
    for role, h in heap.items():
        assert h["base"] > 0 and h["start"] > h["base"], (role, h)        # it measured the firmware
        assert h["start"] - h["base"] <= AFTER_START_UP, report
        assert h["peak"] - h["base"] <= PEAK, report
