"""The dashboard in a real browser (headless Debian Chromium) against a running stack: a private MariaDB, two
virtual boards and the gateway with its dashboard on a free port. The page lists the boards; an outage (the
database server stopped) shows them caching with readings pending on their cards and why; after the replay the
chart shows bands where readings arrived by replay, and each probe's line has exactly one vertex per stored reading
of the range, in percent through the probes' calibrations (raw on request); a board whose power is cut shows its
port gone and its alert. The last outage is saved as docs/img/dashboard.png (README.md shows it)."""

import os
import re

import pytest

from tools.browser import chromium
from tools.demo.stack import ROOT, wait_for

pytestmark = pytest.mark.integration

SCREENSHOT = os.path.join(ROOT, "docs", "img", "dashboard.png")
BOARDS = ("bed-1", "bed-2")
CARDS = "[...document.querySelectorAll('#boards .card')]"


@pytest.fixture
def page():
    why = chromium.missing()
    if why:
        pytest.skip(why)
    b = chromium.Browser()
    try:
        yield b
    finally:
        b.close()


def rows_in_last_hour(stack):
    """Per board, the rows the hour range covers (the same bounds as gateway/web/data.py)."""
    return dict(stack.query("SELECT board, COUNT(*) FROM plants WHERE board IS NOT NULL AND "
                            "date_saved >= UTC_TIMESTAMP() - INTERVAL 1 HOUR GROUP BY board"))


def cards_all(state, pending_positive=False):
    cond = "c.dataset.state === '%s'" % state
    if pending_positive:
        cond += " && Number(c.dataset.pending) > 0 && c.querySelector('.why').textContent.includes('database down')"
    return "%s.length === %d && %s.every(c => %s)" % (CARDS, len(BOARDS), CARDS, cond)


def outage(stack, page, pending=1):
    """Stop the database server; wait until the page shows every board caching with readings on its card."""
    stack.db.stop()
    page.wait(cards_all("caching", pending_positive=True), timeout_s=40)
    page.wait("%s.every(c => Number(c.dataset.pending) >= %d)" % (CARDS, pending), timeout_s=40)


def test_dashboard_in_a_browser(stack, page):
    for i, name in enumerate(BOARDS):
        stack.start_board(name, interval_ms=1000, status_interval_ms=1000, seed=31 + i)
    # Alerts on, quick: a board silent for 3 s opens an alert the page lists.
    gw = stack.start_gateway(dashboard={"port": 0}, sections={"alerts": {"silent_after_s": 3, "every_s": 1}})
    url = gw.dashboard_url()
    wait_for(lambda: all(rows_in_last_hour(stack).get(b, 0) >= 5 for b in BOARDS), 60, "live rows of both boards")

    # Both probes calibrated (as `soil-gateway calibrate` stores it): the chart is in percent.
    for b in BOARDS:
        stack.query("INSERT INTO calibrations (board, probe, raw_dry, raw_wet, effective_from, created_at) VALUES "
                    "(%s, 0, 32000, 17000, '1000-01-01', UTC_TIMESTAMP(3))", (b,))

    page.open(url)
    page.wait(cards_all("online"))
    page.wait("document.body.dataset.value === 'pct'")
    assert page.eval("document.querySelector('#value-name').textContent") == "(%)"
    assert sorted(page.eval("%s.map(c => c.dataset.board)" % CARDS)) == list(BOARDS)
    assert page.eval("document.querySelector('#database').textContent").count("taking writes") == 1
    page.wait("document.querySelector('#alerts tbody').textContent === 'none open'")
    page.eval("pollEvents()")
    page.wait("[...document.querySelectorAll('#events tbody tr')].some(r => r.textContent.includes('bed-1'))")

    outage(stack, page)
    texts = page.eval("%s.map(c => c.textContent)" % CARDS)
    assert all("on its card" in t for t in texts), texts
    stack.db.start()
    page.wait(cards_all("online"), timeout_s=60)
    wait_for(lambda: stack.query("SELECT COUNT(*) FROM plants WHERE source = 'replay'")[0][0] > 0, 30,
             "replayed rows")

    # The chart after the replay: bands where readings arrived by replay.
    page.eval("pollChart()")
    assert page.eval("document.querySelectorAll('#chart-all rect.band').length") > 0

    # A second outage for the picture: boards caching, pending counts, and the first outage's bands.
    outage(stack, page, pending=6)
    page.screenshot(SCREENSHOT)
    with open(SCREENSHOT, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    stack.db.start()
    page.wait(cards_all("online"), timeout_s=60)

    # Stop sampling, wait until every board's card is empty and the rows stop growing, then compare the vertices
    # drawn in each probe's chart with the rows in the database.
    for b in stack.boards:
        b.stop_sampling()
    page.wait("%s.every(c => c.dataset.pending === '0')" % CARDS, timeout_s=60)
    last = {}

    def settled():
        now = rows_in_last_hour(stack)
        done = now == last.get("rows")
        last["rows"] = now
        return done and all(gw_board["pending"] == 0 for gw_board in page.eval(
            "fetch('/api/status').then(r => r.json()).then(s => s.boards)"))
    wait_for(settled, 30, "the rows to stop growing", interval=1.5)
    stored = last["rows"]
    page.eval("pollChart()")
    drawn = page.eval("Object.fromEntries([...document.querySelectorAll('#charts .chart')].map(c => "
                      "[c.dataset.probe, c.querySelector('path.series').getAttribute('d')]))")
    assert sorted(drawn) == list(BOARDS)
    for name in BOARDS:
        vertices = len(re.findall(r"[ML]", drawn[name]))
        assert vertices == stored[name], (name, vertices, stored[name])
    assert page.eval("document.querySelector('#chart-note').textContent").startswith(
        "%d readings" % sum(stored.values()))
    # The percent drawn is the view's: each probe's lowest and highest point against the moisture view.
    view = dict((b, (float(lo), float(hi))) for b, lo, hi in stack.query(
        "SELECT board, MIN(pct), MAX(pct) FROM moisture WHERE sample_time >= UTC_TIMESTAMP() - INTERVAL 1 HOUR "
        "GROUP BY board"))
    drawn_pct = page.eval("fetch('/api/readings?range=hour').then(r => r.json()).then(r => Object.fromEntries("
                          "r.series.map(s => [s.name, [Math.min(...s.points.map(p => p[1])), "
                          "Math.max(...s.points.map(p => p[1]))]])))")
    assert {b: tuple(v) for b, v in drawn_pct.items()} == view, (drawn_pct, view)
    # "raw" on request.
    page.eval("document.querySelector('#raw-toggle').click()")
    page.wait("document.body.dataset.value === 'raw'")
    assert page.eval("document.querySelector('#value-name').textContent") == "(raw)"

    # A board whose power is cut: its port is gone, and the page says so (the other board stays online).
    stack.boards[1].kill()
    page.wait("(c => c && c.dataset.state === 'caching' && c.dataset.cause === 'port' && "
              "c.querySelector('.why').textContent.startsWith('port gone'))"
              "(document.querySelector('#boards .card[data-board=\"bed-2\"]'))", timeout_s=30)
    assert page.eval("document.querySelector('#boards .card[data-board=\"bed-1\"]').dataset.state") == "online"
    page.wait("[...document.querySelectorAll('#alerts tbody tr.alert-silent')].some(r => "
              "r.textContent.includes('bed-2') && r.textContent.includes('port'))", timeout_s=30)
    errors = page.command("errors")["value"]
    assert not [e for e in errors if "503" not in e and "Failed to load resource" not in e], errors
