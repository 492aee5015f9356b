"""Collected samples -> medians, pyscsi/tgtd ratios, the issue's floors, a text table and JSON.

The floors are issue #6's "What it must show": 4 KiB random read and write IOPS >= 0.5 x tgtd,
1 MiB read and write MiB/s >= 0.9 x tgtd, QD1 4 KiB read latency <= 2 x tgtd, and pyscsi's peak
RSS under the 1 MiB QD16 load <= 256 MiB. A floor whose inputs are missing (job not run, a
target not measured) is SKIP, never PASS.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from .jobs import CLAT_MEAN, CLAT_P50, CLAT_P99, IOPS, JOBS_BY_NAME, LATENCY_METRICS, MIBS, Sample
from .rss import RssPeak

#: The two targets, in the order of the ratio's numerator and denominator.
OURS, THEIRS = "pyscsi", "tgtd"
TARGETS = (OURS, THEIRS)
#: How each metric is labelled in the table and the chart.
METRIC_LABELS = {IOPS: "IOPS", MIBS: "MiB/s", CLAT_MEAN: "mean lat us", CLAT_P50: "p50 lat us",
                 CLAT_P99: "p99 lat us"}
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
    """One floor: `ratio` compares pyscsi/tgtd medians of `metric` on `job`; `rss_mib` compares
    pyscsi's peak RSS over LARGE_IO_JOBS with an absolute limit."""

    label: str
    kind: str  # "ratio" or "rss_mib"
    job: str
    metric: str
    op: str  # ">=" or "<="
    limit: float

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
        return {m: statistics.median(s[m] for s in runs) for m in runs[0]}

    def ratio(self, job: str, metric: str) -> float | None:
        ours, theirs = self.median(job, OURS), self.median(job, THEIRS)
        if not ours or not theirs or not theirs.get(metric):
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
        return self.ratio(floor.job, floor.metric)

    def floors(self) -> list[dict[str, Any]]:
        out = []
        for f in FLOORS:
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
                "peak_rss": {t: p.as_dict() for t, p in self.rss.get(name, {}).items()},
            }
        peak = {t: self.peak_rss_mib(t) for t in TARGETS}
        return {"meta": meta, "jobs": jobs, "peak_rss_mib": peak, "floors": self.floors(),
                "errors": self.errors}


def metrics_shown(job: str) -> tuple[str, ...]:
    """Rows of the table for a job: latencies for the QD1 job, else its rate pair."""
    primary = JOBS_BY_NAME[job].primary
    return LATENCY_METRICS if primary in LATENCY_METRICS else (IOPS, MIBS)


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def format_table(results: Results) -> str:
    """The medians, pyscsi/tgtd ratios, peak RSS and floors as aligned text."""
    rows: list[tuple[str, ...]] = [("job", "metric", OURS, THEIRS, f"{OURS}/{THEIRS}")]
    for name in results.samples:
        title = JOBS_BY_NAME[name].title
        for metric in metrics_shown(name):
            med = {t: results.median(name, t) for t in TARGETS}
            vals = [_num(m[metric], 1 if metric in LATENCY_METRICS else 0) if m else "-" for m in med.values()]
            rows.append((title, METRIC_LABELS[metric], *vals, _num(results.ratio(name, metric), 2)))
            title = ""
    for label, jobs, part in RSS_ROWS:
        vals = [_num(results.peak_rss_mib(t, jobs, part), 1) for t in TARGETS]
        rows.append((label, "MiB", *vals, ""))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines.append("")
    lines.append("latency ratios: lower is better; all other ratios: higher is better")
    lines.extend(format_floors(results.floors()))
    return "\n".join(lines)


def format_floors(floors: list[dict[str, Any]], wrap: bool = False) -> list[str]:
    """One line per floor (two with `wrap`: the chart's narrow panel)."""
    out = ["", "floors (issue #6):"]
    gap = "\n        " if wrap else " "
    for f in floors:
        out.append(f"  {f['result']:4}  {f['floor']}:{gap}{_num(f['value'], 2)} {f['op']} {f['limit']:g}")
    return out
