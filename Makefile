# The README's two commands: `make demo` and `make test`. Everything else is their parts.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup browser demo test lint bench screenshots clean

PACKAGE_DIRS := spanlake $(wildcard spanlake/*/) ingest tables query jobs dashboard $(wildcard dashboard/*/)
NATIVE_STAMP := $(VENV)/.native
COMPOSE_STAMP := $(VENV)/.compose

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -qq --upgrade pip

# Strict editable install: a link tree type checkers can follow. It links the files that exist,
# so the package folders are prerequisites: adding or removing a module re-runs the install.
$(STAMP): pyproject.toml $(PACKAGE_DIRS) | $(VENV)/bin/python
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/pip install -qq -e '.[dev]' --config-settings editable_mode=strict
	touch $(STAMP)

$(NATIVE_STAMP): $(wildcard native/Cargo.* native/pyproject.toml native/src/*.rs) | $(VENV)/bin/python
	@if command -v cargo >/dev/null; then echo "$(BIN)/pip install --quiet ./native"; $(BIN)/pip install --quiet ./native; \
	else echo "cargo not found: spanlake_native is not built, the pure-Python OTLP decoder will be used"; fi
	touch $(NATIVE_STAMP)

# A compose implementation that runs without a Docker engine, so tests/test_deployment.py can
# validate docker-compose.yml: Debian's docker-compose package (as root), unless one is installed.
$(COMPOSE_STAMP): | $(VENV)/bin/python
	@if command -v docker-compose >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "apt-get install docker-compose"; apt-get update -qq && apt-get install -y -qq docker-compose >/dev/null; \
	else echo "docker-compose not found: install it (Debian: apt-get install docker-compose) to validate docker-compose.yml"; exit 1; fi
	touch $(COMPOSE_STAMP)

setup: $(STAMP) $(NATIVE_STAMP)  ## Python packages into .venv (Kafka's jars are fetched by the first broker start)

demo: setup  ## local broker, production-like traffic, ingest, a summary
	$(BIN)/spanlake demo

# The browser test drives Debian's chromium through Playwright (pip, in the dev extra): Playwright's
# own browser download cannot work here. The file is the stamp: apt runs only when it is missing.
CHROMIUM := /usr/bin/chromium

$(CHROMIUM):
	@if [ "$$(id -u)" != 0 ]; then echo "chromium is missing: run 'sudo apt-get install -y chromium' (the dashboard's browser test drives it)" >&2; exit 1; fi
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

browser: $(CHROMIUM)  ## Debian's chromium for the browser test and the README screenshots (apt, as root)

test: setup browser lint $(COMPOSE_STAMP)  ## lint, type check and the whole test suite, against a real local broker
	$(BIN)/pytest

lint: setup  ## ruff and mypy (mypy runs from .venv so it reads the installed package, not ./spanlake)
	$(BIN)/ruff check .
	cd $(VENV) && bin/mypy --config-file ../pyproject.toml -p spanlake

bench: setup  ## ingest benchmark (see BENCHMARKS.md)
	$(BIN)/python bench/ingest_bench.py

screenshots: setup browser  ## docs/img/*.png for the README, from a demo-like warehouse
	$(BIN)/python docs/screenshots.py

clean:
	-$(BIN)/spanlake broker stop
	rm -rf spanlake-data .spanlake
