#!/usr/bin/env bash
# Make sure `mosquitto` and `mosquitto_passwd` are installed: tests/test_mqtt.py starts a private broker of its own
# (its own config, port and password file; never the system's service on 1883), and docs/MQTT.md's captures use
# `mosquitto_sub`. Debian's `mosquitto` and `mosquitto-clients` packages. Installing the package may enable the
# system service; the tests never use it.
set -euo pipefail
if command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; then
    if command -v mosquitto_passwd >/dev/null 2>&1 && command -v mosquitto_sub >/dev/null 2>&1; then
        exit 0
    fi
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing mosquitto and mosquitto-clients (apt-get) for the MQTT tests..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends mosquitto mosquitto-clients >/dev/null
    exit 0
fi
echo "mosquitto not found (the MQTT tests start a private broker). Install it with:" >&2
echo "    sudo apt-get install mosquitto mosquitto-clients" >&2
exit 1
