"""Where the built rp2 firmware images and the RP2040 bootrom are, for the virtual Pico, the tests and the bench.

All of it goes through tools/rp2/build.sh (one place knows the cache layout and the keys): `path()` asks it for a
target's file, building it when `build` is true, or only looking in the cache when false. The environment
(SOIL_RP2_CACHE, SOIL_RP2_MIRRORS, SOIL_RP2_JOBS) passes through unchanged.
"""

import os
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD_SH = os.path.join(HERE, "build.sh")
TARGETS = ("stock", "frozen", "bootrom", "src")
NOT_CACHED = 3          # build.sh --cached: the file is not there


class ImageError(Exception):
    """The image cannot be had: the one line build.sh printed last says why."""


def path(target, build=True, manifest=None, timeout=3600):
    """The cached file of `target` (stock, frozen, bootrom): built first when `build` and it is missing. Returns None
    when build is false and it is not cached; raises ImageError when the build fails."""
    if target not in TARGETS:
        raise ImageError("no target %r (%s)" % (target, ", ".join(TARGETS)))
    argv = ["bash", BUILD_SH, target] + ([] if build else ["--cached"])
    if manifest:
        argv += ["--manifest", manifest]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if proc.returncode == NOT_CACHED and not build:
        return None
    if proc.returncode != 0:
        lines = (proc.stderr or "").strip().splitlines()
        raise ImageError(lines[-1] if lines else "build.sh %s failed (exit %d)" % (target, proc.returncode))
    return proc.stdout.strip().splitlines()[-1]


def sdcard_driver():
    """micropython-lib's sdcard.py in the build's checkout (the image build has it), or None: what an offline
    `make flash` copies to the board's lib/ instead of `mpremote mip install sdcard`."""
    src = path("src", build=False)
    if src is None:
        return None
    driver = os.path.join(src, "lib", "micropython-lib", "micropython", "drivers", "storage", "sdcard", "sdcard.py")
    return driver if os.path.isfile(driver) else None


def key(target, manifest=None):
    """The cache key build.sh uses for `target` (needs no sources)."""
    argv = ["bash", BUILD_SH, target, "--key"] + (["--manifest", manifest] if manifest else [])
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise ImageError((proc.stderr or "").strip().splitlines()[-1])
    return proc.stdout.strip()


def resolve(image, build=True):
    """An --image argument: a path to a .uf2 as it is, or the name of a target (stock, frozen) -> its cached file."""
    if image in ("stock", "frozen"):
        found = path(image, build=build)
        if found is None:
            raise ImageError("the %s image is not built yet: tools/rp2/build.sh %s (make rp2-image%s)"
                             % (image, image, "-frozen" if image == "frozen" else ""))
        return found
    if not os.path.isfile(image):
        raise ImageError("%s: no such image (a firmware.uf2, or stock / frozen)" % image)
    return image
