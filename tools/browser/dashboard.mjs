// Drives Debian's Chromium (/usr/bin/chromium) for the dashboard's browser test, one JSON command a line on stdin,
// one JSON answer a line on stdout. playwright-core only speaks the DevTools protocol here: it never downloads a
// browser. Every wait is bounded by the command's timeout_ms; a failed wait answers {"ok": false, "error": ...}.
//
//   {"cmd": "open", "url": ...}                  load the page, wait for its first status and chart
//   {"cmd": "goto", "url": ...}                  load any page (about:blank: the dashboard closed)
//   {"cmd": "wait", "js": EXPR, "timeout_ms": N}  wait until EXPR (evaluated in the page) is truthy
//   {"cmd": "eval", "js": EXPR}                   EXPR's value (awaited when it is a promise)
//   {"cmd": "screenshot", "path": P}             the whole page as PNG
//   {"cmd": "quit"}
import {chromium} from "playwright-core";
import readline from "node:readline";

const [userDataDir] = process.argv.slice(2);
const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync"];

const say = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.SOIL_CHROMIUM || "/usr/bin/chromium", headless: true, args: ARGS,
  viewport: {width: 1280, height: 900}, timeout: 60000,
});
const page = context.pages()[0] || await context.newPage();
const consoleErrors = [];
page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
page.on("pageerror", (e) => consoleErrors.push(String(e)));
say({ok: true, ready: true, version: context.browser() ? context.browser().version() : null});

const rl = readline.createInterface({input: process.stdin});
for await (const line of rl) {
  let c;
  try { c = JSON.parse(line); } catch (e) { say({ok: false, error: "bad command: " + line}); continue; }
  const timeout = c.timeout_ms || 20000;
  try {
    if (c.cmd === "open") {
      await page.goto(c.url, {timeout, waitUntil: "load"});
      await page.waitForFunction(() => document.body.dataset.polls && document.body.dataset.charts, null, {timeout});
      // (a function, not a string: compiled by Playwright outside the page's CSP)
      say({ok: true});
    } else if (c.cmd === "goto") {
      await page.goto(c.url, {timeout, waitUntil: "load"});
      say({ok: true});
    } else if (c.cmd === "wait") {
      // Polled with evaluate (the DevTools protocol), not waitForFunction: that one compiles the string inside the
      // page, which the dashboard's Content-Security-Policy (no 'unsafe-eval') rightly refuses.
      const deadline = Date.now() + timeout;
      let value = await page.evaluate(c.js);
      while (!value && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 200));
        value = await page.evaluate(c.js);
      }
      if (!value) throw new Error("timed out after " + timeout + " ms waiting for " + c.js);
      say({ok: true});
    } else if (c.cmd === "eval") {
      say({ok: true, value: await page.evaluate(c.js)});
    } else if (c.cmd === "screenshot") {
      await page.screenshot({path: c.path, fullPage: true, timeout});
      say({ok: true});
    } else if (c.cmd === "errors") {
      say({ok: true, value: consoleErrors});
    } else if (c.cmd === "quit") {
      break;
    } else {
      say({ok: false, error: "unknown command " + c.cmd});
    }
  } catch (e) {
    say({ok: false, error: String(e.message || e).split("\n")[0]});
  }
}
await context.close();
say({ok: true, closed: true});
