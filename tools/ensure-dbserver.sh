#!/usr/bin/env bash
# Make sure a MariaDB (or MySQL) server binary is installed. The project never uses the system's running service:
# tools/dbserver.py starts a private instance with its own data directory, socket and port.
set -euo pipefail
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
if (have mariadbd || have mysqld) && (have mariadb-install-db || have mysql_install_db || have mysqld); then
    exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing mariadb-server (apt-get)..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # policy-rc.d keeps apt from starting the system service: we only need the binaries.
    apt-get install -y -qq --no-install-recommends mariadb-server mariadb-client >/dev/null
    exit 0
fi
echo "No MariaDB/MySQL server found. Install it with:" >&2
echo "    sudo apt-get install mariadb-server" >&2
exit 1
