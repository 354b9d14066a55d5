#!/usr/bin/env bash
# Make sure `mkfs.fat` is installed: the virtual Pico's SD card (tools/sim/vpico/devices/sdcard.mjs) formats a
# blank card with it, as a card from a shop comes (an MBR and one FAT partition). It comes with Debian's
# `dosfstools` package (Raspberry Pi OS has it). Another process may hold the apt lock: wait for it.
set -euo pipefail
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }
if have mkfs.fat; then
    exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing dosfstools (apt-get) for mkfs.fat..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=900 update -qq
    apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends dosfstools >/dev/null
    exit 0
fi
echo "mkfs.fat not found (the virtual Pico's SD card formats a blank card with it). Install it with:" >&2
echo "    sudo apt-get install dosfstools" >&2
exit 1
