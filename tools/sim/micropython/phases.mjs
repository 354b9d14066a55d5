#!/usr/bin/env node
// The firmware's live heap, phase by phase, measured honestly on the MicroPython WebAssembly port.
//
//   node tools/sim/micropython/phases.mjs --lib DIR [--lib DIR...] [--package NAME=DIR...] --app DIR [--heap BYTES]
//
// This port never collects inside a running script: gc.collect() only marks a collection as pending, and the
// collection runs at the next top-level call from JavaScript, where no root can hide in WebAssembly locals
// (ports/webassembly/main.c, MICROPY_GC_SPLIT_HEAP_AUTO). So gc.mem_alloc() inside one script counts every byte
// ever allocated, garbage included. This driver runs simboard's phases as separate top-level calls, with
// collecting calls in between, and prints `HEAP <phase> <bytes>` (live bytes) after each:
//   empty (interpreter only), prepared (simulation set up), start (main.start()), loop (after STEPS steps),
//   and with --chunks N: chunk0 .. chunkN-1 (after each call of simboard.chunk(i), the peak run of board/simpeak.py),
//   then the run's `EVENT <what>` lines (simboard.events(): what the run went through);
// after prepared and after start, `QSTRS <phase>` and micropython.qstr_info()'s line (n_qstr: the names interned so
// far; after prepared they are the simulation's own).
// Libraries are copied like tools/sim/micropython/run.mjs does (.py and .mpy files, keeping package folders), and
// --package NAME=DIR copies DIR to /lib/NAME (the simulated chips: --package chips=tools/sim/chips);
// the --app folder's top-level .py files go to /app (simboard reads _simstate.py there).
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const here = path.dirname(new URL(import.meta.url).pathname);
const pkg = path.join(here, "node_modules", "@micropython",
  "micropython-webassembly-pyscript", "micropython.mjs");
const { loadMicroPython } = await import(pkg);

const libs = [];
const packages = [];
let app = null;
let heap = 256 * 1024;
let chunks = 0;
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === "--lib") libs.push(argv[++i]);
  else if (argv[i] === "--package") {
    const m = /^([A-Za-z_]\w*)=(.+)$/.exec(argv[++i] || "");
    if (!m) { process.stderr.write("phases: --package wants NAME=DIR\n"); process.exit(2); }
    packages.push({ name: m[1], dir: m[2] });
  } else if (argv[i] === "--app") app = argv[++i];
  else if (argv[i] === "--heap") heap = parseInt(argv[++i], 10);
  else if (argv[i] === "--chunks") chunks = parseInt(argv[++i], 10);
  else { process.stderr.write(`phases: unknown argument ${argv[i]}\n`); process.exit(2); }
}
const out = [];
const mp = await loadMicroPython({
  heapsize: heap, linebuffer: false,
  stdout: (b) => process.stdout.write(Buffer.from(b)), stderr: (b) => process.stderr.write(Buffer.from(b)),
});
function mkdirs(dir) {
  let cur = "";
  for (const part of dir.split("/").filter(Boolean)) {
    cur += "/" + part;
    if (!mp.FS.analyzePath(cur).exists) mp.FS.mkdir(cur);
  }
}
function copy(root, dest, recursive) {
  for (const e of fs.readdirSync(root, { withFileTypes: true })) {
    const src = path.join(root, e.name);
    if (e.isDirectory()) {
      if (recursive && !e.name.startsWith(".") && e.name !== "__pycache__") copy(src, dest + "/" + e.name, true);
    } else if (e.name.endsWith(".py") || e.name.endsWith(".mpy")) {
      mkdirs(dest);
      mp.FS.writeFile(dest + "/" + e.name, fs.readFileSync(src));
    }
  }
}
mkdirs("/lib");
for (const lib of libs) copy(lib, "/lib", true);
for (const p of packages) copy(p.dir, "/lib/" + p.name, true);
if (app) copy(app, "/app", false);

function collect() {
  // gc.collect() marks a collection pending; it runs when a top-level call begins or ends (depending on the
  // port's version), so two calls in a row always leave a collected heap behind.
  mp.runPython("import gc\ngc.collect()");
  mp.runPython("gc.collect()");
}
function names(phase, bind) {
  // micropython.qstr_info() prints "qstr pool: n_pool=.., n_qstr=<names interned so far>, ...". After prepared it
  // binds no name in __main__, so what the next phases measure is what it was before this line was added.
  const call = bind ? "import micropython\nmicropython.qstr_info()" : '__import__("micropython").qstr_info()';
  mp.runPython(`print("QSTRS ${phase}")\n${call}`);
}
function measure(phase) {
  collect();
  mp.runPython(`print("HEAP ${phase}", gc.mem_alloc())`);
}
try {
  mp.runPython("import sys\nsys.path[:] = ['/app', '/lib', '.frozen']\nimport os\nos.chdir('/app')");
  measure("empty");
  mp.runPython("import simboard\nsimboard.prepare()");
  measure("prepared");
  names("prepared", false);
  mp.runPython("simboard.start()");
  measure("start");
  names("start", true);
  mp.runPython("simboard.run()");
  measure("loop");
  for (let i = 0; i < chunks; i++) {
    mp.runPython(`simboard.chunk(${i})`);
    measure(`chunk${i}`);
  }
  if (chunks) mp.runPython("simboard.events()");
} catch (e) {
  process.stderr.write(`phases: ${e && e.message ? e.message : e}\n`);
  process.exit(1);
}
