"""`make demo`: the book's fault-tolerant collector story, run on real parts with nothing else to install.

1. A private MariaDB server starts with the book's own `plant_moisture.plants` table and two old rows; the gateway's
   migration adopts it in place.
2. A virtual board (the firmware's portable core on simulated chips, on a real pseudo-terminal) and the gateway
   start; live readings arrive.
3. The database server is stopped: the board caches on its SD card.
4. The server comes back: the cache is replayed with the sample times preserved.
5. A summary read back from the database shows every reading present once, and which rows were replayed.
6. The grower's view: the probe is calibrated (`soil-gateway calibrate`), the readings show in percent, and the
   dashboard the gateway serves is photographed by a headless Chromium (run/demo/dashboard.png).
7. A redundant pair (master and standby joined by an I2C heartbeat wire): the master's power is cut, the standby
   takes over without a gap, the master comes back and takes over again; no slot is missing or stored twice.

It exits 0 when every check passed (1 otherwise) within about two minutes; `--keep-running` leaves it all running.
"""

import argparse
import datetime
import os
import subprocess
import sys
import time

from tools.browser import chromium
from tools.demo.stack import ROOT, Stack, wait_for

BOOK_TABLE = """CREATE TABLE `plant_moisture`.`plants` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `moisture_raw` int(11) DEFAULT NULL,
  `date_saved` timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (`id`)
) ENGINE=InnoDB AUTO_INCREMENT=257 DEFAULT CHARSET=latin1"""


def say(text=""):
    print(text, flush=True)


def step(text):
    say("\n== %s" % text)


class RowPrinter:
    """Prints rows as they land, like `SELECT ... ORDER BY id` run again and again."""

    def __init__(self, stack):
        self.stack = stack
        self.last_id = 0

    def poll(self):
        rows = self.stack.query("SELECT id, board, boot, seq, date_saved, moisture_raw, source, time_quality, "
                                "received_at FROM plants WHERE id > %s AND board IS NOT NULL ORDER BY id",
                                (self.last_id,))
        for r in rows:
            self.last_id = r[0]
            say("  row %-5d %s boot %d seq %-4d sampled %s  raw %-5d %-6s %-7s received %s"
                % (r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8].strftime("%H:%M:%S.%f")[:-3]))
        return len(rows)

    def watch(self, seconds, until=None):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.poll()
            if until is not None and until():
                return True
            time.sleep(0.2)
        self.poll()
        return until() if until else True


def main(argv=None):
    p = argparse.ArgumentParser(prog="demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--run-dir", default=os.path.join(ROOT, "run", "demo"))
    p.add_argument("--keep-running", action="store_true", help="leave everything running until Ctrl-C")
    p.add_argument("--interval-ms", type=int, default=500)
    p.add_argument("--outage-s", type=float, default=8.0)
    p.add_argument("--no-pair", action="store_true", help="skip the redundant-pair part")
    args = p.parse_args(argv)

    import shutil
    started = time.monotonic()
    shutil.rmtree(args.run_dir, ignore_errors=True)
    failures = []
    stack = Stack(args.run_dir)
    try:
        step("1. a private MariaDB server with the book's table")
        stack.start_db(before_migrate=_create_book_table)
        say("  server pid %d, port %d, data in %s" % (stack.db.pid, stack.db.port, os.path.relpath(
            os.path.join(args.run_dir, "db"), ROOT)))
        legacy = stack.query("SELECT * FROM plants ORDER BY id")
        say("  the book's rows, adopted in place (SELECT * still shows the book's three columns):")
        for r in legacy:
            say("    %r" % (r,))

        step("2. a virtual board and the gateway; live readings")
        board = stack.start_board("bed-1", interval_ms=args.interval_ms, status_interval_ms=2000, seed=7)
        say("  " + board.banner)
        stack.start_gateway(dashboard={"port": 0})
        say("  gateway pid %d, config %s" % (stack.gateway.proc.pid,
                                              os.path.relpath(stack.gateway.config_path, ROOT)))
        printer = RowPrinter(stack)
        printer.watch(30, until=lambda: printer.last_id and len(stack.readings("bed-1")) >= 8)

        step("3. database outage: the server is stopped; the board caches on its SD card")
        stack.db.stop()
        down_at = _utcnow()
        deadline = time.monotonic() + args.outage_s
        while time.monotonic() < deadline:
            st = board.status()
            say("  %s  board pending %-3d in flight %-2d card %s" % (time.strftime("%H:%M:%S"), st["pending"],
                                                                      st["inflight"], st["card"]))
            time.sleep(2)
        cached = board.status()["pending"]

        step("4. the server is back: the cache is replayed with the sample times")
        stack.db.start()
        up_at = _utcnow()
        printer.watch(60, until=lambda: _drained(board))

        step("5. summary, read back from the database")
        rows = stack.readings("bed-1")
        ids = [(r[1], r[2]) for r in rows]
        replayed = [r for r in rows if r[5] == "replay"]
        sampled_in_outage = [r for r in rows if down_at < r[3] < up_at]
        missing = set(range(1, max(s for _, s in ids) + 1)) - {s for _, s in ids}
        unset = [r for r in rows if r[6] == "suspect"]
        say("  readings stored:            %d" % len(rows))
        say("  before the clock was set:   %d (seq %s: sampled while the new board's DS1307 was still halted, "
            "flagged suspect)" % (len(unset), ", ".join(str(r[2]) for r in unset) or "-"))
        say("  stored twice:               %d" % (len(ids) - len(set(ids))))
        say("  missing sequence numbers:   %d" % len(missing))
        say("  cached during the outage:   %d (board's count when the server came back)" % cached)
        say("  replayed rows:              %d" % len(replayed))
        say("  sampled during the outage:  %d, all replayed with their own sample time: %s"
            % (len(sampled_in_outage), all(r[5] == "replay" for r in sampled_in_outage)))
        if replayed:
            r = replayed[len(replayed) // 2]
            say("  e.g. seq %d sampled %s, received %s" % (r[2], r[3], r[7].strftime("%Y-%m-%d %H:%M:%S")))
        st = board.status()
        say("  board: pending %d, dropped %d, card %s, clock %s" % (st["pending"], st["dropped"], st["card"],
                                                                   st["clock"]))
        gws = stack.gateway.status() or {}
        for b in gws.get("boards", []):
            say("  gateway: %s frames %d, readings %d, bad frames %d, gaps %d, clock sets %d"
                % (b["board"], b["frames"], b["readings"], b["bad_frames"], b["gaps"], b["clock_sets"]))
        if len(ids) != len(set(ids)):
            failures.append("a reading was stored twice")
        if missing:
            failures.append("missing readings: %s" % sorted(missing)[:10])
        if not sampled_in_outage or not all(r[5] == "replay" for r in sampled_in_outage):
            failures.append("readings sampled during the outage were not replayed from the cache")
        if st["pending"] or st["dropped"]:
            failures.append("the board still holds %d readings or dropped %d" % (st["pending"], st["dropped"]))

        shot = grower_story(stack, args.run_dir, failures)

        if not args.no_pair:
            pair_story(stack, failures)

        if args.keep_running:
            step("running; Ctrl-C to stop (dashboard %s, gateway log %s)" % (
                stack.gateway.dashboard_url(), os.path.relpath(stack.gateway.log_path, ROOT)))
            try:
                printer.watch(10 ** 9)
            except KeyboardInterrupt:
                pass
    except (TimeoutError, RuntimeError, OSError) as e:
        failures.append(str(e))
    finally:
        stack.close()
    if failures:
        for f in failures:
            say("demo: FAILED: %s" % f)
        return 1
    say("\ndemo: every reading stored once, outage readings replayed with their sample times%s; the dashboard "
        "photographed in %s (%.0f s)"
        % ("" if args.no_pair else "; the standby covered the master's death with no gap and no double",
           shown(shot), time.monotonic() - started))
    return 0


# The virtual probe's model (tools/sim/chips/moisture.py) reads about 52,000 in dry soil and 26,000 just watered;
# a grower measures the two points with `calibrate --dry` / `--wet` (hardware/calibrate.md), the demo states them.
DEMO_CALIBRATION = (("dry", 52000), ("wet", 25000))


def shown(path):
    """A path as the user best reads it: relative to the checkout when inside it."""
    rel = os.path.relpath(path, ROOT)
    return path if rel.startswith("..") else rel


def gateway_command(stack, *args):
    """Run `soil-gateway ARGS -c <the demo gateway's config>` as a user would; its output lines."""
    argv = [sys.executable, "-m", "gateway", args[0], "-c", stack.gateway.config_path] + list(args[1:])
    say("  $ soil-gateway %s" % " ".join(args))
    done = subprocess.run(argv, cwd=ROOT, env=stack.gateway.command_env(), capture_output=True, text=True,
                          timeout=120)
    lines = (done.stderr + done.stdout).rstrip().splitlines()
    for line in lines:
        say("    " + line)
    if done.returncode != 0:
        raise RuntimeError("soil-gateway %s failed: %s" % (args[0], lines[-1] if lines else done.returncode))
    return lines


def grower_story(stack, run_dir, failures):
    """Calibrate the probe, then photograph the dashboard in percent. Returns the screenshot's path."""
    step("6. the grower's view: moisture in percent, and the dashboard")
    for point, raw in DEMO_CALIBRATION:
        gateway_command(stack, "calibrate", "bed-1", "--" + point, "--raw", str(raw))
    for t, raw, pct, flag in stack.query("SELECT sample_time, raw, pct, flag FROM moisture WHERE board = 'bed-1' "
                                         "ORDER BY sample_time DESC LIMIT 3"):
        say("  %s  raw %-5d  %5.1f %%  %s" % (t, raw, pct, flag))
    url = stack.gateway.dashboard_url()
    say("  dashboard: %s (read-only, on localhost; up while the demo runs: DEMO_ARGS=--keep-running keeps it)" % url)
    shot = os.path.join(run_dir, "dashboard.png")
    why = chromium.missing()
    if why:
        failures.append("no screenshot of the dashboard: %s" % why)
        return shot
    page = chromium.Browser()
    try:
        page.open(url)
        page.wait("document.body.dataset.value === 'pct' && Number(document.body.dataset.polls || 0) > 0", 30)
        page.screenshot(shot)
    finally:
        page.close()
    say("  screenshot: %s" % shown(shot))
    return shot


PAIR = {"interval_ms": 1000, "status_interval_ms": 2000, "hb_interval_ms": 1000, "hb_timeout_ms": 4000,
        "witness_timeout_ms": 3000, "handback_after_ms": 4000, "handback_margin_s": 3}


def pair_story(stack, failures):
    step("7. a redundant pair: the master dies and comes back (beat every 1 s, timeout 4 s)")
    wire = os.path.join(stack.run_dir, "hb.sock")
    master = stack.start_board("pair-a", role="master", hb_wire=wire, seed=21, **PAIR)
    standby = stack.start_board("pair-b", role="standby", hb_wire=wire, seed=22, **PAIR)
    say("  " + master.banner)
    say("  " + standby.banner)
    stack.gateway.stop()
    stack.start_gateway(boards=stack.boards, dashboard={"port": 0})   # the gateway now serves all three boards
    wait_for(lambda: standby.status()["role_state"] == "watching" and standby.status()["ring"] >= 2, 40,
             "the standby hearing the master")
    time.sleep(3)
    seen = [0]

    def show_events():
        rows = stack.query("SELECT received_at, board, event, detail FROM collector_events WHERE board LIKE "
                           "'pair-%%' ORDER BY id")
        for r in rows[seen[0]:]:
            say("  %s  %-6s %-16s %s" % (r[0].strftime("%H:%M:%S.%f")[:-3], r[1], r[2], r[3]))
        seen[0] = len(rows)
        return rows

    show_events()
    say("  %s  the master's power is cut (SIGKILL)" % time.strftime("%H:%M:%S"))
    master.kill()
    wait_for(lambda: any(r[2] == "takeover" for r in show_events()), 40, "the standby's takeover")
    time.sleep(3)
    say("  %s  the master is powered again" % time.strftime("%H:%M:%S"))
    master.start()
    wait_for(lambda: any(r[2] == "handback" for r in show_events()), 60, "the hand-back")
    wait_for(lambda: master.status()["publishing"], 30, "the master publishing")
    time.sleep(3)
    show_events()
    rows = stack.query("SELECT collector, COUNT(*), MIN(date_saved), MAX(date_saved) FROM plants "
                       "WHERE board LIKE 'pair-%%' AND time_quality='rtc' GROUP BY board, boot, collector "
                       "ORDER BY MIN(date_saved)")
    for collector, n, first, last in rows:
        say("  %-8s %3d readings  %s .. %s" % (collector, n, first.strftime("%H:%M:%S"), last.strftime("%H:%M:%S")))
    checked, missing, doubled = stack.slot_audit("pair-")
    say("  one-second slots: %d checked, %d missing, %d stored twice" % (checked, missing, doubled))
    if missing or doubled:
        failures.append("the pair left %d slots missing and %d doubled" % (missing, doubled))


def _create_book_table(conn):
    with conn.cursor() as cur:
        cur.execute("CREATE DATABASE IF NOT EXISTS plant_moisture")
        cur.execute(BOOK_TABLE)
        cur.execute("INSERT INTO plant_moisture.plants VALUES (NULL,456,'2015-11-27 15:9:8')")
        cur.execute("INSERT INTO plant_moisture.plants VALUES (NULL,457,'2015-11-27 15:9:21')")


def _utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None, microsecond=0)


def _drained(board):
    st = board.status()
    return st["pending"] == 0 and st["inflight"] == 0


if __name__ == "__main__":
    sys.exit(main())
