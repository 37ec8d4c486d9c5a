# Benchmarks (issue 6; see benchmarks/README.md). Included from the Makefile, which defines PYTHON, BIN, STAMP.
#
#   make bench          every case: the real pipelines (headline), FluxLoop vs raw OpenTelemetry, export,
#                       memory, upload, misbehaving collectors, import cost  (~5 min)
#   make bench-peers    cases 1-8 with OpenLLMetry, Langfuse and Logfire in the same process  (~1-2 min)
#   make bench-smoke    every case, tiny: checks that the harness works; its numbers mean nothing
#   make bench-profile  where case 3's time goes (cProfile; BENCH_PROFILE_ARGS='--case nested' etc.)
#
# BENCH_ARGS is passed to the harness (e.g. BENCH_ARGS='--phases micro --rounds 61').
# The peers get their own venv in .cache/bench-peers/venv, built once (stamp file); it also has pyinstrument.
# FluxLoop itself is always imported from this working tree (PYTHONPATH), never from an installed copy.

PYTHON ?= python3
BIN    ?= .venv/bin

BENCH_ARGS         ?=
BENCH_PROFILE_ARGS ?=
BENCH_PEERS_DIR    := .cache/bench-peers
BENCH_PEERS_VENV   := $(BENCH_PEERS_DIR)/venv
BENCH_PEERS_STAMP  := $(BENCH_PEERS_VENV)/.installed-stamp
BENCH_PEERS_PIP    := $(BENCH_PEERS_VENV)/bin/python -m pip --disable-pip-version-check -q
# Pinned so that the peer columns of the README table can be reproduced; bump deliberately.
BENCH_PEERS_PKGS   := traceloop-sdk==0.62.4 langfuse==5.0.4 logfire==5.2.0 pyinstrument==5.1.3
BENCH_RUN          := PYTHONPATH=$(CURDIR)

.PHONY: bench bench-peers bench-smoke bench-profile

bench: $(STAMP)
	$(BENCH_RUN) BENCH_MAKE_TARGET='make bench' $(BIN)/python -m benchmarks $(BENCH_ARGS)

bench-smoke: $(STAMP)
	$(BENCH_RUN) BENCH_MAKE_TARGET='make bench-smoke' $(BIN)/python -m benchmarks --smoke
	$(BENCH_RUN) $(BIN)/python -m benchmarks.profile_call --smoke > /dev/null

bench-profile: $(STAMP)
	$(BENCH_RUN) $(BIN)/python -m benchmarks.profile_call $(BENCH_PROFILE_ARGS)

# The project's dependencies are resolved together with the peers' in one pip call (the peers pin OpenTelemetry
# ranges of their own); the non-editable copy of fluxloop this installs is shadowed by PYTHONPATH at run time
# (pip builds it in-tree: build/ and *.egg-info, both git-ignored). File times are not compared (order-only): a
# worktree sharing .cache has newer files than the stamp and must reuse the venv; delete the stamp to rebuild it.
$(BENCH_PEERS_STAMP): | pyproject.toml mk/bench.mk
	test -x $(BENCH_PEERS_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_PEERS_VENV)
	$(BENCH_PEERS_PIP) install --upgrade pip
	$(BENCH_PEERS_PIP) install . $(BENCH_PEERS_PKGS)
	touch $@

bench-peers: $(BENCH_PEERS_STAMP)
	$(BENCH_RUN) BENCH_MAKE_TARGET='make bench-peers' $(BENCH_PEERS_VENV)/bin/python -m benchmarks --peers --phases micro $(BENCH_ARGS)
