# FluxLoop developer commands. Every target that needs the virtualenv creates it first, so `make demo` and
# `make test` each work as the very first command on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q

# Fragments (real OTLP backends for the e2e tests; benchmarks): included before the rules that use their
# variables, since prerequisites are expanded when a rule is read.
include mk/backends.mk
include mk/bench.mk

.DEFAULT_GOAL := demo

.PHONY: install demo test test-fast clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The embedded default: no collector, spans written to ./fluxloop_artifacts and read back by the CLI.
demo: $(STAMP)
	rm -rf ./fluxloop_artifacts
	FLUXLOOP_USE_COLLECTOR=false $(BIN)/python examples/quickstart.py
	$(BIN)/fluxloop traces
	$(BIN)/fluxloop traces show

# The e2e backends and the peers' bench venv are built once (stamps); FLUXLOOP_E2E=0 skips both.
TEST_VENVS := $(if $(filter 0,$(FLUXLOOP_E2E)),,$(E2E_BACKENDS) $(BENCH_PEERS_STAMP))

test: $(STAMP) $(TEST_VENVS)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	FLUXLOOP_E2E=0 $(BIN)/python -m pytest -q -x

clean:
	rm -rf $(VENV) .pytest_cache fluxloop_artifacts *.egg-info
