"""A private Mosquitto broker: its own config, password file, persistence folder, port(s) and process.

Like tools/dbserver.py: the tests and the docs' captures need a broker they can stop, restart and misconfigure
without touching the machine's own Mosquitto on 1883. Everything started here is ended by the pid it started.

    b = PrivateBroker("run/mqtt", users={"soil": "secret"}, tls=True)
    b.start()          # b.port (plain), b.tls_port, b.ca_file (a CA made here with the openssl CLI)
    b.stop(); b.start()  # the same ports and persistence: sessions and retained messages survive
"""

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time

from tools.dbserver import free_port

READY_TIMEOUT = 20.0


class BrokerError(Exception):
    pass


def find_mosquitto():
    for name in ("mosquitto", "/usr/sbin/mosquitto"):
        path = shutil.which(name) or (name if os.access(name, os.X_OK) else None)
        if path:
            return path
    raise BrokerError("mosquitto not found: `make deps` installs it (tools/ensure-mosquitto.sh), or "
                      "sudo apt-get install mosquitto")


def make_ca_and_server_cert(folder, host="127.0.0.1"):
    """A CA and a server certificate for `host` signed by it (openssl CLI); returns (ca, cert, key) paths."""
    ca_key, ca, key, csr, cert = (os.path.join(folder, n) for n in ("ca.key", "ca.pem", "server.key", "server.csr",
                                                                     "server.pem"))
    ext = os.path.join(folder, "san.ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:%s,DNS:localhost\n" % host)

    def run(*argv):
        subprocess.run(("openssl",) + argv, check=True, capture_output=True, timeout=60)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca, "-days", "2",
        "-subj", "/CN=soil test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=" + host)
    run("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert, "-days", "2",
        "-extfile", ext)
    os.chmod(key, 0o600)
    return ca, cert, key


class PrivateBroker:
    def __init__(self, folder, users=None, tls=False):
        self.dir = os.path.abspath(folder)
        os.makedirs(self.dir, exist_ok=True)
        self.users = dict(users or {})
        self.tls = tls
        self.port = free_port()
        self.tls_port = free_port() if tls else None
        self.ca_file = None
        self.proc = None
        self.log_path = os.path.join(self.dir, "mosquitto.log")
        self._configured = False

    def _configure(self):
        conf = os.path.join(self.dir, "mosquitto.conf")
        # Run as root, mosquitto would switch to the `mosquitto` user, who cannot read this folder: stay who we are.
        lines = ["user %s" % pwd.getpwuid(os.getuid()).pw_name, "persistence true",
                 "persistence_location %s/" % self.dir, "autosave_interval 1",
                 "max_queued_messages 100000", "log_dest stderr", "log_type error", "log_type warning",
                 "log_type notice", "log_type information", "listener %d 127.0.0.1" % self.port]
        if self.users:
            pwfile = os.path.join(self.dir, "passwd")
            open(pwfile, "w").close()
            for user, password in self.users.items():
                subprocess.run(["mosquitto_passwd", "-b", pwfile, user, password], check=True, capture_output=True,
                               timeout=30)
            os.chmod(pwfile, 0o600)
            lines += ["allow_anonymous false", "password_file %s" % pwfile]
        else:
            lines.append("allow_anonymous true")
        if self.tls:
            ca, cert, key = make_ca_and_server_cert(self.dir)
            self.ca_file = ca
            lines += ["listener %d 127.0.0.1" % self.tls_port, "cafile %s" % ca, "certfile %s" % cert,
                      "keyfile %s" % key]
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.conf = conf
        self._configured = True

    def start(self):
        if not self._configured:
            self._configure()
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([find_mosquitto(), "-c", self.conf], stdout=log, stderr=log, cwd=self.dir)
        log.close()
        deadline = time.monotonic() + READY_TIMEOUT
        ports = [p for p in (self.port, self.tls_port) if p]
        while True:
            if self.proc.poll() is not None:
                raise BrokerError("mosquitto exited (%s): %s" % (self.proc.returncode, self.log_tail()))
            if all(_listening(p) for p in ports):
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerError("mosquitto did not listen on %s in %.0f s" % (ports, READY_TIMEOUT))
            time.sleep(0.05)

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        """SIGTERM (mosquitto saves its persistence file), and wait for it."""
        if self.running:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def log_tail(self, n=20):
        try:
            with open(self.log_path, "rb") as f:
                return b"".join(f.readlines()[-n:]).decode(errors="replace")
        except OSError:
            return ""


def _listening(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
