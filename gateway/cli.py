"""`soil-gateway`: the gateway's one command-line entry.

    soil-gateway run -c gateway.toml            serve the configured boards (the service's ExecStart)
    soil-gateway check -c gateway.toml          can the gateway write its database and open its ports?
    soil-gateway migrate -c gateway.toml --admin-socket /run/mysqld/mysqld.sock --provision
                                                create or upgrade the schema (adopts the book's table in place)
                                                and the gateway's least-privilege account
    soil-gateway monitor /dev/ttyACM0           a serial monitor that shows frames decoded (for the bench)
    soil-gateway monitor --listen /dev/ttyACM0  the same for a port the running gateway serves (its tap)
    soil-gateway status -c gateway.toml         the running service's boards, database and alerts, one screen
    soil-gateway calibrate -c gateway.toml bed-1 --dry   (then --wet): moisture in percent; --list, --remove ID
    soil-gateway export -c gateway.toml [--board B] [--probe N] [--from T] [--to T] [--format csv|jsonl] [-o FILE]
                                                readings with % and flag (the moisture view), streamed
    soil-gateway plot -c gateway.toml --board B [--probe N] [--from T] [--to T] [--raw] -o FILE.png
                                                a PNG of a range: replayed readings shaded, gaps as breaks

Errors print as `soil-gateway: message` on stderr with exit code 1; status goes to stderr, data to stdout.
"""

import argparse
import logging
import os
import signal
import sys
import threading
import time

PROG = "soil-gateway"
DEFAULT_TAP = "/run/soil-gateway/tap.sock"     # beside the systemd unit's --status /run/soil-gateway/status.json


class CliError(Exception):
    """An error to print as `soil-gateway: message` and exit 1."""


def _load_config(args):
    from gateway.config import ConfigError, load
    try:
        cfg = load(args.config)
    except ConfigError as e:
        raise CliError(str(e))
    for url in getattr(args, "board", None) or []:
        from gateway.config import board_config
        try:
            cfg.boards.append(board_config(url, args.baudrate, where="--board %s" % url))
        except ConfigError as e:
            raise CliError(str(e))
    return cfg


def cmd_run(args):
    from gateway.dbconn import DatabaseConfigError, DatabaseUnavailable
    from gateway.service import Gateway
    cfg = _load_config(args)
    if args.status:
        cfg.status_path = args.status
    if args.tap:
        cfg.tap_path = args.tap
    elif cfg.tap_path is None and cfg.status_path:
        cfg.tap_path = os.path.join(os.path.dirname(os.path.abspath(cfg.status_path)), "tap.sock")
    if not cfg.boards:
        raise CliError("no boards: add [[board]] url = ... to %s or pass --board URL" % args.config)
    gw = Gateway(cfg)
    if gw.tap is not None:
        try:
            gw.tap.check()
        except OSError as e:
            raise CliError("tap: %s" % e)
    try:
        gw.check_database()
    except DatabaseConfigError as e:
        raise CliError(str(e))
    except DatabaseUnavailable as e:
        # The service starts anyway: boards cache until the database is back.
        logging.getLogger("gateway").warning("database not reachable yet (%s); boards will cache", e)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    logging.getLogger("gateway").info("serving %d board(s)", len(cfg.boards))
    gw.run_forever(stop, status_every_s=args.status_every)
    return 0


def cmd_check(args):
    """The database as the gateway uses it (a write probe that is rolled back), then each configured port."""
    from gateway.db import ReadingStore
    from gateway.dbconn import DatabaseError
    from gateway.transport import SerialTransport
    cfg = _load_config(args)
    failed = 0
    store = ReadingStore(cfg.database)
    try:
        print("database ok: %s" % store.check())
    except DatabaseError as e:
        print("%s: %s" % (PROG, e), file=sys.stderr)
        failed += 1
    finally:
        store.close()
    for board in cfg.boards:
        try:
            SerialTransport(board, None).check_open()
        except Exception as e:  # any failure to open is this port's one line, and check goes on to the next
            print("%s: port %s: cannot open: %s" % (PROG, board.name, e), file=sys.stderr)
            failed += 1
        else:
            print("port %s ok: opens at %d baud" % (board.name, board.baudrate))
    return 1 if failed else 0


# What `migrate` needs of its account, for the message when the account lacks it.
_ADMIN_DENIED = (1044, 1045, 1142, 1143, 1227, 1410, 1698)


def _admin_config(args, db):
    """The admin account's DbConfig: --admin-socket if given, else where the gateway connects (with `servers`:
    the primary among them). No default database (it may not exist yet); no read timeout (adopting a big table
    is one long ALTER)."""
    import dataclasses
    from gateway.primary import find_primary
    admin = dataclasses.replace(db, user=args.admin_user, password=os.environ.get(args.admin_password_env, ""),
                                database=None, read_timeout=None, write_timeout=None)
    if args.admin_socket:
        return dataclasses.replace(admin, unix_socket=args.admin_socket, servers=(), ssl_ca=None, ssl_cert=None,
                                   ssl_key=None)
    if admin.servers:
        return find_primary(admin)
    return admin


def cmd_migrate(args):
    import pymysql
    from gateway import schema
    from gateway.dbconn import DatabaseError, classify, connect
    cfg = _load_config(args)
    db = cfg.database
    if args.provision and not db.password:
        # Before any migration: a half-done install (schema but no account) is what the user would get otherwise.
        raise CliError("--provision needs the gateway account's password: set $SOIL_DB_PASSWORD (or the variable "
                       "[database] password_env names) as the service will; nothing was changed")
    try:
        admin = _admin_config(args, db)
        conn = connect(admin)
    except DatabaseError as e:
        hint = ""
        if e.errno in (1045, 1130, 1698) and not args.admin_socket:
            hint = ("; on a stock MariaDB root logs in only over the socket, as the system's root: "
                    "sudo soil-gateway migrate ... --admin-socket /run/mysqld/mysqld.sock")
        raise CliError("migrate: %s%s" % (e, hint))
    try:
        applied = schema.migrate(conn, db.database)
        print("schema up to date: database %s on %s; applied: %s"
              % (db.database, admin.where(), ", ".join(map(str, applied)) or "nothing"))
        if args.provision:
            hosts = tuple(args.gateway_host or schema.GATEWAY_HOSTS)
            schema.provision_gateway_account(conn, db.user, db.password, hosts, database=db.database)
            print("account %s provisioned for host(s) %s (least privilege)" % (db.user, ", ".join(hosts)))
    except schema.MigrationError as e:
        raise CliError(str(e))
    except pymysql.MySQLError as e:
        err = classify(e, admin)
        if err.errno in _ADMIN_DENIED:
            raise CliError("migrate: the account %s may not change %s (error %s: %s): run migrate as an "
                           "administrative account (CREATE, ALTER, INDEX, TRIGGER, CREATE USER, GRANT OPTION), "
                           "e.g. root over the server's socket (sudo, --admin-socket /run/mysqld/mysqld.sock)"
                           % (admin.where(), db.database, err.errno, e.args[1] if len(e.args) > 1 else e))
        raise CliError("migrate: %s" % err)
    finally:
        conn.close()
    return 0


def cmd_monitor(args):
    """Show a board's frames decoded, with bad lines marked, like a serial monitor that knows the protocol.

    The port is opened exclusively: a port the gateway serves is refused with the program that holds it, and
    `--listen` shows what the gateway sees through its tap (gateway/tap.py) without touching the port. When the
    board resets or is unplugged the monitor says so in one line and waits for the port to come back."""
    from gateway import frames
    from gateway.transport import check_baudrate, check_url
    try:
        check_url(args.url)
        check_baudrate(args.baudrate)
    except ValueError as e:
        raise CliError(str(e))
    deadline = time.monotonic() + args.seconds if args.seconds else None
    if args.listen:
        if args.query:
            raise CliError("--listen only listens: it cannot send --query (the gateway asks the board itself)")
        return _monitor_tap(args, deadline)
    import serial
    from gateway.transport import PortBusy, close_port, open_port
    try:
        port = open_port(args.url, args.baudrate, timeout=0.2)
    except PortBusy as e:
        raise CliError("%s; to see what the gateway sees: %s monitor --listen %s" % (e, PROG, args.url))
    except serial.SerialException as e:
        raise CliError("cannot open %s: %s" % (args.url, e))
    show = _Printer(frames)
    if args.query:
        port.write(frames.query())
    try:
        while deadline is None or time.monotonic() < deadline:
            try:
                data = port.read(max(1, port.in_waiting))
            except (serial.SerialException, OSError) as e:
                close_port(port)
                print("%s: %s: port lost (%s); waiting for it to come back" % (PROG, args.url, e), file=sys.stderr,
                      flush=True)
                port = _wait_for_port(args, deadline)
                if port is None:
                    return 0
                print("%s: %s: port back" % (PROG, args.url), file=sys.stderr, flush=True)
                show.splitter = frames.LineSplitter()
                continue
            show.feed(data)
    except KeyboardInterrupt:
        pass
    finally:
        if port is not None:
            close_port(port)
    return 0


def _wait_for_port(args, deadline):
    """Open the port again once it is back; None when the deadline passed first."""
    import serial
    from gateway.transport import PortBusy, REOPEN_S, open_port
    said = None
    while deadline is None or time.monotonic() < deadline:
        try:
            return open_port(args.url, args.baudrate, timeout=0.2)
        except PortBusy as e:
            if str(e) != said:
                print("%s: %s; still waiting" % (PROG, e), file=sys.stderr, flush=True)
                said = str(e)
        except serial.SerialException:
            pass
        time.sleep(REOPEN_S * 5)
    return None


def _monitor_tap(args, deadline):
    from gateway import frames, tap
    try:
        sock, name = tap.listen(args.tap, args.url)
    except OSError as e:
        raise CliError(str(e))
    print("%s: listening to %s through the gateway's tap %s" % (PROG, name, args.tap), file=sys.stderr, flush=True)
    from_board, to_board = _Printer(frames), _Printer(frames, mark="> ")
    try:
        for direction, data in tap.records(sock):
            if deadline is not None and time.monotonic() >= deadline:
                break
            if direction == b"<":
                from_board.feed(data)
            elif direction == b">":
                to_board.feed(data)
        else:
            print("%s: the gateway closed its tap" % PROG, file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        pass
    except OSError as e:
        raise CliError("gateway tap %s: %s" % (args.tap, e))
    finally:
        sock.close()
    return 0


class _Printer:
    """Lines of one direction, decoded and printed: `HH:MM:SS KIND fields`, `HH:MM:SS ! error: line` when bad."""

    def __init__(self, frames, mark=""):
        self.frames = frames
        self.mark = mark
        self.splitter = frames.LineSplitter()

    def feed(self, data):
        for line in self.splitter.feed(data):
            stamp = time.strftime("%H:%M:%S")
            try:
                kind, f = self.frames.decode(line)
                print("%s %s%s %s" % (stamp, self.mark, kind, " ".join(str(x) for x in f)), flush=True)
            except self.frames.FrameError as e:
                print("%s %s! %s: %r" % (stamp, self.mark, e, bytes(line[:80])), flush=True)


def _status_url(args):
    """Where the running service answers: --url, else its [dashboard] on localhost (a wildcard bind included)."""
    if args.url:
        return args.url.rstrip("/") + "/", os.environ.get("SOIL_DASHBOARD_TOKEN") or None
    cfg = _load_config(args)
    dash = cfg.dashboard
    if dash is None or not dash.enabled:
        raise CliError("%s: [dashboard] is disabled; `status` asks the running service through it: enable it, "
                       "or give --url" % args.config)
    if dash.port == 0:
        raise CliError("%s: [dashboard] port = 0 (any free port): give --url (the service logs its dashboard URL "
                       "and writes it in its --status file)" % args.config)
    host = dash.bind if dash.local else "127.0.0.1"
    if ":" in host:
        host = "[%s]" % host
    return "http://%s:%d/" % (host, dash.port), dash.token


def cmd_status(args):
    """One screen from the running service: its /api/status and /api/events (gateway/web/report.py)."""
    import json
    import urllib.error
    import urllib.request
    from gateway.web import report
    url, token = _status_url(args)

    def get(path):
        req = urllib.request.Request(url + path)
        if token:
            req.add_header("Authorization", "Bearer " + token)
        with urllib.request.urlopen(req, timeout=args.timeout) as r:
            return json.loads(r.read().decode("utf-8"))

    try:
        status = get("api/status")
    except urllib.error.HTTPError as e:
        raise CliError("the gateway at %s refused: HTTP %d %s" % (url, e.code, _http_reason(e)))
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise CliError("the gateway service is not running (nothing answers at %s: %s)"
                       % (url, getattr(reason, "strerror", None) or reason))
    except ValueError:
        raise CliError("%s does not answer like a soil gateway (not JSON)" % url)
    events, events_error = None, None
    try:
        events = get("api/events")["events"]
    except urllib.error.HTTPError as e:
        events_error = _http_reason(e)
    except (urllib.error.URLError, OSError, ValueError) as e:
        events_error = str(e)
    print(report.render(status, events, events_error))
    return 0


def cmd_export(args):
    """Readings through the moisture view as CSV or JSON lines (gateway/export.py): data on stdout or -o FILE."""
    from gateway import export
    from gateway.dbconn import DatabaseError
    cfg = _load_config(args)
    try:
        sel = export.selection(args.board_id, args.probe, args.start, args.end)
        count = export.export(cfg.database, sel, args.format, args.output, sys.stdout)
        if count == 0 and sel.board is not None:
            boards = export.known_boards(cfg.database)
            print("%s: no readings of %s; boards with readings: %s" % (PROG, sel.describe(), ", ".join(boards)
                                                                        or "none"), file=sys.stderr)
    except (export.ExportError, DatabaseError) as e:
        raise CliError(str(e))
    print("%s: %d readings (%s) to %s" % (PROG, count, sel.describe(), args.output or "stdout"), file=sys.stderr)
    return 0


def cmd_plot(args):
    """A PNG of one board's range (gateway/plot.py) for a report or a handout."""
    from gateway import export
    from gateway.dbconn import DatabaseError
    try:
        from gateway import plot
    except ImportError as e:
        raise CliError("plot needs matplotlib (pip install -r requirements.txt, or pip install soil-ha[plot]): %s"
                       % e)
    cfg = _load_config(args)
    try:
        sel = export.selection(args.board_id, args.probe, args.start, args.end)
        chart = plot.plot(cfg.database, sel, args.output, raw=args.raw)
    except (export.ExportError, plot.PlotError, DatabaseError) as e:
        raise CliError(str(e))
    print("%s: %s: %s" % (PROG, args.output, chart.summary()), file=sys.stderr)
    return 0


def _http_reason(err):
    import json
    try:
        return json.loads(err.read().decode("utf-8"))["error"]
    except Exception:
        return err.reason


def cmd_calibrate(args):
    """Take one point of a probe's calibration from its live readings, or store a known raw value; list; remove."""
    from gateway import calibrate
    from gateway.db import ReadingStore
    from gateway.dbconn import DatabaseError
    from gateway.moisture import Calibrations
    cfg = _load_config(args)
    store = ReadingStore(cfg.database)
    cals = Calibrations(store)
    try:
        if args.list:
            print(calibrate.format_list(cals.list(args.board_id)))
            return 0
        if args.remove is not None:
            row = cals.get(args.remove)
            if row is None:
                raise CliError("no calibration %d (soil-gateway calibrate --list shows them)" % args.remove)
            cals.remove(args.remove)
            print("removed %s" % calibrate.describe_calibration(row))
            return 0
        if not args.board_id or not (args.dry or args.wet):
            raise CliError("calibrate BOARD [PROBE] --dry|--wet (or --list, --remove ID): see `soil-gateway "
                           "calibrate --help`")
        if args.probe != 0:
            raise CliError("probe %d: readings carry one probe (0) so far" % args.probe)
        point = "dry" if args.dry else "wet"
        effective_from = _sql_time(args.effective_from) if args.effective_from else None
        if args.raw is not None:
            raw, how = args.raw, "as given"
        else:
            other = calibrate.other_point(cals, args.board_id, args.probe, point)     # the database answers
            print("%s: reading %s probe %d for %.0f s; keep the probe %s and still" % (
                PROG, args.board_id, args.probe, args.seconds,
                "in dry soil (or in air)" if point == "dry" else "in saturated soil (or in water)"), file=sys.stderr)
            try:
                m = calibrate.measure(cals, args.board_id, args.seconds)
            except calibrate.CalibrationError as e:
                raise CliError(str(e))
            if m.drifting(None if other is None else other - m.mean):
                print("%s: the readings still drift (%s): wait until the probe settles and measure again, or "
                      "keep this point" % (PROG, m.describe()), file=sys.stderr)
            raw, how = int(round(m.mean)), m.describe()
        cal_id = cals.record(args.board_id, args.probe, point, raw, effective_from)
        print("%s probe %d %s: raw %d (%s)" % (args.board_id, args.probe, point, raw, how))
        print(calibrate.describe_calibration(cals.get(cal_id)))
        latest = cals.latest_reading(args.board_id, args.probe)
        if latest is not None and latest[2] is not None:
            print("%s probe %d reads %.1f %% now (raw %d at %s UTC%s)" % (
                args.board_id, args.probe, latest[2], latest[1], latest[0],
                "" if latest[3] == "ok" else ", %s" % latest[3].replace("_", " ")))
        elif latest is not None:
            print("in percent once both points are taken (the other: calibrate %s --%s)" % (
                args.board_id, "wet" if point == "dry" else "dry"))
        return 0
    except DatabaseError as e:
        raise CliError(str(e))
    finally:
        store.close()


def _sql_time(text):
    """A --from as the export takes it (gateway/export.py parse_time) -> 'YYYY-MM-DD HH:MM:SS' UTC."""
    from gateway.export import ExportError, parse_time
    try:
        return parse_time(text, "--from").strftime("%Y-%m-%d %H:%M:%S")
    except ExportError as e:
        raise CliError(str(e))


COMMANDS = {"run": cmd_run, "check": cmd_check, "migrate": cmd_migrate, "monitor": cmd_monitor,
            "status": cmd_status, "calibrate": cmd_calibrate, "export": cmd_export, "plot": cmd_plot}


def build_parser():
    p = argparse.ArgumentParser(prog=PROG, description="Soil-moisture gateway: boards on serial ports to MySQL.")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output (repeatable)")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="serve the configured boards")
    run.add_argument("-c", "--config", default="gateway.toml", help="TOML configuration (default: %(default)s)")
    g = run.add_argument_group("boards")
    g.add_argument("--board", action="append", metavar="URL", help="extra board port (pyserial URL), repeatable")
    g.add_argument("--baudrate", type=int, default=115200)
    g = run.add_argument_group("status")
    g.add_argument("--status", metavar="FILE", help="write a JSON status snapshot here")
    g.add_argument("--status-every", type=float, default=5.0, metavar="S")
    g.add_argument("--tap", metavar="SOCKET", help="serve the read-only tap for `monitor --listen` here (default: "
                                                   "[gateway] tap_path, else tap.sock beside the --status file)")

    chk = sub.add_parser("check", help="check the database connection and schema")
    chk.add_argument("-c", "--config", default="gateway.toml")

    mig = sub.add_parser("migrate", help="create or upgrade the schema (admin account)")
    mig.add_argument("-c", "--config", default="gateway.toml")
    g = mig.add_argument_group("admin account")
    g.add_argument("--admin-user", default="root")
    g.add_argument("--admin-password-env", default="SOIL_DB_ADMIN_PASSWORD", metavar="VAR",
                   help="environment variable holding the admin password (default: %(default)s)")
    g.add_argument("--admin-socket", metavar="PATH",
                   help="connect over this Unix socket instead of TCP (Debian's root: /run/mysqld/mysqld.sock)")
    g = mig.add_argument_group("gateway account")
    g.add_argument("--provision", action="store_true",
                   help="also create the gateway's least-privilege account ([database] user, password from "
                        "$SOIL_DB_PASSWORD)")
    g.add_argument("--gateway-host", action="append", metavar="HOST",
                   help="the client host the account is for, repeatable (default: localhost and 127.0.0.1; "
                        "the gateway's address, or %%, when it runs on another machine)")

    st = sub.add_parser("status", help="the running service's boards, database and alerts (one screen)")
    st.add_argument("-c", "--config", default="gateway.toml", help="the service's TOML, for its [dashboard] "
                                                                    "(default: %(default)s)")
    st.add_argument("--url", help="ask the service here instead (e.g. http://127.0.0.1:8086/; a token from "
                                  "$SOIL_DASHBOARD_TOKEN)")
    st.add_argument("--timeout", type=float, default=5.0, metavar="S", help="give up after this long")

    cal = sub.add_parser("calibrate", help="a probe's raw reading in dry and in saturated soil, for percent",
                         description="Take a point of a probe's calibration from its live readings (the gateway "
                                     "must be running), or store a known raw value; list or remove calibrations. "
                                     "hardware/calibrate.md says how.")
    cal.add_argument("-c", "--config", default="gateway.toml")
    cal.add_argument("board_id", nargs="?", metavar="board", help="the board's id, e.g. bed-1")
    cal.add_argument("probe", nargs="?", type=int, default=0, help="the probe (default: %(default)s)")
    g = cal.add_mutually_exclusive_group()
    g.add_argument("--dry", action="store_true", help="the probe is in dry soil (or air): 0 %%")
    g.add_argument("--wet", action="store_true", help="the probe is in saturated soil (or water): 100 %%")
    g.add_argument("--list", action="store_true", help="list the calibrations (of BOARD, if given)")
    g.add_argument("--remove", type=int, metavar="ID", help="remove calibration ID (from --list)")
    cal.add_argument("--seconds", type=float, default=30.0, metavar="S",
                     help="average the readings of this long (default: %(default)s)")
    cal.add_argument("--raw", type=int, metavar="N", help="store this raw value instead of measuring")
    cal.add_argument("--from", dest="effective_from", metavar="TIME",
                     help="in effect from this UTC time (default: now; a probe's first calibration: its first "
                          "reading), e.g. 2026-12-01T06:00")
    exp = sub.add_parser("export", help="readings with %% and flag as CSV or JSON lines (streamed)")
    exp.add_argument("-c", "--config", default="gateway.toml", help="TOML configuration (default: %(default)s)")
    _add_selection(exp, board_required=False)
    g = exp.add_argument_group("output")
    g.add_argument("--format", choices=("csv", "jsonl"), default="csv", help="default: %(default)s")
    g.add_argument("-o", "--output", metavar="FILE", help="write here (default: stdout)")

    plt = sub.add_parser("plot", help="a PNG of one board's readings over a range")
    plt.add_argument("-c", "--config", default="gateway.toml", help="TOML configuration (default: %(default)s)")
    _add_selection(plt, board_required=True)
    g = plt.add_argument_group("output")
    g.add_argument("--raw", action="store_true", help="raw counts instead of %% (automatic without a calibration)")
    g.add_argument("-o", "--output", metavar="FILE.png", required=True)

    mon = sub.add_parser("monitor", help="serial monitor that decodes frames")
    mon.add_argument("url", help="pyserial URL, e.g. /dev/ttyACM0")
    mon.add_argument("--baudrate", type=int, default=115200)
    mon.add_argument("--query", action="store_true", help="ask the board for a hello first")
    g = mon.add_argument_group("beside a running gateway")
    g.add_argument("--listen", action="store_true",
                   help="only listen: show what the gateway reads from and writes to this port, through its tap "
                        "(the port itself stays the gateway's)")
    g.add_argument("--tap", default=DEFAULT_TAP, metavar="SOCKET",
                   help="the gateway's tap (default: %(default)s, the systemd unit's)")
    mon.add_argument("--seconds", type=float, default=0, help="stop after this long (default: run until ^C)")
    return p


def _add_selection(parser, board_required):
    g = parser.add_argument_group("readings (times in UTC: 2026-12-01, 2026-12-01T06:00, 2026-12-01T06:00:00Z)")
    g.add_argument("--board", dest="board_id", required=board_required, metavar="B", help="one board's id")
    g.add_argument("--probe", type=int, metavar="N", help="one probe (0 today)")
    g.add_argument("--from", dest="start", metavar="T", help="from this sample time on (inclusive)")
    g.add_argument("--to", dest="end", metavar="T", help="up to this sample time (exclusive)")


def main(argv=None):
    args = build_parser().parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose + 1, 2)
    from gateway.logformat import formatter
    from gateway.sdnotify import journal_stream_is_stderr
    handler = logging.StreamHandler(sys.stderr)       # under journald: priorities, no times (gateway/logformat.py)
    handler.setFormatter(formatter(journal_stream_is_stderr()))
    logging.basicConfig(level=level, handlers=[handler])
    try:
        return COMMANDS[args.command](args)
    except CliError as e:
        print("%s: %s" % (PROG, e), file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader went away (`soil-gateway monitor PORT | head`): stop quietly, as a Unix filter does. Point
        # stdout at /dev/null so the interpreter's final flush cannot raise again (Python docs, "Note on SIGPIPE").
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
