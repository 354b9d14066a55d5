#!/usr/bin/env bash
# Make sure `promtool` is installed: tests/test_metrics.py checks the example alert rules
# (gateway/prometheus/soil-alerts.yml) with `promtool check rules` and `promtool test rules`. It comes with Debian's
# `prometheus` package; only the binary is used, the package's own service is never started by the tests (a
# policy-rc.d keeps apt from starting it where it would).
set -euo pipefail
if command -v promtool >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing prometheus (apt-get) for promtool..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # Do not start the packaged Prometheus service: we want its promtool binary, not a server on :9090.
    restore=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        restore="yes"
    fi
    status=0
    apt-get install -y -qq --no-install-recommends prometheus >/dev/null || status=$?
    if [ -n "$restore" ]; then
        rm -f /usr/sbin/policy-rc.d
    fi
    # Debian enables the packaged server at boot; on a machine run by systemd, turn that off: only promtool (and the
    # tests' private Prometheus, started and ended by the tests) is wanted. A Prometheus you run yourself is yours.
    if [ "$status" = "0" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        systemctl disable --now prometheus.service >/dev/null 2>&1 || true
    fi
    exit $status
fi
echo "promtool not found (the alert rule tests need it). Install it with:" >&2
echo "    sudo apt-get install prometheus" >&2
exit 1
