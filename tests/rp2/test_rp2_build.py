"""tools/rp2/build.sh without building: the cache key follows what the frozen image holds, the sources come from
GitHub or from the mirrors named, and a user's mistake is one line."""

import os
import shutil
import subprocess

import pytest

from tools.rp2 import images

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD_SH = os.path.join(REPO, "tools", "rp2", "build.sh")


def run(*args, env=None):
    return subprocess.run(["bash", BUILD_SH] + list(args), capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, **(env or {})))


@pytest.fixture
def firmware_copy(tmp_path):
    """firmware/ copied, so a test can change a file the manifest freezes."""
    dst = tmp_path / "firmware"
    shutil.copytree(os.path.join(REPO, "firmware"), dst, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


def test_frozen_key_changes_with_every_frozen_file_and_only_those(firmware_copy):
    manifest = str(firmware_copy / "micropython" / "manifest.py")
    base = images.key("frozen", manifest)
    assert base == images.key("frozen", manifest)                       # deterministic
    assert base == images.key("frozen")                                 # the copy holds the same bytes as the repo
    (firmware_copy / "micropython" / "README.md").write_text("not frozen\n")
    (firmware_copy / "lib" / "soil" / "package.json").write_text("{}\n")
    assert images.key("frozen", manifest) == base                       # not frozen: no rebuild
    for frozen in ("lib/soil/uplink.py", "micropython/hal.py", "micropython/manifest.py"):
        path = firmware_copy / frozen
        original = path.read_text()
        path.write_text(original + "\n# changed\n")
        changed = images.key("frozen", manifest)
        assert changed != base and changed.startswith("v1.27.0-RPI_PICO-frozen-"), frozen
        path.write_text(original)
    (firmware_copy / "lib" / "soil" / "new_module.py").write_text("X = 1\n")   # package(): a new module is frozen
    assert images.key("frozen", manifest) != base


def test_stock_key_is_the_version_and_board():
    assert images.key("stock") == "v1.27.0-RPI_PICO"


def test_manifest_naming_a_missing_file_is_one_line(firmware_copy):
    manifest = firmware_copy / "micropython" / "manifest.py"
    manifest.write_text(manifest.read_text() + '\nmodule("nowhere.py")\n')
    proc = run("frozen", "--key", "--manifest", str(manifest))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "nowhere.py, which does not exist" in proc.stderr


def test_sources_come_from_github_by_default_and_from_the_mirrors_when_named(tmp_path):
    env = dict(os.environ, SOIL_RP2_CACHE=str(tmp_path / "cache"))
    env.pop("SOIL_RP2_MIRRORS", None)
    proc = subprocess.run(["bash", BUILD_SH, "sources"], capture_output=True, text=True, env=env, timeout=60)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0 and len(lines) == 7
    assert lines[0] == "micropython/micropython https://github.com/micropython/micropython.git v1.27.0"
    assert all(" https://github.com/" in line for line in lines)
    names = [line.split()[0] for line in lines]
    for name in names:
        (tmp_path / name.replace("/", "+") / "repo").mkdir(parents=True)
    proc = run("sources", env={"SOIL_RP2_MIRRORS": str(tmp_path), "SOIL_RP2_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr
    for name, line in zip(names, proc.stdout.splitlines()):
        assert line.split()[1] == str(tmp_path / name.replace("/", "+") / "repo")


def test_a_build_with_the_sources_checked_out_needs_no_network(rp2_image):
    """Once an image is built, every source is in the cache at its pinned commit: `sources` says so, and a rebuild
    (a new frozen key after a firmware change) fetches nothing, with or without SOIL_RP2_MIRRORS."""
    env = dict(os.environ)
    env.pop("SOIL_RP2_MIRRORS", None)
    proc = subprocess.run(["bash", BUILD_SH, "sources"], capture_output=True, text=True, env=env, timeout=60)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0 and len(lines) == 7, proc.stderr
    assert all("(cached: " in line or "(built: " in line for line in lines), proc.stdout


def test_a_missing_mirror_is_named_in_one_line(tmp_path):
    proc = run("sources", env={"SOIL_RP2_MIRRORS": str(tmp_path)})
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip() == ("rp2-build: SOIL_RP2_MIRRORS=%s has no mirror of micropython/micropython "
                                   "(expected %s/micropython+micropython/repo)" % (tmp_path, tmp_path))


def test_the_cache_is_never_the_repository_and_bad_arguments_are_one_line():
    proc = run("--key", env={"SOIL_RP2_CACHE": os.path.join(REPO, "build-cache")})
    assert proc.returncode == 1 and "inside the repository" in proc.stderr
    proc = run("--bogus")
    assert proc.returncode == 1 and proc.stderr.startswith("rp2-build: unknown argument '--bogus'")


def test_cached_never_builds(tmp_path):
    proc = run("stock", "--cached", env={"SOIL_RP2_CACHE": str(tmp_path)})
    assert proc.returncode == images.NOT_CACHED and proc.stdout == ""
    assert not os.listdir(tmp_path / "images") if (tmp_path / "images").exists() else True


def test_the_bootrom_is_the_16_kb_b1_rom(rp2_bootrom):
    with open(rp2_bootrom, "rb") as f:
        rom = f.read()
    assert len(rom) == 16384
    assert rom[0x10:0x13] == b"Mu\x01"             # the ROM's magic at 0x10: 'M' 'u' and version 1
    assert rom[0x13] == 2                          # revision B1 (2 in the ROM's own numbering)
