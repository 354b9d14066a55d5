#!/usr/bin/env bash
# Make sure the Galera provider (Debian's galera-4: /usr/lib/galera/libgalera_smm.so) and rsync (the state
# transfer between nodes) are installed: tests/test_galera.py and `python -m tools.galera` start a private cluster
# of their own on loopback (own data dirs and ports; never the system's service).
set -euo pipefail
if [ -e /usr/lib/galera/libgalera_smm.so ] && command -v rsync >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing galera-4 and rsync (apt-get) for the Galera tests..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends galera-4 rsync >/dev/null
    exit 0
fi
echo "the Galera provider or rsync is missing (the Galera tests start a private cluster). Install them with:" >&2
echo "    sudo apt-get install galera-4 rsync" >&2
exit 1
