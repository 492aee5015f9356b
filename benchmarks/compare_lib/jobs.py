"""The workloads of the comparison and how to read their results.

Five fio jobs with the libiscsi ioengine (issue #6: 4 KiB random read and write at QD16, 4 KiB
random read at QD1 for latency, 1 MiB sequential read and write at QD16) and one `iscsi-perf` run
(libiscsi-bin: READ16 with a fixed queue of requests; it only reads). Every run yields one
`Sample`: a dict of metric name -> value, with the metric names below.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

#: Metric names (all "higher is better" except the latencies and CPU per command).
IOPS, MIBS = "iops", "mib_s"
CLAT_MEAN, CLAT_P50, CLAT_P99 = "clat_mean_us", "clat_p50_us", "clat_p99_us"
LATENCY_METRICS = (CLAT_MEAN, CLAT_P50, CLAT_P99)
#: Target CPU time (user + system, all its threads) per completed command, microseconds (issue
#: #17); the runner adds it to every sample it can measure (see cpu.py).
CPU_US = "cpu_us_per_cmd"
#: Metrics where lower is better (their ratios read the other way).
LOWER_IS_BETTER = (*LATENCY_METRICS, CPU_US)
#: Completion-latency percentiles fio is asked for (its --percentile_list syntax).
FIO_PERCENTILES = "50:99"
#: fio's JSON keys for those percentiles in clat_ns.percentile.
FIO_P50_KEY, FIO_P99_KEY = "50.000000", "99.000000"
#: One MiB and one KiB, bytes.
MIB, KIB = 1 << 20, 1 << 10

Sample = dict[str, float]


class JobError(RuntimeError):
    """A benchmark tool failed or printed something we cannot read."""


@dataclass(frozen=True)
class Job:
    """One workload. `tool` is "fio" or "iscsi-perf"; `primary` is the metric the floors,
    the chart and the headline ratio use."""

    name: str
    title: str
    tool: str
    rw: str
    block_bytes: int
    iodepth: int
    primary: str

    @property
    def writes(self) -> bool:
        return "write" in self.rw


JOBS: tuple[Job, ...] = (
    Job("randread-4k-qd16", "4 KiB random read, QD16", "fio", "randread", 4 * KIB, 16, IOPS),
    Job("randwrite-4k-qd16", "4 KiB random write, QD16", "fio", "randwrite", 4 * KIB, 16, IOPS),
    Job("randread-4k-qd1", "4 KiB random read, QD1 (latency)", "fio", "randread", 4 * KIB, 1, CLAT_MEAN),
    Job("seqread-1m-qd16", "1 MiB sequential read, QD16", "fio", "read", MIB, 16, MIBS),
    Job("seqwrite-1m-qd16", "1 MiB sequential write, QD16", "fio", "write", MIB, 16, MIBS),
    Job("iscsi-perf-4k-qd16", "iscsi-perf 4 KiB random READ16, QD16", "iscsi-perf", "randread", 4 * KIB, 16, IOPS),
)
JOBS_BY_NAME = {j.name: j for j in JOBS}


def fio_filename(url: str) -> str:
    """fio's --filename for an iscsi:// URL: every ':' escaped as '\\:' (fio splits on ':')."""
    return url.replace(":", "\\:")


def fio_argv(fio: str, job: Job, url: str, runtime_s: float, ramp_s: float, span: int) -> list[str]:
    argv = [
        fio, f"--name={job.name}", "--ioengine=libiscsi", f"--filename={fio_filename(url)}",
        f"--rw={job.rw}", f"--bs={job.block_bytes}", f"--iodepth={job.iodepth}", f"--size={span}",
        "--time_based", f"--runtime={runtime_s:g}s", f"--ramp_time={ramp_s:g}s",
        f"--percentile_list={FIO_PERCENTILES}", "--output-format=json",
    ]
    if job.rw.startswith("rand"):
        argv.append("--norandommap")  # no coverage map: less fio CPU, uniform random offsets
    return argv


#: fio prints notes (e.g. "queue depth will be capped at 1", wrong for libiscsi) before its JSON.
_JSON_START = re.compile(r"^\{", re.MULTILINE)


def _json_document(stdout: str) -> dict[str, Any]:
    m = _JSON_START.search(stdout)
    if m is None:
        raise JobError(f"no JSON in fio output: {stdout[:300]!r}")
    try:
        doc = json.loads(stdout[m.start():])
    except json.JSONDecodeError as err:
        raise JobError(f"fio output is not JSON: {err}") from err
    if not isinstance(doc, dict):
        raise JobError("fio JSON is not an object")
    return doc


def parse_fio(stdout: str, job: Job) -> Sample:
    """The Sample of one fio run of `job` from its --output-format=json stdout."""
    jobs = _json_document(stdout).get("jobs")
    if not isinstance(jobs, list) or len(jobs) != 1:
        raise JobError(f"expected one job in fio JSON, got {jobs!r:.200}")
    try:
        return _fio_sample(jobs[0], job)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise JobError(f"fio JSON for {job.name} lacks an expected field: {err!r}") from err


def _fio_sample(res: dict[str, Any], job: Job) -> Sample:
    if res.get("error"):
        raise JobError(f"fio job {job.name} failed with error {res['error']}")
    side = res["write" if job.writes else "read"]
    if not side.get("total_ios"):
        raise JobError(f"fio job {job.name} completed no I/O")
    clat = side["clat_ns"]
    pct = clat["percentile"]
    return {
        IOPS: float(side["iops"]),
        MIBS: float(side["bw_bytes"]) / MIB,
        CLAT_MEAN: float(clat["mean"]) / 1000,
        CLAT_P50: float(pct[FIO_P50_KEY]) / 1000,
        CLAT_P99: float(pct[FIO_P99_KEY]) / 1000,
    }


def iscsi_perf_argv(tool: str, job: Job, url: str, runtime_s: float, block_size: int) -> list[str]:
    """iscsi-perf: -m requests in flight, -b blocks per request, -t whole seconds, -r random."""
    if job.block_bytes % block_size:
        raise JobError(f"{job.block_bytes} bytes is not a whole number of {block_size}-byte blocks")
    argv = [tool, "-m", str(job.iodepth), "-b", str(job.block_bytes // block_size),
            "-t", str(max(1, round(runtime_s)))]
    if job.rw.startswith("rand"):
        argv.append("-r")
    return [*argv, url]


#: iscsi-perf's closing line (progress lines are separated by '\r'); MB there is 2**20 bytes.
_PERF_AVERAGE = re.compile(r"iops average (\d+) \((\d+) MB/s\)")
_PERF_TRANSFER = re.compile(r"fixed transfer size of (\d+) blocks \((\d+) byte\)", re.IGNORECASE)


def parse_iscsi_perf(stdout: str, job: Job) -> Sample:
    """The Sample of one iscsi-perf run: its last 'iops average' and the transfer size check."""
    size = _PERF_TRANSFER.search(stdout)
    if not size or int(size.group(2)) != job.block_bytes:
        raise JobError(f"iscsi-perf did not run {job.block_bytes}-byte requests: {stdout[-300:]!r}")
    averages = _PERF_AVERAGE.findall(stdout)
    if not averages or "finished." not in stdout:
        raise JobError(f"iscsi-perf printed no final average: {stdout[-300:]!r}")
    iops = float(averages[-1][0])
    return {IOPS: iops, MIBS: iops * job.block_bytes / MIB}
