"""Every frame printed in the docs parses with the project's codec and passes its CRC, so the examples cannot drift
from the code (docs/PROTOCOL.md once showed `...L*6d1f0a3c`, whose CRC is 68b5d8bc).

A frame is `$TYPE[,field...]*crc` with the CRC as 8 hex digits, anywhere on a line; placeholders such as
`$R,...*crc` are not frames and are skipped. The formats come from gateway/frames.py (the codec), never from here.
"""

import glob
import os
import re
import zlib

import pytest

from gateway import frames

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ("README.md", "docs/*.md", "hardware/*.md", "firmware/*/README.md", "tools/**/README.md")
FRAME = re.compile(r"\$([A-Z](?:,[^\s*$]*)*)\*([0-9A-Fa-f]{8})(?![0-9A-Za-z])")


def doc_files():
    out = set()
    for pattern in DOCS:
        out.update(glob.glob(os.path.join(ROOT, pattern), recursive=True))
    return sorted(p for p in out if "node_modules" not in p)


def doc_frames():
    found = []
    for path in doc_files():
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                for m in FRAME.finditer(line):
                    found.append(("%s:%d" % (os.path.relpath(path, ROOT), number), m.group(0), m.group(1),
                                  m.group(2)))
    return found


def test_the_docs_show_frames_to_check():
    files = [os.path.relpath(p, ROOT) for p in doc_files()]
    assert "docs/PROTOCOL.md" in files and "tools/sim/mpboard/README.md" in files, files
    assert any(where.startswith("docs/PROTOCOL.md") for where, _, _, _ in doc_frames())


@pytest.mark.parametrize("where, frame, body, crc", doc_frames(), ids=[f[0] for f in doc_frames()])
def test_every_frame_printed_in_the_docs_parses_and_passes_its_crc(where, frame, body, crc):
    assert crc == crc.lower(), "%s: %s: the CRC is written in lower-case hex" % (where, frame)
    want = "%08x" % zlib.crc32(body.encode("ascii"))
    assert crc == want, "%s: %s: the CRC of %r is %s" % (where, frame, body, want)
    try:
        frames.decode((frame + "\n").encode("ascii"))
    except frames.FrameError as e:
        pytest.fail("%s: %s does not parse with gateway/frames.py: %s" % (where, frame, e))
