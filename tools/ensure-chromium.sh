#!/usr/bin/env bash
# Make sure Debian's headless-capable Chromium is installed: the dashboard's browser test (tests/test_dashboard_browser.py)
# drives /usr/bin/chromium with playwright-core (tools/browser/). It comes from Debian's `chromium` and
# `chromium-driver` packages, never from a browser download at test time. Another process may hold the apt lock:
# wait for it.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium and chromium-driver (apt-get) for the dashboard's browser test..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=900 update -qq
    apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
    exit 0
fi
echo "chromium not found (the dashboard's browser test drives it). Install it with:" >&2
echo "    sudo apt-get install chromium chromium-driver" >&2
exit 1
