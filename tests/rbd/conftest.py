"""The RBD suites (issue #15): every test here uses the session's Ceph cluster (fixtures.py); the
cephx tests their own (`cephx_cluster`, registered here: only these suites use it)."""

from .fixtures import cephx_cluster  # noqa: F401 - a session fixture of these suites
