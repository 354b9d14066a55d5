#!/usr/bin/env node
// Run a Python script under the real MicroPython interpreter (the WebAssembly port from npm).
//
//   node run.mjs --lib <dir> [--lib <dir>...] [--package <name>=<dir>...] [--heap <bytes>] [--pystack <words>]
//                <script.py> [args...]
//
// Every .py file under each --lib dir is copied into the interpreter's in-memory filesystem under /lib, keeping
// package folders (firmware/lib/soil/crc.py -> /lib/soil/crc.py). --package copies one folder into /lib as the
// package <name> (tools/sim/chips/ds1307.py -> /lib/chips/ds1307.py with --package chips=tools/sim/chips), for a
// package whose folder sits among files that must not be importable. The script's own folder's top-level .py files
// go to /app, like CPython's sys.path[0]. sys.path is ['/app', '/lib', '.frozen']; sys.argv is [script, args...].
//
// Output streams to this process's stdout/stderr as the script writes it. Exit status:
//   0  the script finished (or called sys.exit(0) / sys.exit())
//   1  the script raised (the MicroPython traceback goes to stderr), or sys.exit("message")
//   n  sys.exit(n)
//   2  usage error or a failure of the runner itself (bad --lib, the interpreter aborted)
//
// --heap sets the size of MicroPython's GC heap at start-up (default 256K; suffixes K and M), so that collections
// happen as on a board with that much RAM. Beware: this port adds heap areas on demand when a collection cannot
// satisfy an allocation (MICROPY_GC_SPLIT_HEAP_AUTO) and frees them again when they empty, so a script does not
// get MemoryError at the --heap size. Measure memory with gc.mem_alloc() instead of waiting for MemoryError.

import fs from "node:fs";
import path from "node:path";
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";

const PROG = "mprun";
const LIB_ROOT = "/lib";
const APP_ROOT = "/app";

function usage(message) {
  if (message) process.stderr.write(`${PROG}: ${message}\n`);
  process.stderr.write(
    "usage: node run.mjs [--lib DIR]... [--package NAME=DIR]... [--heap BYTES] [--pystack WORDS] SCRIPT.py\n" +
      "                    [ARGS...]\n" +
      "  --lib DIR      copy every .py under DIR into /lib, keeping package folders (repeatable)\n" +
      "  --package NAME=DIR\n" +
      "                 copy every .py under DIR into /lib/NAME: the package NAME (repeatable)\n" +
      "  --heap BYTES   MicroPython GC heap at start-up, e.g. 262144, 256K, 1M (default 256K)\n" +
      "  --pystack N    Python stack, in words (default 2048)\n",
  );
  process.exit(message ? 2 : 0);
}

function parseSize(text) {
  const m = /^(\d+)([kKmM]?)$/.exec(text || "");
  if (!m) usage(`not a size: ${JSON.stringify(text)}`);
  const unit = { "": 1, k: 1024, m: 1024 * 1024 }[m[2].toLowerCase()];
  return parseInt(m[1], 10) * unit;
}

// NAME=DIR: DIR's files become the top-level package NAME.
function parsePackage(text) {
  const eq = text.indexOf("=");
  const name = eq < 0 ? "" : text.slice(0, eq);
  if (!/^[A-Za-z_]\w*$/.test(name) || eq === text.length - 1) {
    usage(`--package wants NAME=DIR, got ${JSON.stringify(text)}`);
  }
  return { name, dir: text.slice(eq + 1) };
}

function parseArgs(argv) {
  const opts = { libs: [], packages: [], heap: 256 * 1024, pystack: 2048, script: null, args: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (opts.script !== null) {
      opts.args.push(a);
    } else if (a === "--lib") {
      if (i + 1 >= argv.length) usage("--lib needs a directory");
      opts.libs.push(argv[++i]);
    } else if (a.startsWith("--lib=")) {
      opts.libs.push(a.slice(6));
    } else if (a === "--package") {
      if (i + 1 >= argv.length) usage("--package needs NAME=DIR");
      opts.packages.push(parsePackage(argv[++i]));
    } else if (a.startsWith("--package=")) {
      opts.packages.push(parsePackage(a.slice(10)));
    } else if (a === "--heap" || a === "--pystack") {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      opts[a.slice(2)] = parseSize(argv[++i]);
    } else if (a.startsWith("--heap=")) {
      opts.heap = parseSize(a.slice(7));
    } else if (a === "-h" || a === "--help") {
      usage();
    } else if (a === "--") {
      if (i + 1 >= argv.length) usage("no script given");
      opts.script = argv[++i];
    } else if (a.startsWith("-")) {
      usage(`unknown option ${a}`);
    } else {
      opts.script = a;
    }
  }
  if (opts.script === null) usage("no script given");
  if (opts.heap < 4096) usage("--heap must be at least 4096 bytes");
  return opts;
}

// --- output: bytes from the interpreter, written synchronously so nothing is lost or reordered at exit -----------
function writeAll(fd, buf) {
  let off = 0;
  while (off < buf.length) {
    try {
      off += fs.writeSync(fd, buf, off, buf.length - off);
    } catch (e) {
      if (e.code !== "EAGAIN") throw e; // a non-blocking pipe that is full: try again
    }
  }
}

class Sink {
  constructor(fd) {
    this.fd = fd;
    this.buf = Buffer.alloc(4096);
    this.len = 0;
  }
  byte(c) {
    this.buf[this.len++] = c;
    if (c === 10 || this.len === this.buf.length) this.flush();
  }
  flush() {
    if (this.len === 0) return;
    const chunk = Buffer.from(this.buf.subarray(0, this.len));
    this.len = 0;
    writeAll(this.fd, chunk);
  }
}

// --- the in-memory filesystem --------------------------------------------------------------------------------------
function mkdirs(FS, dir) {
  let cur = "";
  for (const part of dir.split("/").filter(Boolean)) {
    cur += "/" + part;
    try {
      FS.mkdir(cur);
    } catch (e) {
      if (!FS.analyzePath(cur).exists) throw e;
    }
  }
}

// Every .py file under root, as paths relative to root; skips hidden folders, caches and node_modules.
function pyFiles(root, recursive) {
  const out = [];
  const walk = (rel) => {
    const entries = fs.readdirSync(path.join(root, rel), { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      const r = rel ? rel + "/" + e.name : e.name;
      if (e.isDirectory()) {
        if (recursive && !e.name.startsWith(".") && e.name !== "__pycache__" && e.name !== "node_modules") walk(r);
      } else if (e.name.endsWith(".py") && (e.isFile() || e.isSymbolicLink())) {
        out.push(r);
      }
    }
  };
  walk("");
  return out;
}

function copyTree(FS, hostRoot, fsRoot, recursive, owner) {
  for (const rel of pyFiles(hostRoot, recursive)) {
    const dest = fsRoot + "/" + rel;
    const prev = owner.get(dest);
    if (prev !== undefined) {
      throw new Error(`${dest} comes from both ${prev} and ${path.join(hostRoot, rel)}`);
    }
    owner.set(dest, path.join(hostRoot, rel));
    mkdirs(FS, path.posix.dirname(dest));
    FS.writeFile(dest, fs.readFileSync(path.join(hostRoot, rel)));
  }
}

// --- the script runs inside this wrapper, in a fresh __main__-like namespace ------------------------------------
// The wrapper's own frames are compiled from "<stdin>"; they are cut out of the traceback so that it starts at the
// script, as it would under `micropython script.py`.
const WRAPPER = `
def __mprun(path, argv, paths):
    import sys
    sys.argv[:] = argv
    sys.path[:] = paths
    try:
        import os
        os.chdir(paths[0])
    except (ImportError, OSError):
        pass
    g = {"__name__": "__main__", "__file__": path}
    try:
        with open(path) as f:
            code = compile(f.read(), path, "exec")
        exec(code, g)
    except SystemExit as e:
        c = e.args[0] if e.args else None
        if c is None:
            return 0
        if isinstance(c, int):
            return c
        print(c, file=sys.stderr)
        return 1
    except BaseException as e:
        try:
            import io
            buf = io.StringIO()
            sys.print_exception(e, buf)
            lines = buf.getvalue().split("\\n")
            sys.stderr.write("\\n".join(l for l in lines if not l.startswith('  File "<stdin>"')))
        except BaseException:
            sys.print_exception(e, sys.stderr)
        return 1
    return 0
`;

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const scriptPath = path.resolve(opts.script);
  if (!fs.existsSync(scriptPath) || !fs.statSync(scriptPath).isFile()) usage(`no such script: ${opts.script}`);
  for (const lib of opts.libs) {
    if (!fs.existsSync(lib) || !fs.statSync(lib).isDirectory()) usage(`--lib ${lib}: not a directory`);
  }
  for (const p of opts.packages) {
    if (!fs.existsSync(p.dir) || !fs.statSync(p.dir).isDirectory()) {
      usage(`--package ${p.name}=${p.dir}: not a directory`);
    }
  }

  const out = new Sink(1);
  const err = new Sink(2);
  const mp = await loadMicroPython({
    heapsize: opts.heap,
    pystack: opts.pystack,
    linebuffer: false,
    stdout: (b) => out.byte(b[0]),
    stderr: (b) => err.byte(b[0]),
  });

  const owner = new Map();
  mkdirs(mp.FS, LIB_ROOT);
  for (const lib of opts.libs) copyTree(mp.FS, lib, LIB_ROOT, true, owner);
  for (const p of opts.packages) copyTree(mp.FS, p.dir, LIB_ROOT + "/" + p.name, true, owner);
  // The script's folder, like CPython's sys.path[0] (top level only: helpers next to the script).
  const appOwner = new Map();
  mkdirs(mp.FS, APP_ROOT);
  copyTree(mp.FS, path.dirname(scriptPath), APP_ROOT, false, appOwner);
  const fsScript = APP_ROOT + "/" + path.basename(scriptPath);
  if (!appOwner.has(fsScript)) {
    // A script whose name does not end in .py.
    mp.FS.writeFile(fsScript, fs.readFileSync(scriptPath));
  }

  let rc;
  try {
    mp.runPython(WRAPPER);
    const argv = JSON.stringify([opts.script, ...opts.args]);
    const paths = JSON.stringify([APP_ROOT, LIB_ROOT, ".frozen"]);
    mp.runPython(`__mprun_rc = __mprun(${JSON.stringify(fsScript)}, ${argv}, ${paths})`);
    rc = mp.globals.get("__mprun_rc");
  } catch (e) {
    out.flush();
    err.flush();
    process.stderr.write(`${PROG}: the interpreter failed: ${e && e.stack ? e.stack : e}\n`);
    return 2;
  }
  out.flush();
  err.flush();
  if (typeof rc !== "number") rc = 1;

  return rc & 0xff;
}

main().then(
  (rc) => {
    process.exitCode = rc;
  },
  (e) => {
    process.stderr.write(`${PROG}: ${e && e.message ? e.message : e}\n`);
    process.exitCode = 2;
  },
);
