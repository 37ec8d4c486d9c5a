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
include mk/pythons.mk

.DEFAULT_GOAL := demo

.PHONY: install demo test test-default test-fast test-loaded typecheck clean

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

# `make test`: the type checker, the whole suite on the default interpreter (with the e2e backends unless
# FLUXLOOP_E2E=0), then the suite without e2e on each other supported Python (mk/pythons.mk). Sequential: the
# suites share two cores with whatever else runs. About 10 min on a quiet 2-core machine (README, "Development").
test: typecheck test-default test-pythons

typecheck: $(STAMP)
	$(BIN)/python -m mypy

test-default: $(STAMP) $(TEST_VENVS)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	FLUXLOOP_E2E=0 $(BIN)/python -m pytest -q -x

# `make test` while two busy loops occupy both cores: the suite must not depend on the machine being quiet.
# The loops are killed however `make test` ends; the wall time is printed.
test-loaded:
	@busy=""; for core in 1 2; do ( while :; do :; done ) & busy="$$busy $$!"; done; \
	trap 'kill $$busy 2>/dev/null' EXIT INT TERM; \
	started=$$(date +%s); \
	$(MAKE) --no-print-directory test; status=$$?; \
	echo "== make test-loaded: make test exited $$status after $$(( $$(date +%s) - started )) s beside 2 busy loops"; \
	exit $$status

clean:
	rm -rf $(VENV) $(foreach v,$(PY_VERSIONS),.venv-$(v)) .pytest_cache fluxloop_artifacts *.egg-info
