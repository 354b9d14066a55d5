"""The story on the real rp2 firmware: `make flash BOARD=pico PORT=<the virtual Pico's pty>` copies the .mpy files
onto its LittleFS with the real mpremote and soft-resets it, the firmware starts, its frames decode in
`soil-gateway monitor`, and the gateway stores its readings in a private MariaDB with the DS1307's times. Then the
same with the core frozen into the image (FLASH_ARGS=--frozen)."""

import datetime
import os

import pytest

from tests.rp2.story import (MONITOR_LINE, gateway_for, make_flash, monitor, sdcard_args,
                             wait_rtc_rows)
from tests.rp2.vpico import VPico, mpremote

pytestmark = pytest.mark.timeout(900)

RAW = 26006                      # --opt soil.value=1625 (the default), as read_u16 reads it


def _story(dbserver, tmp_path, image, board_id, frozen):
    with VPico(str(tmp_path / "pico"), image) as board:
        seconds, log = make_flash(board, board_id, *(["--frozen"] if frozen else sdcard_args()))
        assert ("--frozen: the image holds soil" in log) == frozen, log
        assert "reset soft" in log and ("23 copied" in log or frozen), log     # with lib/sdcard.mpy
        frames = monitor(board, 8)              # main.py started at the soft reset
        readings = MONITOR_LINE.findall(frames)
        assert len(readings) >= 2 and all(int(r[4]) == RAW for r in readings), frames
        gw = gateway_for(dbserver, str(tmp_path / "gw"), [board])
        try:
            rows = wait_rtc_rows(dbserver, board_id, 3, 240)
        finally:
            gw.stop()
        names = mpremote(board, "ls", ":lib/soil" if not frozen else ":").stdout
        assert ("uplink.mpy" in names) != frozen, names
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    for boot, seq, saved, raw, source, quality, received in rows:
        assert raw == RAW and quality == "rtc"
        assert abs((saved - now).total_seconds()) < 600, (saved, now)     # the DS1307's time, set by the gateway
        assert abs((received - saved).total_seconds()) < 120, (saved, received)
    keys = [(r[0], r[1]) for r in rows]
    assert len(keys) == len(set(keys))
    return seconds


def test_make_flash_stock_image_gateway_stores_rtc_readings(dbserver, tmp_path, rp2_image):
    seconds = _story(dbserver, tmp_path, rp2_image, "rp2-stock", frozen=False)
    print("make flash (full, stock + .mpy): %.1f s" % seconds)


def test_make_flash_frozen_image_gateway_stores_rtc_readings(dbserver, tmp_path, rp2_frozen_image):
    seconds = _story(dbserver, tmp_path, rp2_frozen_image, "rp2-frozen", frozen=True)
    print("make flash (full, frozen): %.1f s" % seconds)
