"""`benchmarks/config_scale`: the configuration plane at N volumes (issue #12)."""
