"""`soil-gateway`: the gateway's one command-line entry.

    soil-gateway run -c gateway.toml            serve the configured boards (the service's ExecStart)
    soil-gateway check -c gateway.toml          can the gateway write its database and open its ports?
    soil-gateway migrate -c gateway.toml --admin-socket /run/mysqld/mysqld.sock --provision
                                                create or upgrade the schema (adopts the book's table in place)
                                                and the gateway's least-privilege account
    soil-gateway monitor /dev/ttyACM0           a serial monitor that shows frames decoded (for the bench)

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


class CliError(Exception):
    """An error to print as `soil-gateway: message` and exit 1."""


def _load_config(args):
    from gateway.config import ConfigError, load
    try:
        cfg = load(args.config)
    except ConfigError as e:
        raise CliError(str(e))
    for url in getattr(args, "board", None) or []:
        from gateway.config import BoardConfig
        cfg.boards.append(BoardConfig(url, args.baudrate))
    return cfg


def cmd_run(args):
    from gateway.dbconn import DatabaseConfigError, DatabaseUnavailable
    from gateway.service import Gateway
    cfg = _load_config(args)
    if args.status:
        cfg.status_path = args.status
    if not cfg.boards:
        raise CliError("no boards: add [[board]] url = ... to %s or pass --board URL" % args.config)
    gw = Gateway(cfg)
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
    """Show a board's frames decoded, with bad lines marked, like a serial monitor that knows the protocol."""
    import serial
    from gateway import frames
    port = serial.serial_for_url(args.url, do_not_open=True)
    port.baudrate = args.baudrate
    port.timeout = 0.2
    try:
        port.open()
    except serial.SerialException as e:
        raise CliError("cannot open %s: %s" % (args.url, e))
    splitter = frames.LineSplitter()
    if args.query:
        port.write(frames.query())
    deadline = time.monotonic() + args.seconds if args.seconds else None
    try:
        while deadline is None or time.monotonic() < deadline:
            for line in splitter.feed(port.read(max(1, port.in_waiting))):
                stamp = time.strftime("%H:%M:%S")
                try:
                    kind, f = frames.decode(line)
                    print("%s %s %s" % (stamp, kind, " ".join(str(x) for x in f)), flush=True)
                except frames.FrameError as e:
                    print("%s ! %s: %r" % (stamp, e, bytes(line[:80])), flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        port.close()
    return 0


COMMANDS = {"run": cmd_run, "check": cmd_check, "migrate": cmd_migrate, "monitor": cmd_monitor}


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

    mon = sub.add_parser("monitor", help="serial monitor that decodes frames")
    mon.add_argument("url", help="pyserial URL, e.g. /dev/ttyACM0")
    mon.add_argument("--baudrate", type=int, default=115200)
    mon.add_argument("--query", action="store_true", help="ask the board for a hello first")
    mon.add_argument("--seconds", type=float, default=0, help="stop after this long (default: run until ^C)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose + 1, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    try:
        return COMMANDS[args.command](args)
    except CliError as e:
        print("%s: %s" % (PROG, e), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
