"""The rp2 tests: the real MicroPython rp2 firmware, built here from source (tools/rp2/build.sh), on the virtual
Pico (tools/sim/vpico). Every test in this folder is marked `rp2` (and `integration`): `make test-rp2` runs them,
`make test` leaves them out.

`rp2_image` / `rp2_frozen_image` (session) build the image, or find it in the cache; where it cannot be built (no
toolchain and not root, no sources, no node or rp2040js) the tests skip with one line saying why.
"""

import os
import shutil

import pytest

from tools.rp2 import images

HERE = os.path.dirname(os.path.abspath(__file__))
VPICO_MODULES = os.path.join(os.path.dirname(os.path.dirname(HERE)), "tools", "sim", "vpico", "node_modules",
                             "rp2040js")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if str(item.fspath).startswith(HERE + os.sep):
            item.add_marker(pytest.mark.rp2)
            item.add_marker(pytest.mark.integration)


def _need(target):
    if shutil.which("node") is None:
        pytest.skip("rp2: node is not installed, so there is no virtual Pico")
    if target != "build" and not os.path.isdir(VPICO_MODULES):
        pytest.skip("rp2: rp2040js is not installed (make vpico)")
    try:
        return images.path(target)
    except images.ImageError as e:
        pytest.skip("rp2: the %s image cannot be built here: %s" % (target, e))


@pytest.fixture(scope="session")
def rp2_bootrom():
    return _need("bootrom")


@pytest.fixture(scope="session")
def rp2_image(rp2_bootrom):
    return _need("stock")


@pytest.fixture(scope="session")
def rp2_frozen_image(rp2_bootrom):
    return _need("frozen")
