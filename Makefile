# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test setup system peers broker services bench clean

demo: setup
	$(BIN)/farmhand demo

test: setup broker services
	$(BIN)/python -m pytest -q -p no:cacheprovider -n auto

setup: system $(STAMP) peers

# System programs the tests and demo use (scripts/system-packages.txt), installed as root when missing.
# Fails naming what is missing when it cannot install it (FARMHAND_ALLOW_MISSING=1 goes on, never under CI=true).
system:
	@bash scripts/setup-system.sh

# Real servers the tests talk to (OctoPrint, Moonraker, Klippy…), each in its own venv under .peers/.
peers:
	@bash scripts/setup-peers.sh

# Start a Mosquitto on 127.0.0.1:1883 when nothing listens there.
broker:
	@bash scripts/ensure-broker.sh

# Start Redis (6379) and PostgreSQL (5432) for the export tests when nothing listens there.
services:
	@bash scripts/ensure-services.sh

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

# Every benchmark in its --quick mode; each prints one JSON line last.
BENCHES := serial_stream spool_throughput hub_ingest scheduler estimate render_farm panel_load export network_printers fleet
bench: setup broker services
	set -e; for b in $(BENCHES); do echo "== bench.$$b"; $(BIN)/python -m bench.$$b --quick; done

clean:
	rm -rf $(VENV) .venv-agent .peers .cache var artifacts
