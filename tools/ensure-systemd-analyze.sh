#!/usr/bin/env bash
# Make sure `systemd-analyze` is installed: tests/test_install.py checks gateway/soil-gateway.service with
# `systemd-analyze verify`. It comes with Debian's `systemd` package (present on every Raspberry Pi OS; containers
# and CI images may lack it). Nothing is started: only the binary is used.
set -euo pipefail
if command -v systemd-analyze >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing systemd (apt-get) for systemd-analyze..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends systemd >/dev/null
    exit 0
fi
echo "systemd-analyze not found (the unit file test needs it). Install it with:" >&2
echo "    sudo apt-get install systemd" >&2
exit 1
