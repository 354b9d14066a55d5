"""`soil-gateway` as a user meets it: clear one-line errors, never a traceback; the password only from config or
environment; the bench monitor decodes a board's frames."""

import os
import subprocess
import sys

import pytest

from gateway import frames
from gateway.config import ConfigError, from_dict, load
from tools.dbserver import free_port
from tools.demo.stack import ROOT, Stack, process_env

pytestmark = pytest.mark.integration


def run_cli(*args, env_extra=None, timeout=60):
    env = process_env()
    env.pop("SOIL_DB_PASSWORD", None)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "gateway"] + list(args), cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def write_config(tmp_path, port, user="soil_gateway", database="plant_moisture", extra=""):
    path = tmp_path / "gateway.toml"
    path.write_text('[database]\nhost = "127.0.0.1"\nport = %d\nuser = "%s"\ndatabase = "%s"\n%s'
                    % (port, user, database, extra))
    return str(path)


def assert_clean_error(proc, *words):
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("soil-gateway: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for w in words:
        assert w in proc.stderr, proc.stderr


def test_help_lists_the_subcommands():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for cmd in ("run", "check", "migrate", "monitor", "status"):
        assert cmd in proc.stdout


def test_check_passes_with_the_gateway_account(dbserver, tmp_path):
    cfg = write_config(tmp_path, dbserver.port)
    proc = run_cli("check", "-c", cfg, env_extra={"SOIL_DB_PASSWORD": dbserver.gateway_password})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("database ok")


def test_wrong_password_is_a_clear_message(dbserver, tmp_path):
    cfg = write_config(tmp_path, dbserver.port)
    proc = run_cli("check", "-c", cfg, env_extra={"SOIL_DB_PASSWORD": "not-the-password"})
    assert_clean_error(proc, "access denied", "soil_gateway@127.0.0.1:%d" % dbserver.port)
    assert "not-the-password" not in proc.stderr


def test_unknown_database_is_a_clear_message(dbserver, tmp_path):
    cfg = write_config(tmp_path, dbserver.port, database="no_such_db")
    proc = run_cli("check", "-c", cfg, env_extra={"SOIL_DB_PASSWORD": dbserver.gateway_password})
    assert_clean_error(proc, "check [database] database")


def test_nothing_listening_is_a_clear_message(tmp_path):
    cfg = write_config(tmp_path, free_port())
    proc = run_cli("check", "-c", cfg, env_extra={"SOIL_DB_PASSWORD": "x"})
    assert_clean_error(proc, "cannot connect")


def test_run_without_boards_says_how_to_add_one(dbserver, tmp_path):
    cfg = write_config(tmp_path, dbserver.port)
    proc = run_cli("run", "-c", cfg, env_extra={"SOIL_DB_PASSWORD": dbserver.gateway_password})
    assert_clean_error(proc, "no boards", "[[board]]")


def test_run_with_a_wrong_password_fails_fast(dbserver, tmp_path):
    cfg = write_config(tmp_path, dbserver.port, extra='\n[[board]]\nurl = "loop://"\n')
    proc = run_cli("run", "-c", cfg, env_extra={"SOIL_DB_PASSWORD": "wrong"})
    assert_clean_error(proc, "access denied")


def test_missing_and_malformed_config_files(tmp_path):
    proc = run_cli("check", "-c", str(tmp_path / "nope.toml"))
    assert_clean_error(proc, "nope.toml", "no such configuration file")
    bad = tmp_path / "bad.toml"
    bad.write_text('[database]\nprot = 3306\n')
    proc = run_cli("check", "-c", str(bad))
    assert_clean_error(proc, "unknown key", "prot")


def test_migrate_and_provision_through_the_cli(dbserver, tmp_path):
    cfg = write_config(tmp_path, dbserver.port)
    proc = run_cli("migrate", "-c", cfg, "--admin-socket", dbserver.socket, "--provision",
                   env_extra={"SOIL_DB_PASSWORD": dbserver.gateway_password})
    assert proc.returncode == 0, proc.stderr
    assert "schema up to date" in proc.stdout and "least privilege" in proc.stdout


def test_f13_password_comes_from_the_environment_not_the_file(tmp_path):
    cfg = from_dict({"database": {"user": "u", "password_env": "MY_PW"}}, environ={"MY_PW": "s3cret"})
    assert cfg.database.password == "s3cret"
    cfg = from_dict({"database": {"user": "u"}}, environ={"SOIL_DB_PASSWORD": "other"})
    assert cfg.database.password == "other"
    with pytest.raises(ConfigError):
        from_dict({"board": [{"baudrate": 9600}]})
    with pytest.raises(ConfigError):
        from_dict({"database": {"port": "3306"}})


def test_example_config_loads():
    cfg = load(os.path.join(ROOT, "gateway.example.toml"), environ={"SOIL_DB_PASSWORD": "pw"})
    assert cfg.boards[0].url == "/dev/ttyACM0" and cfg.database.password == "pw"


def test_monitor_shows_a_boards_frames_decoded(tmp_path):
    with Stack(str(tmp_path / "run")) as stack:
        board = stack.start_board("bench-1", interval_ms=200, status_interval_ms=500)
        proc = run_cli("monitor", board.tty, "--query", "--seconds", "3")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any(" H %d bench-1 " % frames.PROTO in line for line in lines), proc.stdout
    assert any(" R " in line for line in lines), proc.stdout


def test_monitor_into_a_pipe_that_closes_is_no_traceback(tmp_path):
    """`soil-gateway monitor PORT | head -2`: the reader goes away and the monitor stops quietly, as a Unix filter
    does (it printed a BrokenPipeError traceback)."""
    with Stack(str(tmp_path / "run")) as stack:
        board = stack.start_board("bench-1", interval_ms=100, status_interval_ms=500)
        proc = subprocess.run("%s -m gateway monitor %s --query --seconds 20 | head -2"
                              % (sys.executable, board.tty), shell=True, cwd=ROOT, env=process_env(), capture_output=True,
                              text=True, timeout=60)
    assert len(proc.stdout.splitlines()) == 2, proc.stdout
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
