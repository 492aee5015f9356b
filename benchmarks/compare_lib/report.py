"""Collected samples -> medians, pyscsi/tgtd and pyscsi/istgt ratios, the floors and goals, a text
table and JSON.

The floors are issue #6's "What it must show": 4 KiB random read and write IOPS >= 0.5 x tgtd,
1 MiB read and write MiB/s >= 0.9 x tgtd, QD1 4 KiB read latency <= 2 x tgtd, and pyscsi's peak
RSS under the 1 MiB QD16 load <= 256 MiB. The goals are issue #17's, against istgt: 4 KiB random
read and write QD16 IOPS and 1 MiB read and write MiB/s >= 1.0 x istgt, QD1 latency <= 1.0 x,
and target CPU per 4 KiB command <= istgt's. A floor or goal whose inputs are missing (job not
run, a target not measured) is SKIP, never PASS.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from .jobs import (
    CLAT_MEAN,
    CLAT_P50,
    CLAT_P99,
    CPU_US,
    IOPS,
    JOBS_BY_NAME,
    LATENCY_METRICS,
    LOWER_IS_BETTER,
    MIBS,
    Sample,
)
from .rss import RssPeak

#: The targets: ours, and the two C targets every ratio compares it with (tgtd for issue #6's
#: floors, istgt for issue #17's goals).
OURS, THEIRS, ISTGT = "pyscsi", "tgtd", "istgt"
TARGETS = (OURS, THEIRS, ISTGT)
#: pyscsi-target from another checkout (`--baseline`): a column of its own when measured
BASELINE = "pyscsi-base"
REFERENCES = (THEIRS, ISTGT)
#: How each metric is labelled in the table and the chart.
METRIC_LABELS = {IOPS: "IOPS", MIBS: "MiB/s", CLAT_MEAN: "mean lat us", CLAT_P50: "p50 lat us",
                 CLAT_P99: "p99 lat us", CPU_US: "CPU us/cmd"}
#: The 1 MiB QD16 jobs whose peak RSS the memory floor looks at.
LARGE_IO_JOBS = ("seqread-1m-qd16", "seqwrite-1m-qd16")
PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"
#: Memory rows of the table: label, jobs looked at (None: all), RssPeak field. RSS counts mapped
#: file pages too: an mmap'd extent's page-cache pages show in RssFile, a pread()ing target's don't.
RSS_ROWS: tuple[tuple[str, tuple[str, ...] | None, str], ...] = (
    ("peak RSS, 1 MiB QD16 jobs", LARGE_IO_JOBS, "rss_kib"),
    ("  of which anonymous (RssAnon)", LARGE_IO_JOBS, "anon_kib"),
    ("  of which mapped files (RssFile)", LARGE_IO_JOBS, "file_kib"),
    ("peak RSS, any job", None, "rss_kib"),
)


@dataclass(frozen=True)
class Floor:
    """One floor: `ratio` compares pyscsi/`ref` medians of `metric` on `job`; `rss_mib` compares
    pyscsi's peak RSS over LARGE_IO_JOBS with an absolute limit."""

    label: str
    kind: str  # "ratio" or "rss_mib"
    job: str
    metric: str
    op: str  # ">=" or "<="
    limit: float
    ref: str = THEIRS

    def judge(self, value: float | None) -> str:
        if value is None:
            return SKIP
        ok = value >= self.limit if self.op == ">=" else value <= self.limit
        return PASS if ok else FAIL


#: Issue #6 floors.
FLOORS: tuple[Floor, ...] = (
    Floor("4 KiB random read IOPS, pyscsi/tgtd", "ratio", "randread-4k-qd16", IOPS, ">=", 0.5),
    Floor("4 KiB random write IOPS, pyscsi/tgtd", "ratio", "randwrite-4k-qd16", IOPS, ">=", 0.5),
    Floor("1 MiB read MiB/s, pyscsi/tgtd", "ratio", "seqread-1m-qd16", MIBS, ">=", 0.9),
    Floor("1 MiB write MiB/s, pyscsi/tgtd", "ratio", "seqwrite-1m-qd16", MIBS, ">=", 0.9),
    Floor("QD1 4 KiB read mean latency, pyscsi/tgtd", "ratio", "randread-4k-qd1", CLAT_MEAN, "<=", 2.0),
    Floor("pyscsi peak RSS under 1 MiB QD16 load, MiB", "rss_mib", "seqread-1m-qd16", "rss", "<=", 256.0),
)
#: Issue #17 goals (not floors: --fail-on-floor ignores them), against istgt.
GOALS: tuple[Floor, ...] = (
    Floor("4 KiB random read QD16 IOPS, pyscsi/istgt", "ratio", "randread-4k-qd16", IOPS, ">=", 1.0, ISTGT),
    Floor("4 KiB random write QD16 IOPS, pyscsi/istgt", "ratio", "randwrite-4k-qd16", IOPS, ">=", 1.0, ISTGT),
    Floor("1 MiB read MiB/s, pyscsi/istgt", "ratio", "seqread-1m-qd16", MIBS, ">=", 1.0, ISTGT),
    Floor("1 MiB write MiB/s, pyscsi/istgt", "ratio", "seqwrite-1m-qd16", MIBS, ">=", 1.0, ISTGT),
    Floor("QD1 4 KiB read mean latency, pyscsi/istgt", "ratio", "randread-4k-qd1", CLAT_MEAN, "<=", 1.0, ISTGT),
    Floor("CPU per 4 KiB random read (QD16), pyscsi/istgt", "ratio", "randread-4k-qd16", CPU_US, "<=", 1.0, ISTGT),
    Floor("CPU per 4 KiB random write (QD16), pyscsi/istgt", "ratio", "randwrite-4k-qd16", CPU_US, "<=", 1.0,
          ISTGT),
)


@dataclass
class Results:
    """Every sample, every peak RSS and every failed run, keyed by job name and target name."""

    samples: dict[str, dict[str, list[Sample]]] = field(default_factory=dict)
    rss: dict[str, dict[str, RssPeak]] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def add(self, job: str, target: str, sample: Sample, peak: RssPeak | None) -> None:
        self.samples.setdefault(job, {}).setdefault(target, []).append(sample)
        if peak is not None:
            per_job = self.rss.setdefault(job, {})
            per_job[target] = per_job[target].merge(peak) if target in per_job else peak

    def fail(self, job: str, target: str, round_no: int, message: str) -> None:
        self.errors.append({"job": job, "target": target, "round": round_no, "error": message})

    def median(self, job: str, target: str) -> Sample | None:
        runs = self.samples.get(job, {}).get(target)
        if not runs:
            return None
        metrics = dict.fromkeys(m for s in runs for m in s)  # CPU may be missing from some runs
        return {m: statistics.median(s[m] for s in runs if m in s) for m in metrics}

    def ratio(self, job: str, metric: str, ref: str = THEIRS) -> float | None:
        """pyscsi's median of `metric` on `job` over `ref`'s, None when either is missing."""
        ours, theirs = self.median(job, OURS), self.median(job, ref)
        if not ours or not theirs or metric not in ours or not theirs.get(metric):
            return None
        return ours[metric] / theirs[metric]

    def peak_rss_mib(self, target: str, jobs: tuple[str, ...] | None = None, part: str = "rss_kib") -> float | None:
        """Largest `part` (rss_kib, anon_kib or file_kib) of `target` over `jobs` (None: all), MiB."""
        peaks = [per[target] for name, per in self.rss.items()
                 if target in per and (jobs is None or name in jobs)]
        return max(getattr(p, part) for p in peaks) / 1024 if peaks else None

    def floor_value(self, floor: Floor) -> float | None:
        if floor.kind == "rss_mib":
            return self.peak_rss_mib(OURS, LARGE_IO_JOBS)
        return self.ratio(floor.job, floor.metric, floor.ref)

    def floors(self, which: tuple[Floor, ...] = FLOORS) -> list[dict[str, Any]]:
        out = []
        for f in which:
            value = self.floor_value(f)
            out.append({"floor": f.label, "value": value, "op": f.op, "limit": f.limit,
                        "result": f.judge(value)})
        return out

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Results:
        """The Results a `to_json` document was made from (for --replot)."""
        out = cls(errors=list(doc.get("errors", [])))
        for name, job in doc["jobs"].items():
            out.samples[name] = {t: [dict(s) for s in runs] for t, runs in job["samples"].items()}
            out.rss[name] = {t: RssPeak(**p) for t, p in job.get("peak_rss", {}).items()}
        return out

    def to_json(self, meta: dict[str, Any]) -> dict[str, Any]:
        jobs = {}
        for name, per_target in self.samples.items():
            job = JOBS_BY_NAME[name]
            jobs[name] = {
                "title": job.title, "tool": job.tool, "primary": job.primary,
                "samples": per_target,
                "median": {t: self.median(name, t) for t in per_target},
                "ratio": {m: self.ratio(name, m) for m in METRIC_LABELS},
                "ratio_istgt": {m: self.ratio(name, m, ISTGT) for m in METRIC_LABELS},
                "peak_rss": {t: p.as_dict() for t, p in self.rss.get(name, {}).items()},
            }
        peak = {t: self.peak_rss_mib(t) for t in TARGETS}
        return {"meta": meta, "jobs": jobs, "peak_rss_mib": peak, "floors": self.floors(),
                "goals": self.floors(GOALS), "errors": self.errors}


def metrics_shown(job: str) -> tuple[str, ...]:
    """Rows of the table for a job: latencies for the QD1 job, else its rate pair; then CPU."""
    primary = JOBS_BY_NAME[job].primary
    return (*(LATENCY_METRICS if primary in LATENCY_METRICS else (IOPS, MIBS)), CPU_US)


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def format_table(results: Results) -> str:
    """The medians, pyscsi/tgtd and pyscsi/istgt ratios, peak RSS, floors and goals as aligned text."""
    shown = (*TARGETS, BASELINE) if any(BASELINE in per for per in results.samples.values()) else TARGETS
    rows: list[tuple[str, ...]] = [("job", "metric", *shown, *(f"{OURS}/{r}" for r in REFERENCES))]
    for name in results.samples:
        title = JOBS_BY_NAME[name].title
        for metric in metrics_shown(name):
            med = {t: results.median(name, t) for t in shown}
            digits = 1 if metric in LOWER_IS_BETTER else 0
            vals = [_num(m.get(metric), digits) if m else "-" for m in med.values()]
            ratios = [_num(results.ratio(name, metric, r), 2) for r in REFERENCES]
            rows.append((title, METRIC_LABELS[metric], *vals, *ratios))
            title = ""
    for label, jobs, part in RSS_ROWS:
        vals = [_num(results.peak_rss_mib(t, jobs, part), 1) for t in shown]
        rows.append((label, "MiB", *vals, *("" for _ in REFERENCES)))
    columns = len(rows[0])
    widths = [max(len(r[i]) for r in rows) for i in range(columns)]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines.append("")
    lines.append("latency and CPU ratios: lower is better; all other ratios: higher is better;"
                 " CPU us/cmd: the target's user+system time over the run per command completed")
    lines.extend(format_floors(results.floors()))
    lines.extend(format_floors(results.floors(GOALS), heading="goals (issue #17, against istgt):"))
    return "\n".join(lines)


def format_floors(floors: list[dict[str, Any]], wrap: bool = False, heading: str = "floors (issue #6):") -> list[str]:
    """One line per floor or goal (two with `wrap`: the chart's narrow panel)."""
    out = ["", heading]
    gap = "\n        " if wrap else " "
    for f in floors:
        out.append(f"  {f['result']:4}  {f['floor']}:{gap}{_num(f['value'], 2)} {f['op']} {f['limit']:g}")
    return out
