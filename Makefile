# The two commands a newcomer runs: `make run` and `make test`. Both set up what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: run test setup system-deps ceph-deps lint unit conformance clean guest test-linux-initiator test-rbd ceph-cluster

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
# open-isns's server and client (isnsd, isnsadm) for the iSNS registration tests, systemd's
# systemd-analyze (verifies contrib/pyscsi-target.service), and QEMU for the Linux-initiator guest
# (tests/linux_initiator, issue #16; TCG, no KVM needed).
system-deps:
	@command -v iscsi-test-cu >/dev/null && command -v iscsi-ls >/dev/null || ./scripts/apt-install libiscsi-bin
	@test -x /usr/sbin/isnsd && test -x /usr/sbin/isnsadm || ./scripts/apt-install open-isns-server open-isns-utils
	@command -v systemd-analyze >/dev/null || ./scripts/apt-install systemd
	@command -v qemu-system-x86_64 >/dev/null || ./scripts/apt-install qemu-system-x86

# Ceph for RBD extents and their tests (issue #15): the daemons of the private single-node test
# cluster (tests/rbd/cluster.py: ceph-mon, ceph-osd; `ceph`/`rbd` from ceph-common) and Debian's
# Python bindings, made visible to the venv by scripts/ceph-bindings (links to just rados/rbd, a .pth).
ceph-deps: setup
	@command -v ceph-mon >/dev/null && command -v ceph-osd >/dev/null && command -v rbd >/dev/null \
	  && ls /usr/lib/python3/dist-packages/rbd.cpython-*.so >/dev/null 2>&1 \
	  || ./scripts/apt-install ceph-mon ceph-osd ceph-common python3-rados python3-rbd
	@./scripts/ceph-bindings $(VENV)

# ---- the two commands --------------------------------------------------------------------------
run: setup
	$(VENV)/bin/pyscsi-target serve --demo $(ARGS)

test: setup system-deps ceph-deps lint
	./scripts/pytest-ok $(PY) -m pytest -q $(ARGS)

# ---- pieces ------------------------------------------------------------------------------------
lint: setup
	$(VENV)/bin/ruff check pyscsi_target tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

unit: setup
	./scripts/pytest-ok $(PY) -m pytest -q tests/unit $(ARGS)

# The guest of the Linux-initiator tests: a Debian kernel and an initramfs with open-iscsi and
# multipath-tools, built from `apt-get download`ed packages, cached in ~/.cache/pyscsi-target/guest.
guest: setup system-deps
	$(PY) -m tests.linux_initiator.build

# Only the Linux-initiator tests (3 QEMU boots, a few minutes on 2 cores); -s shows the checks.
test-linux-initiator: setup system-deps guest
	./scripts/pytest-ok $(PY) -m pytest -q -s -m linux_initiator tests/linux_initiator $(ARGS)

# the RBD tests alone, on a private Ceph cluster started for the session (CI=true: fail, not skip)
test-rbd: setup system-deps ceph-deps
	./scripts/pytest-ok $(PY) -m pytest -q tests/rbd tests/conformance/test_rbd_suite.py $(ARGS)
	./scripts/pytest-ok $(PY) -m pytest -q tests/unit/storage/test_contract.py -k rbd $(ARGS)

# a private Ceph cluster in ./ceph-cluster until Ctrl-C (prints its conf: --ceph-conf FILE)
ceph-cluster: setup ceph-deps
	$(PY) -m tests.rbd.cluster ceph-cluster

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
