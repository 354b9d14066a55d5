"""A headless Chromium for the browser test and the demo's screenshot: Debian's /usr/bin/chromium driven by tools/browser/dashboard.mjs (playwright-
core over the DevTools protocol), one JSON command a line. Every answer is awaited with a bound; the profile is a
new empty folder, removed on close; the node process is ended by its own pid."""

import json
import os
import select
import shutil
import subprocess
import tempfile
import time

from tools.demo.stack import ROOT

CHROMIUM = "/usr/bin/chromium"
DRIVER = os.path.join(ROOT, "tools", "browser", "dashboard.mjs")
NODE_MODULES = os.path.join(ROOT, "tools", "browser", "node_modules", "playwright-core")


def missing():
    """Why no browser test can run here (one line), or None."""
    if not os.access(CHROMIUM, os.X_OK):
        return "no %s: install Debian's chromium and chromium-driver (make test does: tools/ensure-chromium.sh)" \
            % CHROMIUM
    if not os.path.isdir(NODE_MODULES):
        return "no playwright-core in tools/browser/node_modules: run `make browser`"
    if shutil.which("node") is None:
        return "no node on PATH (playwright-core needs it)"
    return None


class BrowserError(AssertionError):
    pass


class Browser:
    def __init__(self, start_timeout=90):
        self.profile = tempfile.mkdtemp(prefix="soil-chromium-")
        self.proc = subprocess.Popen(["node", DRIVER, self.profile], cwd=os.path.dirname(DRIVER),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._buf = b""
        try:
            self._answer(start_timeout)
        except Exception:
            self.close()
            raise

    def _answer(self, timeout):
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("the browser did not answer within %.0f s" % timeout)
            r, _, _ = select.select([self.proc.stdout], [], [], left)
            if r:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    err = self.proc.stderr.read().decode(errors="replace")[-2000:] if self.proc.poll() is not None \
                        else ""
                    raise BrowserError("the browser driver exited: %s" % err)
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        answer = json.loads(line)
        if not answer.get("ok"):
            raise BrowserError(answer.get("error"))
        return answer

    def command(self, cmd, timeout_s=20, **kw):
        kw.update(cmd=cmd, timeout_ms=int(timeout_s * 1000))
        self.proc.stdin.write((json.dumps(kw) + "\n").encode())
        self.proc.stdin.flush()
        return self._answer(timeout_s + 10)

    def open(self, url, timeout_s=30):
        return self.command("open", timeout_s, url=url)

    def wait(self, js, timeout_s=20):
        return self.command("wait", timeout_s, js=js)

    def eval(self, js, timeout_s=20):
        return self.command("eval", timeout_s, js=js).get("value")

    def screenshot(self, path):
        return self.command("screenshot", 30, path=path)

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(b'{"cmd": "quit"}\n')
                self.proc.stdin.flush()
                self.proc.wait(20)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(10)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)
