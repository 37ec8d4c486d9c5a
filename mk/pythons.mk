# The suite on every supported Python (issue 10). Included from the Makefile, which defines PIP flags and STAMP.
#
#   make test-pythons   the suite without the e2e backends (FLUXLOOP_E2E=0) on 3.10, 3.12 and 3.13, one after the
#                       other, each in its own venv (.venv-3.10 ...; git-ignored, built once, rebuilt when
#                       pyproject.toml changes). The default interpreter (.venv) runs the whole suite in `make test`.
#
# Interpreters are found by mk/find-python.sh (python3.X on PATH, else ~/.pyenv/versions/3.X.*); a missing one
# stops the run with a message naming it. None is ever downloaded.

PY_VERSIONS ?= 3.10 3.12 3.13
PY_TESTS    := $(foreach v,$(PY_VERSIONS),test-py$(v))

.PHONY: test-pythons $(PY_TESTS)
.PRECIOUS: .venv-%/.installed-stamp

.venv-%/.installed-stamp: pyproject.toml
	@interpreter=$$(sh mk/find-python.sh $*) && { test -x .venv-$*/bin/python || "$$interpreter" -m venv .venv-$*; }
	.venv-$*/bin/python -m pip --disable-pip-version-check -q install --upgrade pip
	.venv-$*/bin/python -m pip --disable-pip-version-check -q install -e '.[dev]'
	touch $@

$(PY_TESTS): test-py%: .venv-%/.installed-stamp
	@echo "== the suite without e2e on Python $*"
	FLUXLOOP_E2E=0 .venv-$*/bin/python -m pytest -q -p no:cacheprovider -m 'not install'  # the wheel test: once, in .venv

test-pythons: $(PY_TESTS)
