"""A private MariaDB Galera cluster of N nodes on loopback: own data dirs, free ports, PIDs recorded.

Each node is a tools.dbserver.PrivateServer with the wsrep settings on top. Galera-specific needs:

* nodes run as the `mysql` user when we are root: the rsync state transfer (SST) runs `wsrep_sst_rsync`, which
  refuses root-owned data; the node folders are chown'ed to mysql;
* four ports per node: SQL, group communication (gmcast), incremental state transfer (IST) and SST; all chosen
  free at `create` and kept in <dir>/galera.json, so `start` after `stop` finds the same cluster;
* the first node of a new cluster bootstraps it (`--wsrep-new-cluster`, what `galera_new_cluster` does); every
  other node joins through `wsrep_cluster_address` and receives the data by SST (first time) or IST;
* `evs.suspect_timeout` (how long a silent node stays in the component before the others drop it) decides how
  long a survivor holds commits after a node's sudden death; the default here is Galera's own, 5 s;
* optionally one arbitrator (garbd, tools/galera/garbd.py): a vote without data, started after the nodes, its
  gmcast port and PID kept in galera.json; with two nodes it is what keeps the survivor of one loss Primary.

Everything this module starts is ended by the PID it started (PrivateServer), never by name.
"""

import json
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time

import pymysql

from tools.dbserver import PrivateServer, ServerError, free_port
from tools.galera.garbd import GARBD, Garbd, GarbdError

PROVIDER = "/usr/lib/galera/libgalera_smm.so"
STATE_FILE = "galera.json"
SYNC_TIMEOUT = 180.0        # a joiner's SST on a loaded 2-core machine
START_TIMEOUT = 180.0       # mariadbd opens its socket only after the state transfer
LEAVE_TIMEOUT = 60.0        # an isolated node leaves the primary component after about evs.suspect_timeout
GARBD_TIMEOUT = 60.0        # garbd joins in a second or two: it receives no state


class GaleraError(Exception):
    pass


def _mysql_ids():
    try:
        pw = pwd.getpwnam("mysql")
        return pw.pw_uid, pw.pw_gid
    except KeyError:
        return None


def _chown_tree(path, ids):
    if ids is None or os.geteuid() != 0:
        return
    for root, dirs, files in os.walk(path):
        for name in [root] + [os.path.join(root, n) for n in dirs + files]:
            try:
                os.lchown(name, *ids)
            except FileNotFoundError:
                pass


def _ensure_traversable(directory):
    """The mysql user must reach its data dir: every ancestor needs o+x. Temporary folders (mkdtemp makes them
    0700) get it added; anywhere else we say what to change rather than change it."""
    if os.geteuid() != 0 or _mysql_ids() is None:
        return
    tmp = os.path.realpath(tempfile.gettempdir())
    path = os.path.realpath(directory)
    while True:
        mode = os.stat(path).st_mode
        if not mode & 0o001:
            if path.startswith(tmp + os.sep):
                os.chmod(path, mode | 0o001)
            else:
                raise GaleraError("the mysql user cannot enter %s (the nodes run as mysql): chmod o+x %s, or use a "
                                  "--dir elsewhere" % (path, path))
        parent = os.path.dirname(path)
        if parent == path:
            return
        path = parent


class GaleraNode(PrivateServer):
    """One node: a PrivateServer started with the wsrep provider and the cluster's addresses."""

    def __init__(self, base_dir, *, index, cluster_name, gcomm_ports, ports, suspect_timeout, **kw):
        super().__init__(base_dir, server_id=index, **kw)
        self.index = index
        self.name = "node%d" % index
        self.cluster_name = cluster_name
        self.gcomm_ports = list(gcomm_ports)     # every node's group-communication port
        self.gmcast_port, self.ist_port, self.sst_port = ports
        self.suspect_timeout = float(suspect_timeout)
        self.bootstrap = False                   # True: start a new cluster from this node's data
        self.start_position = None               # "uuid:seqno" InnoDB recovered after a crash (see start_after_crash)

    # PrivateServer runs the server as root; rsync SST wants the mysql user (and so does a real install).
    def _as_root(self):
        if os.geteuid() != 0:
            return []
        return ["--user=mysql"] if _mysql_ids() else ["--user=root"]

    def _initialise(self):
        super()._initialise()
        _chown_tree(self.base_dir, _mysql_ids())

    def _launch(self):
        _chown_tree(self.base_dir, _mysql_ids())
        sock_dir = os.path.dirname(self._socket)
        if sock_dir != self.base_dir:
            _chown_tree(sock_dir, _mysql_ids())
        super()._launch()

    def _wait_ready(self, timeout):
        super()._wait_ready(max(timeout, START_TIMEOUT))

    def _command(self):
        suspect = self.suspect_timeout
        inactive = max(suspect * 2, suspect + 1)     # Galera wants inactive_timeout >= suspect_timeout
        provider_options = ";".join([
            "gmcast.listen_addr=tcp://127.0.0.1:%d" % self.gmcast_port,
            "ist.recv_addr=127.0.0.1:%d" % self.ist_port,
            "evs.suspect_timeout=PT%gS" % suspect,
            "evs.inactive_timeout=PT%gS" % inactive,
            "gcache.size=32M",
        ])
        address = "gcomm://" + ",".join("127.0.0.1:%d" % p for p in self.gcomm_ports)
        cmd = super()._command() + [
            "--binlog-format=ROW",
            "--default-storage-engine=InnoDB",
            "--innodb-autoinc-lock-mode=2",
            "--wsrep-on=ON",
            "--wsrep-provider=" + PROVIDER,
            "--wsrep-cluster-name=" + self.cluster_name,
            "--wsrep-cluster-address=" + address,
            "--wsrep-node-name=" + self.name,
            "--wsrep-node-address=127.0.0.1:%d" % self.gmcast_port,
            "--wsrep-provider-options=" + provider_options,
            "--wsrep-sst-method=rsync",
            "--wsrep-sst-receive-address=127.0.0.1:%d" % self.sst_port,
        ]
        if self.bootstrap:
            cmd.append("--wsrep-new-cluster")
        if self.start_position:
            cmd.append("--wsrep-start-position=" + self.start_position)
        return cmd

    # -- what the node says --------------------------------------------------------------------------------
    def wsrep(self, timeout=3):
        """The node's wsrep status {name: value} (wsrep_ready, wsrep_local_state_comment, ...), or None when it
        does not answer."""
        if not self.running:
            return None
        try:
            conn = pymysql.connect(**dict(self.admin_kwargs(), connect_timeout=timeout, read_timeout=timeout))
        except pymysql.MySQLError:
            return None
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW GLOBAL STATUS LIKE 'wsrep_%'")
                return {k: v for k, v in cur.fetchall()}
        except pymysql.MySQLError:
            return None
        finally:
            conn.close()

    def synced(self):
        st = self.wsrep() or {}
        return (st.get("wsrep_ready") == "ON" and st.get("wsrep_local_state_comment") == "Synced"
                and st.get("wsrep_cluster_status") == "Primary")

    def wait_synced(self, timeout=SYNC_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.synced():
                return
            if not self.running:
                raise GaleraError("%s exited while joining; error log %s ends:\n%s"
                                  % (self.name, self.error_log, self._log_tail()))
            time.sleep(0.2)
        raise GaleraError("%s not Synced within %.0f s; error log %s ends:\n%s"
                          % (self.name, timeout, self.error_log, self._log_tail()))

    def grastate(self):
        """(seqno, safe_to_bootstrap) from the node's grastate.dat, or (None, False) without one."""
        try:
            with open(os.path.join(self.datadir, "grastate.dat")) as f:
                text = f.read()
        except OSError:
            return None, False
        seq = re.search(r"^seqno:\s*(-?\d+)", text, re.M)
        safe = re.search(r"^safe_to_bootstrap:\s*(\d)", text, re.M)
        return (int(seq.group(1)) if seq else None), bool(safe and safe.group(1) == "1")

    def recovered_position(self, timeout=120):
        """("uuid", seqno) of the last transaction this node's InnoDB committed, by `mariadbd --wsrep-recover`
        (what Debian's service does through galera_recovery): a node that was killed wrote seqno -1 in
        grastate.dat, so after a crash only this tells how far it got. None when the recovery prints no position."""
        log = os.path.join(self.base_dir, "wsrep-recover.log")
        open(log, "w").close()
        _chown_tree(self.base_dir, _mysql_ids())
        cmd = [c for c in self._command() if not c.startswith(("--log-error=", "--wsrep-start-position="))]
        try:
            subprocess.run(cmd + ["--wsrep-recover", "--log-error=" + log], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        with open(log, errors="replace") as f:
            found = re.findall(r"Recovered position:\s*([0-9a-f-]+):(-?\d+)", f.read())
        return (found[-1][0], int(found[-1][1])) if found else None

    def start_after_crash(self):
        """Start a node whose grastate.dat says seqno -1 (it was killed) from the position InnoDB recovered, as the
        service's start script does: the bootstrap node then continues the cluster's history instead of starting a
        new one (which makes every joiner throw its data away for a full state transfer), and a joiner can catch up
        by IST. Returns the recovered seqno (None: started without a position)."""
        pos = self.recovered_position()
        self.start_position = "%s:%d" % pos if pos and pos[1] >= 0 else None
        try:
            self.start()
        finally:
            self.start_position = None
        return pos[1] if pos else None

    def mark_safe_to_bootstrap(self):
        path = os.path.join(self.datadir, "grastate.dat")
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(re.sub(r"^safe_to_bootstrap:\s*\d", "safe_to_bootstrap: 1", text, flags=re.M))

    def isolate(self, on=True):
        """Cut this node off the group (gmcast.isolate): it stops seeing the others and leaves the primary
        component, as a site whose network link failed would."""
        conn = pymysql.connect(autocommit=True, **self.admin_kwargs())
        try:
            with conn.cursor() as cur:
                cur.execute("SET GLOBAL wsrep_provider_options = %s", ("gmcast.isolate=%d" % (1 if on else 0),))
        finally:
            conn.close()


class Cluster:
    """N GaleraNodes under one directory; the layout is kept in <dir>/galera.json."""

    def __init__(self, directory, state):
        self.dir = os.path.abspath(directory)
        self.state = state
        self.nodes = [GaleraNode(os.path.join(self.dir, "node%d" % n["index"]), index=n["index"],
                                 cluster_name=state["name"], gcomm_ports=[m["gmcast"] for m in state["nodes"]],
                                 ports=(n["gmcast"], n["ist"], n["sst"]),
                                 suspect_timeout=state["suspect_timeout"])
                      for n in state["nodes"]]
        g = state.get("garbd")
        self.garbd = None if g is None else Garbd(
            os.path.join(self.dir, "garbd"), cluster_name=state["name"],
            gcomm_ports=[m["gmcast"] for m in state["nodes"]], gmcast_port=g["gmcast"],
            suspect_timeout=state["suspect_timeout"], pid=g.get("pid"))

    @classmethod
    def create(cls, directory, nodes=3, suspect_timeout=5.0, name="soil-galera", progress=None, garbd=False):
        """Make and start a new cluster: node 1 bootstraps, the others join one by one (SST by rsync); with
        garbd, one arbitrator joins last."""
        if not os.path.exists(PROVIDER):
            raise GaleraError("the Galera provider %s is missing: install galera-4 (tools/ensure-galera.sh)"
                              % PROVIDER)
        if garbd and not os.access(GARBD, os.X_OK):
            raise GaleraError("the Galera arbitrator %s is missing: install galera-arbitrator-4 "
                              "(tools/ensure-galera.sh)" % GARBD)
        if shutil.which("rsync") is None:
            raise GaleraError("rsync is missing (the nodes' state transfer): install rsync")
        directory = os.path.abspath(directory)
        if os.path.exists(os.path.join(directory, STATE_FILE)):
            raise GaleraError("%s already holds a cluster (galera.json); use start, or another --dir" % directory)
        if nodes < 1:
            raise GaleraError("a cluster needs at least one node")
        os.makedirs(directory, exist_ok=True)
        _ensure_traversable(directory)
        taken = set()

        def port():
            for _ in range(50):
                p = free_port()
                if p not in taken:
                    taken.add(p)
                    return p
            raise GaleraError("no free port")
        state = {"name": name, "suspect_timeout": float(suspect_timeout),
                 "nodes": [{"index": i + 1, "gmcast": port(), "ist": port(), "sst": port()} for i in range(nodes)]}
        if garbd:
            state["garbd"] = {"gmcast": port(), "pid": None}
        cluster = cls(directory, state)
        cluster.save()
        try:
            cluster.start(progress=progress, fresh=True)
        except BaseException:
            cluster.close()         # nothing half-started is left behind (the folder stays, for its logs)
            raise
        return cluster

    @classmethod
    def load(cls, directory):
        try:
            with open(os.path.join(directory, STATE_FILE)) as f:
                return cls(directory, json.load(f))
        except (OSError, ValueError) as exc:
            raise GaleraError("no cluster in %s (%s); create one first" % (directory, exc)) from None

    def save(self):
        if self.garbd is not None:
            self.state["garbd"]["pid"] = self.garbd.pid
        path = os.path.join(self.dir, STATE_FILE)
        with open(path + ".tmp", "w") as f:
            json.dump(self.state, f, indent=2)
        os.replace(path + ".tmp", path)

    def node(self, index):
        for n in self.nodes:
            if n.index == int(index):
                return n
        raise GaleraError("no node %s (nodes: %s)" % (index, ", ".join(str(n.index) for n in self.nodes)))

    def start(self, progress=None, fresh=False):
        """Start every stopped node. With none running, bootstrap from the node that may (safe_to_bootstrap, else
        the highest seqno: the one that saw the last commit), then the others join."""
        say = progress or (lambda text: None)
        t0 = time.monotonic()
        running = [n for n in self.nodes if n.running]
        order = list(self.nodes)
        if not running:
            first, why = (self.nodes[0], "a new cluster") if fresh else self._bootstrap_candidate()
            order.remove(first)
            if not fresh and not first.grastate()[1]:
                first.mark_safe_to_bootstrap()
            first.bootstrap = True
            try:
                first.start_after_crash() if first.grastate()[0] == -1 else first.start()
            finally:
                first.bootstrap = False
            first.wait_synced()
            say("%s bootstrapped the cluster (%s), Synced after %.1f s" % (first.name, why, time.monotonic() - t0))
        for n in order:
            if n.running:
                continue
            n.start_after_crash() if n.grastate()[0] == -1 else n.start()
            n.wait_synced()
            say("%s joined, Synced after %.1f s" % (n.name, time.monotonic() - t0))
        if self.garbd is not None and not self.garbd.running:
            self.start_garbd()
            say("garbd joined, cluster size %s after %.1f s" % (self._size(), time.monotonic() - t0))
        return time.monotonic() - t0

    def _size(self):
        for n in self.nodes:
            st = n.wsrep()
            if st and st.get("wsrep_cluster_status") == "Primary":
                return int(st.get("wsrep_cluster_size") or 0)
        return None

    def start_garbd(self, timeout=GARBD_TIMEOUT):
        """Start the arbitrator; on return a Primary node counts it (size = running nodes + 1)."""
        running = [n for n in self.nodes if n.running]
        if not running:
            raise GaleraError("no node runs: garbd needs a cluster to join (use start)")
        try:
            self.garbd.start(lambda: self._size() == len(running) + 1, timeout=timeout)
        except GarbdError as exc:
            raise GaleraError(str(exc)) from None
        finally:
            self.save()

    def _bootstrap_candidate(self):
        """(node, why): the node to start a stopped cluster from: the one marked safe (the last to stop cleanly),
        else the one with the highest seqno, read from grastate.dat or, after a crash left -1 there, recovered from
        InnoDB. Bootstrapping from a node that is behind would throw away commits the boards were told are stored."""
        states = [(n, *n.grastate()) for n in self.nodes]
        for n, _, safe in states:
            if safe:
                return n, "safe_to_bootstrap: the last to stop"
        seqnos = []
        for n, seqno, _ in states:
            how = "grastate.dat"
            if seqno is None or seqno < 0:
                pos = n.recovered_position()
                seqno, how = (pos[1] if pos else None), "recovered from InnoDB"
            seqnos.append((-2 if seqno is None else seqno, n, how))
        seqno, node, how = max(seqnos, key=lambda s: s[0])
        return node, "the last commit, seqno %d %s; %s" % (seqno, how, ", ".join(
            "%s %s" % (n.name, q) for q, n, _ in seqnos if n is not node))

    def rejoin(self, index):
        """Start one stopped (or killed) node again; it rejoins by IST (or SST) and is Synced on return."""
        n = self.node(index)
        if n.running:
            raise GaleraError("%s is running already" % n.name)
        if not any(m.running for m in self.nodes if m is not n):
            raise GaleraError("no other node runs: use start (it bootstraps the cluster)")
        t0 = time.monotonic()
        n.start_after_crash() if n.grastate()[0] == -1 else n.start()   # killed: from its recovered position
        n.wait_synced()
        return time.monotonic() - t0

    def stop(self):
        """Stop garbd (it leaves the group cleanly), then the nodes one by one (the last one stopped is safe to
        bootstrap from)."""
        if self.garbd is not None:
            self.garbd.stop()
            self.save()
        for n in self.nodes:
            n.stop()

    def kill(self, index):
        self.node(index).kill()

    def isolate(self, index, timeout=LEAVE_TIMEOUT):
        """Cut a node off the group (gmcast.isolate=1) and wait until it has left the primary component; the
        seconds that took."""
        n = self._running_node(index)
        t0 = time.monotonic()
        self._set_isolate(n, True)
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            st = n.wsrep()
            if st and st.get("wsrep_cluster_status") != "Primary":
                return time.monotonic() - t0
            if not n.running:
                raise GaleraError("%s exited while leaving the group; error log %s" % (n.name, n.error_log))
            time.sleep(0.2)
        raise GaleraError("%s still in the primary component %.0f s after gmcast.isolate=1" % (n.name, timeout))

    def heal(self, index, timeout=SYNC_TIMEOUT):
        """Undo isolate (gmcast.isolate=0) and wait until the node is Synced in the primary component again."""
        n = self._running_node(index)
        t0 = time.monotonic()
        self._set_isolate(n, False)
        n.wait_synced(timeout)
        return time.monotonic() - t0

    def _running_node(self, index):
        n = self.node(index)
        if not n.running:
            raise GaleraError("%s is not running (rejoin --node %d starts it)" % (n.name, n.index))
        return n

    @staticmethod
    def _set_isolate(n, on):
        try:
            n.isolate(on)
        except pymysql.MySQLError as exc:
            raise GaleraError("%s did not take gmcast.isolate=%d: %s" % (n.name, 1 if on else 0, exc)) from None

    def show(self):
        """One dict per node: index, ports, pid, and its wsrep state (None fields when it does not answer)."""
        out = []
        for n in self.nodes:
            st = n.wsrep() or {}
            out.append({"node": n.index, "port": n.port, "socket": n.socket, "pid": n.pid if n.running else None,
                        "gmcast": n.gmcast_port, "running": n.running,
                        "ready": st.get("wsrep_ready"), "state": st.get("wsrep_local_state_comment"),
                        "status": st.get("wsrep_cluster_status"), "size": st.get("wsrep_cluster_size"),
                        "seqno": st.get("wsrep_last_committed")})
        return out

    def garbd_state(self):
        """{"pid", "gmcast", "running", "log"} of the arbitrator, or None for a cluster without one."""
        if self.garbd is None:
            return None
        return {"pid": self.garbd.pid, "gmcast": self.garbd.gmcast_port, "running": self.garbd.running,
                "log": self.garbd.log}

    def close(self):
        """End garbd and every node by its PID (kill: the tests' clean-up, quick even for a node stuck without
        quorum)."""
        if self.garbd is not None:
            self.garbd.kill()
        for n in self.nodes:
            try:
                n.kill()
            except ServerError:
                pass
