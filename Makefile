# Soil-moisture HA logger: every set-up step lives here, so a fresh Debian / Raspberry Pi OS machine needs only
# `make demo` or `make test`.
PYTHON     ?= python3
VENV       := .venv
PY         := $(VENV)/bin/python
RUN_DIR    := run
NODE_DIR   := tools/sim/micropython
export PYTHONPATH := $(CURDIR):$(CURDIR)/firmware/lib

.PHONY: all demo demo-ha demo-galera galera test test-fast test-rp2 bench venv deps dbserver micropython systemd-analyze dosfstools promtool mosquitto browser clean help

help:
	@echo "make demo    - private database server + virtual board + gateway, an outage and its replay, the dashboard"
	@echo "make demo-ha - a replicated database, the primary killed while boards stream, nothing lost"
	@echo "make demo-galera - three sites on a Galera cluster: a node killed, a site cut off, every reading once"
	@echo "make test    - the whole test suite (unit, property-based, MicroPython, integration)"
	@echo "make test-rp2 - the virtual-Pico tests: the real rp2 firmware built from source on an emulated RP2040"
	@echo "make bench   - measure the targets in BRIEF.md; write docs/BENCHMARKS*.md (targets, HA, Galera)"
	@echo "make clean   - remove the virtual environment and run folders"

# --- set-up -------------------------------------------------------------------------------------------------
$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	$(VENV)/bin/pip install --quiet --no-deps -e .
	touch $@

venv: $(VENV)/.installed

# The database server is the one thing that comes from the system's packages.
dbserver:
	@bash tools/ensure-dbserver.sh

# The real MicroPython interpreter (WebAssembly build) from the npm registry.
$(NODE_DIR)/node_modules/.installed: $(NODE_DIR)/package.json
	cd $(NODE_DIR) && npm install --no-audit --no-fund --loglevel=error
	touch $@

micropython: $(NODE_DIR)/node_modules/.installed

# systemd-analyze, which checks the service's unit file in the tests (Debian's systemd package).
systemd-analyze:
	@bash tools/ensure-systemd-analyze.sh

# mkfs.fat (Debian's dosfstools): the virtual Pico's SD card formats a blank card with it, like one from a shop.
dosfstools:
	@bash tools/ensure-dosfstools.sh

# Debian's Mosquitto broker (and its clients): the MQTT tests start a private broker of their own, never port 1883.
mosquitto:
	@bash tools/ensure-mosquitto.sh

# Debian's Chromium and playwright-core (npm) for the dashboard's browser test: the system browser, never a download.
BROWSER_DIR := tools/browser
$(BROWSER_DIR)/node_modules/.installed: $(BROWSER_DIR)/package.json
	cd $(BROWSER_DIR) && npm install --no-audit --no-fund --loglevel=error
	touch $@

browser: $(BROWSER_DIR)/node_modules/.installed
	@bash tools/ensure-chromium.sh

# promtool (Debian's prometheus package) checks and unit-tests the example alert rules (gateway/prometheus/).
promtool:
	@bash tools/ensure-promtool.sh

# Debian's galera-4 (the provider) and rsync (state transfer): tests/test_galera.py starts a private cluster.
galera:
	@bash tools/ensure-galera.sh

deps: venv dbserver micropython systemd-analyze dosfstools promtool mosquitto galera

# --- the two user-facing commands -----------------------------------------------------------------------------
demo: deps browser
	$(PY) -m tools.demo $(DEMO_ARGS)

# The database half: a replicated topology, the primary killed while boards stream, the gateway following.
demo-ha: deps
	$(PY) -m tools.demo.ha

# Several sites on one Galera cluster: a node killed and a site cut off while boards stream, every reading once.
demo-galera: deps browser
	$(PY) -m tools.demo.galera

test: deps browser
	SOIL_REQUIRE_SERVER=1 $(PY) -m pytest -m "not rp2" $(PYTEST_ARGS)

test-fast: venv
	$(PY) -m pytest -m "not integration" $(PYTEST_ARGS)

# --- the virtual Pico: the real rp2 firmware, built from MicroPython's source (tools/rp2/README.md) ----------------
# Images are cached in $${SOIL_RP2_CACHE:-~/.cache/soil-rp2}; SOIL_RP2_MIRRORS=DIR takes the sources from local git
# mirrors (DIR/<owner>+<name>/repo) instead of GitHub.
.PHONY: rp2-image rp2-image-frozen vpico
RP2_BUILD  := tools/rp2/build.sh
VPICO_DIR  := tools/sim/vpico

rp2-image:
	@bash $(RP2_BUILD) stock

rp2-image-frozen:
	@bash $(RP2_BUILD) frozen

$(VPICO_DIR)/node_modules/.installed: $(VPICO_DIR)/package.json
	cd $(VPICO_DIR) && npm install --no-audit --no-fund --loglevel=error
	touch $@

# The virtual Pico's parts: rp2040js, the bootrom (data from rp2040js's git source), mkfs.fat for a blank SD card.
vpico: $(VPICO_DIR)/node_modules/.installed
	@bash $(RP2_BUILD) bootrom >/dev/null
	@bash tools/ensure-dosfstools.sh

# The images are built (or found in the cache) by tests/rp2/conftest.py; a machine that cannot build them skips.
test-rp2: deps vpico
	SOIL_REQUIRE_SERVER=1 $(PY) -m pytest -m rp2 tests/rp2 $(PYTEST_ARGS)

bench: deps
	$(PY) -m tools.bench $(BENCH_ARGS)
	$(PY) -m tools.bench.ha
	$(PY) -m tools.bench.galera

clean:
	rm -rf $(VENV) $(RUN_DIR) $(NODE_DIR)/node_modules $(VPICO_DIR)/node_modules $(BROWSER_DIR)/node_modules \
		.pytest_cache .hypothesis

# --- boards: flash the firmware, watch a serial line (tools/flash.py, tools/sim/mpboard/README.md) -----------------
# make flash BOARD=pico|picow|esp32|sim|circuitpython PORT=/dev/ttyACM0 [ROLE=single|master|standby] [ID=bed1]
#            [INTERVAL_MS=5000] [SET='window=32 full_policy=drop_newest pin.sd_cs=17'] [CIRCUITPY=/media/$$USER/CIRCUITPY]
#            [FLASH_ARGS=--force]
#   Every board setting not named keeps the value on the board (config.json / settings.toml); a new board gets the
#   example's. ROLE, ID, INTERVAL_MS and SET change only what they name.
# make monitor PORT=/dev/ttyACM0            frames decoded (soil-gateway monitor)
# BOARD=sim is the virtual MicroPython board (tools/sim/mpboard/README.md); PORT=run/mpboard/tty
BOARD      ?= pico
.PHONY: flash monitor

flash: venv
	$(PY) tools/flash.py --board $(BOARD) $(if $(ROLE),--role $(ROLE)) $(if $(PORT),--port $(PORT)) \
		$(if $(ID),--id $(ID)) $(if $(INTERVAL_MS),--set interval_ms=$(INTERVAL_MS)) $(if $(SET),--set "$(SET)") \
		$(if $(CIRCUITPY),--circuitpy $(CIRCUITPY)) $(FLASH_ARGS)

monitor: venv
	@test -n "$(PORT)" || { echo "make monitor PORT=/dev/ttyACM0 (or run/mpboard/tty)" >&2; exit 1; }
	$(VENV)/bin/soil-gateway monitor $(PORT) $(MONITOR_ARGS)
