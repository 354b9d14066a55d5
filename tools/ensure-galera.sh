#!/usr/bin/env bash
# Make sure the Galera provider (Debian's galera-4: /usr/lib/galera/libgalera_smm.so), the Galera arbitrator
# (galera-arbitrator-4: /usr/bin/garbd, the third vote of a two-site cluster) and rsync (the state transfer between
# nodes) are installed: tests/test_galera*.py and `python -m tools.galera` start a private cluster of their own on
# loopback (own data dirs and ports; never the system's service).
set -euo pipefail
if [ -e /usr/lib/galera/libgalera_smm.so ] && [ -x /usr/bin/garbd ] && command -v rsync >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing galera-4, galera-arbitrator-4 and rsync (apt-get) for the Galera tests..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=900 update -qq
    apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends galera-4 galera-arbitrator-4 rsync \
        >/dev/null
    exit 0
fi
echo "the Galera provider, the arbitrator (garbd) or rsync is missing (the Galera tests start a private cluster)." >&2
echo "Install them with:" >&2
echo "    sudo apt-get install galera-4 galera-arbitrator-4 rsync" >&2
exit 1
