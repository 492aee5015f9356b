"""Helpers of `benchmarks/compare`: pyscsi-target against tgtd, side by side (issue #6, item 2).

Modules: `tools` (find or build fio with the libiscsi engine, install tgt and libiscsi-bin),
`backing` (identical prefilled backing files), `targets` (start and stop both targets on
loopback), `rss` (peak resident memory of a process tree), `jobs` (the fio and iscsi-perf
workloads and their parsers), `runner` (interleaved A/B rounds), `report` (medians, ratios,
floors, table, JSON), `chart` (PNG bar chart) and `cli` (the command line).
"""
