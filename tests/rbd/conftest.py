"""The RBD suites (issue #15): every test here uses the session's Ceph cluster (fixtures.py)."""
