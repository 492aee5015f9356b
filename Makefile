# The two commands a newcomer runs: `make run` and `make test`. Both set up what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: run test setup system-deps lint unit conformance clean

# ---- set-up ------------------------------------------------------------------------------------
$(STAMP): pyproject.toml
	@$(PYTHON) -m venv --help >/dev/null 2>&1 || $(MAKE) --no-print-directory apt-python
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { $(MAKE) --no-print-directory apt-python && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,bench]'
	@touch $(STAMP)

setup: $(STAMP)

.PHONY: apt-python
apt-python:
	./scripts/apt-install python3-venv python3-pip

# Debian packages the tests drive: libiscsi's command-line tools (iscsi-ls, iscsi-inq, iscsi-test-cu),
# open-isns's server and client (isnsd, isnsadm) for the iSNS registration tests, and systemd's
# systemd-analyze (verifies contrib/pyscsi-target.service).
system-deps:
	@command -v iscsi-test-cu >/dev/null && command -v iscsi-ls >/dev/null || ./scripts/apt-install libiscsi-bin
	@test -x /usr/sbin/isnsd && test -x /usr/sbin/isnsadm || ./scripts/apt-install open-isns-server open-isns-utils
	@command -v systemd-analyze >/dev/null || ./scripts/apt-install systemd

# ---- the two commands --------------------------------------------------------------------------
run: setup
	$(VENV)/bin/pyscsi-target serve --demo $(ARGS)

test: setup system-deps lint
	./scripts/pytest-ok $(PY) -m pytest -q $(ARGS)

# ---- pieces ------------------------------------------------------------------------------------
lint: setup
	$(VENV)/bin/ruff check pyscsi_target tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

unit: setup
	./scripts/pytest-ok $(PY) -m pytest -q tests/unit $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
