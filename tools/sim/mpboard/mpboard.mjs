#!/usr/bin/env node
// A virtual MicroPython board: the real MicroPython 1.27 interpreter (WebAssembly port, tools/sim/micropython) behind
// its REPL, with a host folder as its flash. Normally started by `python -m tools.sim.mpboard --flash DIR`, which owns
// the pseudo-terminal and relays its bytes through this process's stdin/stdout (node has no openpty).
//
//   node tools/sim/mpboard/mpboard.mjs --flash DIR [--path DIR]... [--package NAME=DIR]... [--heap BYTES]
//                                   [--main auto|step|script|off]
//
//   stdin   bytes from the serial line (what mpremote or a gateway writes)
//   stdout  bytes to the serial line (the REPL, print(), the firmware's frames)
//   stderr  this host's log; "mpboard: ready" once the REPL is up
//
// The board (README.md in this folder has the details):
// - flash: DIR is copied into the interpreter's in-memory filesystem at / when the board boots, and every change is
//   written back after each REPL command, at a soft reset and at exit. Top-level /tmp /home /dev /proc (the
//   emscripten defaults) and /.mpboard (this host's own files) are not flash.
// - REPL: bytes go through replProcessChar one at a time. Raw-paste mode (Ctrl-E A Ctrl-A in the raw REPL) is refused
//   with "R\x00" before it reaches the interpreter, whose event-driven raw paste would need a blocking stdin; mpremote
//   then falls back to plain raw mode, as with any board that lacks raw paste.
// - Ctrl-D (friendly REPL, or an empty raw REPL command) is a soft reset: "MPY: soft reboot", a fresh interpreter
//   (new heap, new module state) on the flash as it is now, boot.py, main.py only from the friendly REPL (like
//   ports/rp2/main.c), then the REPL in the mode it was in. `machine.reset()` (mpremote's `reset`) is a hard reset:
//   the same, but always back to the friendly REPL with main.py run.
// - errno: this port's filesystem raises WASI errno numbers (ENOENT 44, EEXIST 20 ...). open() and the os functions
//   are wrapped at boot so they raise the numbers a board raises (ENOENT 2, EEXIST 17 ...); mpremote's fs commands
//   read them from the traceback text ("OSError: [Errno 2] ENOENT").
// - main.py: Python here runs synchronously inside the JS event loop, so a `while True` main loop would stop the
//   board from ever reading its serial line again (no Ctrl-C). `--main auto` (the default) runs a main.py that
//   defines (or imports) start(cfg, serial) and loop(hal, c, steps) in STEP mode: start(None, serial) once, then loop(..., 1)
//   on a timer, with time.sleep_ms returning at once and the host waiting that long instead; the serial link is a
//   pair of pollable streams fed by this host, and Ctrl-C on the line stops it (KeyboardInterrupt, back to the REPL).
//   Any other main.py runs as a plain script (SCRIPT mode), as on a board.

import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const PROG = "mpboard";
const HERE = path.dirname(fileURLToPath(import.meta.url));
const PACKAGE = path.join(HERE, "..", "micropython", "node_modules", "@micropython",
  "micropython-webassembly-pyscript", "micropython.mjs");
const NOT_FLASH = new Set(["tmp", "home", "dev", "proc", ".mpboard"]);
const BOARD_DIR = "/.mpboard";
const PYEXEC_FORCED_EXIT = 0x100;
const CTRL_A = 1, CTRL_B = 2, CTRL_C = 3, CTRL_D = 4, CTRL_E = 5;

function log(msg) {
  process.stderr.write(`${PROG}: ${msg}\n`);
}

function usage(message) {
  if (message) log(message);
  process.stderr.write("usage: node mpboard.mjs --flash DIR [--path DIR]... [--package NAME=DIR]... " +
    "[--heap BYTES] [--main auto|step|script|off]\n");
  process.exit(2);
}

function parseArgs(argv) {
  const o = { flash: null, paths: [], packages: [], heap: 256 * 1024, main: "auto" };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => (i + 1 < argv.length ? argv[++i] : usage(`${a} needs a value`));
    if (a === "--flash") o.flash = val();
    else if (a === "--path") o.paths.push(val());
    else if (a === "--package") {
      const m = /^([A-Za-z_]\w*)=(.+)$/.exec(val());
      if (!m) usage("--package wants NAME=DIR");
      o.packages.push({ name: m[1], dir: m[2] });
    }
    else if (a === "--heap") o.heap = parseInt(val(), 10);
    else if (a === "--main") o.main = val();
    else usage(`unknown argument ${a}`);
  }
  if (!o.flash) usage("--flash DIR is required");
  if (!["auto", "step", "script", "off"].includes(o.main)) usage(`--main: ${o.main}?`);
  if (!(o.heap >= 16384)) usage("--heap must be at least 16384");
  return o;
}

// --- serial output: everything the interpreter prints, written synchronously (a pipe to the pty host) ----------
const out = {
  buf: [],
  muted: false,
  byte(c) {
    if (!this.muted) this.buf.push(c);
    if (this.buf.length >= 4096) this.flush();
  },
  bytes(b) {
    for (const c of b) this.byte(c);
  },
  flush() {
    if (!this.buf.length) return;
    const chunk = Buffer.from(this.buf);
    this.buf = [];
    let off = 0;
    while (off < chunk.length) {
      try {
        off += fs.writeSync(1, chunk, off, chunk.length - off);
      } catch (e) {
        if (e.code !== "EAGAIN") throw e;
      }
    }
  },
};

// --- the flash: host folder <-> in-memory filesystem -------------------------------------------------------------
class Flash {
  constructor(dir) {
    this.dir = path.resolve(dir);
    fs.mkdirSync(this.dir, { recursive: true });
    this.known = new Map();     // "/rel/path" -> Buffer (files) or null (folders), as last written to the host
  }

  load(FS) {
    this.known.clear();
    const walk = (hostDir, fsDir) => {
      for (const e of fs.readdirSync(hostDir, { withFileTypes: true })) {
        const fsPath = (fsDir === "/" ? "" : fsDir) + "/" + e.name;
        if (fsDir === "/" && NOT_FLASH.has(e.name)) continue;
        const hostPath = path.join(hostDir, e.name);
        if (e.isDirectory()) {
          FS.mkdir(fsPath);
          this.known.set(fsPath, null);
          walk(hostPath, fsPath);
        } else if (e.isFile()) {
          const data = fs.readFileSync(hostPath);
          FS.writeFile(fsPath, data);
          this.known.set(fsPath, data);
        }
      }
    };
    walk(this.dir, "/");
  }

  // Write what changed in the interpreter's filesystem back to the host folder. Returns the number of changes.
  sync(FS) {
    const seen = new Map();
    const walk = (fsDir) => {
      for (const name of FS.readdir(fsDir)) {
        if (name === "." || name === "..") continue;
        if (fsDir === "/" && NOT_FLASH.has(name)) continue;
        const fsPath = (fsDir === "/" ? "" : fsDir) + "/" + name;
        const st = FS.stat(fsPath);
        if (FS.isDir(st.mode)) {
          seen.set(fsPath, null);
          walk(fsPath);
        } else if (FS.isFile(st.mode)) {
          seen.set(fsPath, FS.readFile(fsPath));
        }
      }
    };
    walk("/");
    let changes = 0;
    for (const [p, data] of seen) {
      const prev = this.known.get(p);
      const host = path.join(this.dir, p);
      if (data === null) {
        if (prev !== null) {
          if (prev !== undefined) fs.rmSync(host, { force: true });
          fs.mkdirSync(host, { recursive: true });
          changes++;
        }
      } else if (prev === undefined || prev === null || Buffer.compare(Buffer.from(prev), Buffer.from(data)) !== 0) {
        if (prev === null) fs.rmSync(host, { recursive: true, force: true });
        fs.mkdirSync(path.dirname(host), { recursive: true });
        const tmp = path.join(path.dirname(host), `.${path.basename(host)}.mpboard-tmp`);
        fs.writeFileSync(tmp, data);
        fs.renameSync(tmp, host);       // a crash mid-write leaves the old file, never half a file
        changes++;
      }
    }
    // Deleted: deepest first, so a folder is empty when its turn comes.
    const gone = [...this.known.keys()].filter((p) => !seen.has(p)).sort((a, b) => b.length - a.length);
    for (const p of gone) {
      fs.rmSync(path.join(this.dir, p), { recursive: true, force: true });
      changes++;
    }
    this.known = new Map([...seen].map(([p, d]) => [p, d === null ? null : Buffer.from(d)]));
    return changes;
  }
}

// Host folders made visible on the board (read-only in spirit: changes there are not written back).
function copyTree(FS, hostDir, fsDir) {
  mkdirs(FS, fsDir);
  for (const e of fs.readdirSync(hostDir, { withFileTypes: true })) {
    if (e.name.startsWith(".") || e.name === "__pycache__" || e.name === "node_modules") continue;
    const h = path.join(hostDir, e.name);
    if (e.isDirectory()) copyTree(FS, h, fsDir + "/" + e.name);
    else if (e.isFile() && (e.name.endsWith(".py") || e.name.endsWith(".mpy"))) FS.writeFile(fsDir + "/" + e.name,
      fs.readFileSync(h));
  }
}

function mkdirs(FS, dir) {
  let cur = "";
  for (const part of dir.split("/").filter(Boolean)) {
    cur += "/" + part;
    if (!FS.analyzePath(cur).exists) FS.mkdir(cur);
  }
}

// --- what the board runs at every boot, before boot.py -------------------------------------------------------------
// WASI errno -> Linux errno (the values MicroPython's errno module and every board use).
const ERRNO_MAP = {
  63: 1, 44: 2, 29: 5, 8: 9, 2: 13, 10: 16, 20: 17, 75: 18, 43: 19, 54: 20, 31: 21, 28: 22, 33: 24, 51: 28,
  70: 29, 69: 30, 37: 36, 55: 39, 58: 95,
};

const PRELUDE = `
def __mpboard_prelude(board_dir, extra):
    import builtins, os, sys
    emap = ${JSON.stringify(ERRNO_MAP).replace(/"/g, "")}

    def linux(e):
        code = e.args[0] if e.args and isinstance(e.args[0], int) else None
        if code in emap:
            return OSError(emap[code])
        return e

    def wrap(f):
        def w(*a, **k):
            try:
                return f(*a, **k)
            except OSError as e:
                raise linux(e)
        return w

    builtins.open = wrap(builtins.open)
    for name in ("stat", "listdir", "ilistdir", "mkdir", "rmdir", "remove", "unlink", "rename", "chdir",
                 "statvfs"):
        if hasattr(os, name):
            setattr(os, name, wrap(getattr(os, name)))
    hidden = ${JSON.stringify([...NOT_FLASH])}
    _ilistdir = os.ilistdir
    _stat = os.stat

    def ilistdir(p=""):
        root = p in ("/", "") and os.getcwd() == "/" or p == "/"
        for e in _ilistdir(p):
            if root and e[0] in hidden:
                continue
            try:
                size = _stat((p.rstrip("/") + "/" if p else "") + e[0])[6]
            except OSError:
                size = 0
            yield (e[0], e[1], e[2], size)        # a board's ilistdir carries the size (mpremote ls shows it)

    def listdir(p=""):
        return [e[0] for e in ilistdir(p)]

    os.ilistdir = ilistdir
    os.listdir = listdir
    os.chdir("/")
    sys.path[:] = ["", ".frozen", "/lib"] + extra + [board_dir]

`;

// The fallback `machine` (last on sys.path: a simulated machine on --path wins): reset() is a hard reset.
const MACHINE_STUB = `"""The virtual board's minimal machine module (tools/sim/mpboard): reset() and friends only."""
import _mpboard
import binascii

PWRON_RESET = 1
SOFT_RESET = 5


def reset():
    _mpboard.hard_reset()
    raise SystemExit


def soft_reset():
    _mpboard.soft_reset()
    raise SystemExit


def reset_cause():
    return _mpboard.reset_cause()


def unique_id():
    # The chip's id, stable for its flash folder (a board is its flash): two virtual boards differ.
    return binascii.unhexlify(_mpboard.uid_hex())


def freq(hz=None):
    return 125000000
`;

// STEP mode helpers: the USB line as two pollable streams, and time.sleep_ms that hands the wait to the host.
const STEP_HELPERS = `"""tools/sim/mpboard's STEP mode: main.py's start()/loop() driven by the host, one step per timer tick."""
import binascii
import io
import sys
import time


class Pipe(io.IOBase):
    def __init__(self):
        self.pending = bytearray()

    def readinto(self, buf):
        n = min(len(buf), len(self.pending))
        buf[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n

    def write(self, data):
        self.pending += data
        return len(data)

    def ioctl(self, req, arg):
        if req == 3:                         # MP_STREAM_POLL
            r = 0
            if arg & 1 and self.pending:
                r |= 1
            if arg & 4:
                r |= 4
            return r
        return 0


RX = Pipe()
TX = Pipe()
WAIT = [0]
_S = {}


def _sleep_ms(ms):
    if ms > WAIT[0]:
        WAIT[0] = ms


def begin(mod):
    time.sleep_ms = _sleep_ms
    time.sleep = lambda s: _sleep_ms(int(s * 1000))
    _S["m"] = mod
    _S["hal"], _S["c"] = mod.start(None, (RX, TX))   # None: start-up reads config.json


def step():
    WAIT[0] = 0
    _S["m"].loop(_S["hal"], _S["c"], 1)
    return WAIT[0]


def feed(hexdata):
    RX.pending += binascii.unhexlify(hexdata)


def drain():
    d = TX.pending
    TX.pending = bytearray()
    return binascii.hexlify(d).decode()     # bytearray().hex() is b"" (bytes) in MicroPython 1.27
`;

// --- the board ---------------------------------------------------------------------------------------------------
class Board {
  constructor(opts, loadMicroPython) {
    this.opts = opts;
    this.load = loadMicroPython;
    this.flash = new Flash(opts.flash);
    this.mp = null;
    this.raw = false;             // the REPL's mode, followed from the bytes sent to it
    this.rawLine = 0;             // bytes in the current raw REPL command
    this.pend = [];               // a possible raw-paste request being held back
    this.resetKind = null;        // "hard" | "soft", set by machine.reset() / soft_reset() during a command
    this.cause = 1;
    this.stepping = null;         // STEP mode timer state
    this.busy = false;
    this.queue = [];
  }

  async boot(kind) {
    // kind: "power" | "hard" | "soft"
    this.stopStepping();
    if (this.mp) this.flash.sync(this.mp.FS);
    this.mp = null;
    out.flush();
    const mp = await this.load({
      heapsize: this.opts.heap,
      pystack: 2048,
      linebuffer: false,
      stdout: (b) => out.byte(b[0]),
      stderr: (b) => out.byte(b[0]),     // one USB line on a board: stderr goes where stdout goes
    });
    this.mp = mp;
    this.cause = kind === "soft" ? 5 : 1;
    const board = this;
    mp.registerJsModule("_mpboard", {
      hard_reset: () => { board.resetKind = "hard"; },
      soft_reset: () => { board.resetKind = "soft"; },
      reset_cause: () => board.cause,
      uid_hex: () => crypto.createHash("sha256").update(path.resolve(board.opts.flash)).digest("hex").slice(0, 16),
    });
    this.flash.load(mp.FS);
    mkdirs(mp.FS, BOARD_DIR);
    mp.FS.writeFile(BOARD_DIR + "/machine.py", MACHINE_STUB);
    mp.FS.writeFile(BOARD_DIR + "/_mpboard_step.py", STEP_HELPERS);
    const extra = [];
    this.opts.paths.forEach((p, i) => {
      const dest = `${BOARD_DIR}/path${i}`;
      copyTree(mp.FS, p, dest);
      extra.push(dest);
    });
    // --package NAME=DIR: DIR is the package NAME (tools/sim/chips as `chips`), in a folder of packages on sys.path.
    for (const p of this.opts.packages) copyTree(mp.FS, p.dir, `${BOARD_DIR}/packages/${p.name}`);
    if (this.opts.packages.length) extra.push(`${BOARD_DIR}/packages`);
    mp.runPython(PRELUDE + `__mpboard_prelude(${JSON.stringify(BOARD_DIR)}, ${JSON.stringify(extra)})\n` +
      "del __mpboard_prelude\n");
    if (kind === "hard" || kind === "power") this.raw = false;
    this.runFile("boot.py");
    if (!this.raw && this.opts.main !== "off" && mp.FS.analyzePath("/main.py").exists) this.runMain();
    // The REPL starts in friendly mode (a fresh interpreter); a soft reset from the raw REPL goes back to it.
    if (this.raw) {
      out.muted = true;
      mp.replInit();
      out.muted = false;
      mp.replProcessChar(CTRL_A);       // prints "\r\nraw REPL; CTRL-B to exit\r\n>"
    } else {
      mp.replInit();
    }
    this.rawLine = 0;
    this.flash.sync(mp.FS);
    out.flush();
  }

  // Run a file from the flash as a board runs boot.py / main.py: errors are printed, the board carries on.
  runFile(name, asMain = true) {
    if (!this.mp.FS.analyzePath("/" + name).exists) return;
    this.pyexec(`exec(open(${JSON.stringify("/" + name)}).read(), {"__name__": ${JSON.stringify(
      asMain ? "__main__" : name.slice(0, -3))}, "__file__": ${JSON.stringify(name)}})`);
  }

  // Execute Python text; a Python exception is printed on the line (the REPL's way), never thrown.
  pyexec(code) {
    try {
      this.mp.runPython(`try:\n${indent(code)}\nexcept BaseException as __e:\n` +
        `    import sys\n    sys.print_exception(__e)\n    del __e\n`);
    } catch (e) {
      log(`interpreter failure: ${e && e.message ? e.message : e}`);
    }
  }

  mainMode() {
    if (this.opts.main !== "auto") return this.opts.main;
    const src = this.mp.FS.readFile("/main.py", { encoding: "utf8" });
    // Defined in main.py, or imported by it (firmware/micropython/main.py imports them from boardmain).
    const has = (name) => new RegExp(`^def ${name}\\(|^from [\\w.]+ import [\\w, ]*\\b${name}\\b`, "m").test(src);
    return has("start") && has("loop") ? "step" : "script";
  }

  runMain() {
    const mode = this.mainMode();
    if (mode === "script") {
      this.runFile("main.py");
      return;
    }
    // STEP mode: import main.py as the module `main` (its `if __name__ == "__main__"` does not fire), start it.
    let ok = false;
    try {
      this.mp.runPython("import _mpboard_step as __st\nimport main as __m\n__st.begin(__m)\ndel __m, __st\n");
      ok = true;
    } catch (e) {
      out.bytes(Buffer.from(`${e.message || e}\r\n`.replace(/\n/g, "\r\n")));
    }
    if (ok) {
      log("main.py running in step mode (Ctrl-C on the line stops it)");
      this.stepping = { timer: null };
      this.scheduleStep(0);
    }
  }

  scheduleStep(ms) {
    if (!this.stepping) return;
    this.stepping.timer = setTimeout(() => this.step(), Math.max(0, ms));
  }

  stopStepping() {
    if (this.stepping && this.stepping.timer) clearTimeout(this.stepping.timer);
    this.stepping = null;
  }

  step() {
    if (!this.stepping) return;
    const mp = this.mp;
    let wait = 0;
    try {
      mp.runPython("import _mpboard_step\n__mpboard_wait = _mpboard_step.step()");
      wait = mp.globals.get("__mpboard_wait");
    } catch (e) {
      this.stopStepping();
      const text = `${e.type || "Error"}: ${e.message || e}`;
      if (/\bReset\b/.test(e.type || "") || this.resetKind) {
        this.resetKind = this.resetKind || "hard";
      } else {
        out.bytes(Buffer.from(("Traceback (most recent call last):\n" + text + "\n").replace(/\n/g, "\r\n")));
      }
    }
    this.drainStep();
    out.flush();
    if (this.resetKind) {
      this.afterCommand();
      return;
    }
    if (this.stepping) this.scheduleStep(typeof wait === "number" ? wait : 10);
  }

  drainStep() {
    try {
      this.mp.runPython("import _mpboard_step\n__mpboard_tx = _mpboard_step.drain()");
      const hex = this.mp.globals.get("__mpboard_tx");
      if (hex) out.bytes(Buffer.from(hex, "hex"));
    } catch (e) {
      log(`step drain failed: ${e.message || e}`);
    }
  }

  // Bytes from the line. Processed strictly in order, also across the asynchronous reboots they may cause.
  input(data) {
    this.queue.push(data);
    if (!this.busy) this.pump();
  }

  async pump() {
    this.busy = true;
    while (this.queue.length) {
      const data = this.queue.shift();
      for (let i = 0; i < data.length; i++) {
        const reboot = this.char(data[i]);
        if (reboot) {
          out.flush();
          await this.boot(reboot);
          this.resetKind = null;
        }
      }
      if (this.mp && !this.stepping) this.flash.sync(this.mp.FS);
      out.flush();
    }
    this.busy = false;
  }

  // One byte. Returns "soft" / "hard" when the board must reboot now.
  char(c) {
    if (this.stepping) {
      if (c === CTRL_C) {
        // Ctrl-C interrupts the running program, as on a board: KeyboardInterrupt, then the REPL prompt.
        this.stopStepping();
        out.bytes(Buffer.from("Traceback (most recent call last):\r\n  File \"main.py\"\r\nKeyboardInterrupt: \r\n"));
        return null;
      }
      if (c === CTRL_D) return "soft";
      this.mp.runPython(`import _mpboard_step\n_mpboard_step.feed("${c.toString(16).padStart(2, "0")}")`);
      return null;
    }
    if (this.raw) {
      // Refuse raw-paste: Ctrl-E 'A' Ctrl-A at the start of a raw command is answered "R\x00" by this host.
      if (this.rawLine === 0 && this.pend.length === 0 && c === CTRL_E) {
        this.pend.push(c);
        return null;
      }
      if (this.pend.length === 1 && c === 0x41) {
        this.pend.push(c);
        return null;
      }
      if (this.pend.length === 2 && c === CTRL_A) {
        this.pend = [];
        out.bytes([0x52, 0x00]);
        return null;
      }
      if (this.pend.length) {
        const held = this.pend;
        this.pend = [];
        for (const h of held) {
          const r = this.feed(h);
          if (r) return r;
        }
      }
    }
    return this.feed(c);
  }

  feed(c) {
    const wasRaw = this.raw;
    let ret = 0;
    try {
      ret = this.mp.replProcessChar(c);
    } catch (e) {
      log(`interpreter failure: ${e && e.message ? e.message : e}`);
    }
    if (wasRaw) {
      if (c === CTRL_B) this.raw = false;
      else if (c === CTRL_A || c === CTRL_C || c === CTRL_D) this.rawLine = 0;
      else this.rawLine++;
    } else if (c === CTRL_A) {
      this.raw = true;
      this.rawLine = 0;
    }
    if (ret & PYEXEC_FORCED_EXIT) {
      out.bytes(Buffer.from("MPY: soft reboot\r\n"));
      return "soft";
    }
    if (this.resetKind) return this.afterCommand();
    return null;
  }

  afterCommand() {
    const kind = this.resetKind;
    if (!kind) return null;
    if (kind === "soft") out.bytes(Buffer.from("MPY: soft reboot\r\n"));
    if (this.stepping || !this.busy) {
      // From a STEP-mode timer: reboot now.
      this.stopStepping();
      this.boot(kind).then(() => { this.resetKind = null; });
      return null;
    }
    return kind;
  }

  shutdown() {
    this.stopStepping();
    if (this.mp) this.flash.sync(this.mp.FS);
    out.flush();
  }
}

function indent(code) {
  return code.split("\n").map((l) => "    " + l).join("\n");
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (!fs.existsSync(PACKAGE)) {
    log(`${PACKAGE} is missing: run \`make micropython\``);
    process.exit(2);
  }
  for (const p of opts.paths) if (!fs.existsSync(p)) usage(`--path ${p}: no such folder`);
  for (const p of opts.packages) if (!fs.existsSync(p.dir)) usage(`--package ${p.name}=${p.dir}: no such folder`);
  const { loadMicroPython } = await import(pathToFileURL(PACKAGE).href);
  const board = new Board(opts, loadMicroPython);
  await board.boot("power");
  log("ready");
  process.stdin.on("data", (d) => board.input(d));
  const stop = () => {
    board.shutdown();
    process.exit(0);
  };
  process.stdin.on("end", stop);
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((e) => {
  log(e && e.stack ? e.stack : String(e));
  process.exit(2);
});
