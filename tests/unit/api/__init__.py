"""Tests of the v1.0 management API (pyscsi_target.api) against a fake TargetControl."""
