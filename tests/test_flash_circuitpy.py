"""`make flash BOARD=circuitpython CIRCUITPY=...` against a CIRCUITPY folder: re-flashing keeps the board's
settings.toml (its id, role, interval and comments) and changes only what ID, ROLE and SET name."""

import os
import subprocess
import sys
import tomllib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _flash(drive, *args):
    return subprocess.run([sys.executable, "tools/flash.py", "--board", "circuitpython", "--circuitpy", str(drive)]
                          + list(args), capture_output=True, text=True, timeout=60, cwd=REPO)


def _settings(drive):
    with open(os.path.join(str(drive), "settings.toml"), "rb") as f:
        return tomllib.load(f)


def test_circuitpython_reflash_keeps_id_role_and_settings(tmp_path):
    """A CircuitPython re-flash without ID/ROLE once reset the id and the role to the example's."""
    drive = tmp_path / "CIRCUITPY"
    drive.mkdir()
    done = _flash(drive, "--id", "bed2-b", "--role", "standby", "--set", "interval_ms=5000")
    assert done.returncode == 0, done.stderr
    with open(str(drive / "settings.toml"), "a") as f:
        f.write("# my note: probe 2 is in the shade\n")
    done = _flash(drive)                                      # no ID, no ROLE, no SET
    assert done.returncode == 0, done.stderr
    s = _settings(drive)
    assert (s["SOIL_BOARD"], s["SOIL_ROLE"], s["SOIL_INTERVAL_MS"]) == ("bed2-b", "standby", 5000), s
    assert "# my note: probe 2 is in the shade" in (drive / "settings.toml").read_text()
    done = _flash(drive, "--set", "window=30 pin.sd_cs=D9")
    assert done.returncode == 0, done.stderr
    s = _settings(drive)
    assert (s["SOIL_WINDOW"], s["SOIL_PIN_SD_CS"], s["SOIL_BOARD"], s["SOIL_INTERVAL_MS"]) == (
        30, "D9", "bed2-b", 5000), s
    text = (drive / "settings.toml").read_text()
    assert text.count("SOIL_WINDOW") == 1 and text.count("SOIL_PIN_SD_CS") == 1   # replaced where they were
    before = text
    for bad, says in ((["--set", "interval_ms=0"], "must be above 0"),
                      (["--set", "colour=red"], "no such board setting"),
                      (["--role", "boss"], "invalid choice")):
        done = _flash(drive, *bad)
        assert done.returncode != 0 and says in done.stderr and "Traceback" not in done.stderr, (bad, done.stderr)
    assert (drive / "settings.toml").read_text() == before


def test_circuitpython_flash_refuses_a_broken_settings_toml(tmp_path):
    drive = tmp_path / "CIRCUITPY"
    drive.mkdir()
    (drive / "settings.toml").write_text('SOIL_BOARD = "bed3\n')
    done = _flash(drive, "--role", "master")
    assert done.returncode == 1 and "settings.toml is not valid TOML" in done.stderr, done.stderr
    assert (drive / "settings.toml").read_text() == 'SOIL_BOARD = "bed3\n'
    assert not (drive / "code.py").exists()                   # nothing copied
