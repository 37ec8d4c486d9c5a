# Real OTLP backends for the end-to-end tests (tests/e2e): Arize Phoenix and an MLflow tracking server.
#
# Each backend gets its own venv under $(BACKENDS_DIR) (git-ignored), installed from an exact lock file in
# tests/e2e/requirements/, so its dependencies never touch the SDK's .venv. A stamp file per backend, named after
# the version it installed, makes a second `make backends` a no-op; changing a version below reinstalls that backend
# from scratch. File times are not compared (the lock files are order-only prerequisites): a fresh checkout beside an
# existing $(BACKENDS_DIR) (a git worktree whose .cache is shared) has newer files than the stamps, and must reuse
# the installed backends rather than delete them. After editing a lock file, bump the version (or
# `make clean-backends`).
#
#   make backends                        install both, side by side (about 80 s; a no-op once installed)
#   make phoenix-backend mlflow-backend  install one
#   make clean-backends                  delete the venvs
#
# Use from the main Makefile with `include mk/backends.mk`; FLUXLOOP_E2E_PHOENIX and FLUXLOOP_E2E_MLFLOW are
# exported to every recipe, so `pytest` started by `make test` finds the executables. `$(E2E_BACKENDS)` is
# `backends`, or nothing when FLUXLOOP_E2E=0 (a quick local run that deselects the e2e tests).

# This file and the repo root, from this file's own location (works with `include` and `make -f`).
BACKENDS_MK := $(abspath $(lastword $(MAKEFILE_LIST)))
BACKENDS_ROOT := $(abspath $(dir $(BACKENDS_MK))..)

BACKENDS_PYTHON ?= python3
BACKENDS_DIR ?= $(BACKENDS_ROOT)/.cache/backends
BACKENDS_LOCK_DIR := $(BACKENDS_ROOT)/tests/e2e/requirements
BACKENDS_PIP_FLAGS ?= --quiet --progress-bar off --disable-pip-version-check

# Top-level pins, kept equal to the lock files (pip fails on a mismatch).
PHOENIX_VERSION := 20.26.1
MLFLOW_VERSION := 3.17.2

PHOENIX_VENV := $(BACKENDS_DIR)/phoenix/venv
MLFLOW_VENV := $(BACKENDS_DIR)/mlflow/venv
PHOENIX_STAMP := $(BACKENDS_DIR)/phoenix/installed-$(PHOENIX_VERSION).stamp
MLFLOW_STAMP := $(BACKENDS_DIR)/mlflow/installed-$(MLFLOW_VERSION).stamp

FLUXLOOP_E2E_PHOENIX ?= $(PHOENIX_VENV)/bin/phoenix
FLUXLOOP_E2E_MLFLOW ?= $(MLFLOW_VENV)/bin/mlflow
export FLUXLOOP_E2E_PHOENIX FLUXLOOP_E2E_MLFLOW

E2E_BACKENDS := $(if $(filter 0,$(FLUXLOOP_E2E)),,backends)

.PHONY: backends phoenix-backend mlflow-backend clean-backends

# The two installs are independent and mostly wait on the network: run them side by side.
backends:
	@$(MAKE) --no-print-directory -f $(BACKENDS_MK) -j2 phoenix-backend mlflow-backend

phoenix-backend: $(PHOENIX_STAMP)
	@:

mlflow-backend: $(MLFLOW_STAMP)
	@:

# $(call install_backend_venv,VENV,LOCK,TOP-LEVEL REQUIREMENT,EXECUTABLE,STAMP)
# Starts from an empty venv so a changed lock never leaves stale packages; the stamp is written last, so an
# interrupted install is redone on the next run.
define install_backend_venv
	@echo "backends: installing $(3) into $(1)"
	rm -rf $(1) $(dir $(1))installed-*.stamp
	$(BACKENDS_PYTHON) -m venv $(1)
	$(1)/bin/python -m pip install $(BACKENDS_PIP_FLAGS) -r $(2) '$(3)'
	test -x $(1)/bin/$(4)
	touch $(5)
endef

$(PHOENIX_STAMP): | $(BACKENDS_LOCK_DIR)/phoenix.txt
	$(call install_backend_venv,$(PHOENIX_VENV),$|,arize-phoenix==$(PHOENIX_VERSION),phoenix,$@)

$(MLFLOW_STAMP): | $(BACKENDS_LOCK_DIR)/mlflow.txt
	$(call install_backend_venv,$(MLFLOW_VENV),$|,mlflow==$(MLFLOW_VERSION),mlflow,$@)

clean-backends:
	rm -rf $(BACKENDS_DIR)
