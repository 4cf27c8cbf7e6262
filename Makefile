# The README's two commands: `make demo` and `make test`. Everything else is their parts.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench clean

# pip -qq: a single -q still prints the build backend's warnings.
$(STAMP): pyproject.toml $(wildcard native/Cargo.* native/pyproject.toml native/src/*.rs)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -qq --upgrade pip
	$(BIN)/pip install -qq -e '.[dev]'
	@if command -v cargo >/dev/null; then echo "$(BIN)/pip install -qq ./native"; $(BIN)/pip install -qq ./native; \
	else echo "cargo not found: spanlake_native is not built, the pure-Python OTLP decoder will be used"; fi
	touch $(STAMP)

setup: $(STAMP)  ## Python packages into .venv (Kafka's jars are fetched by the first broker start)

demo: setup  ## local broker, production-like traffic, ingest, a summary
	$(BIN)/spanlake demo

test: setup  ## the whole test suite, against a real local broker
	$(BIN)/pytest

bench: setup  ## ingest benchmark (see BENCHMARKS.md)
	$(BIN)/python bench/ingest_bench.py

clean:
	-$(BIN)/spanlake broker stop
	rm -rf spanlake-data .spanlake
