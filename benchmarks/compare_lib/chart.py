"""The PNG bar chart of a comparison: one panel per job (median of each target, whiskers from the
slowest to the fastest round), one of target CPU per command and one of peak RSS.

matplotlib is the project's optional `bench` dependency (pyproject.toml). `ensure_matplotlib`
installs that group into the running interpreter when it is missing, unless told not to.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

from .jobs import CPU_US, JOBS_BY_NAME, LATENCY_METRICS
from .report import GOALS, LARGE_IO_JOBS, METRIC_LABELS, OURS, REFERENCES, TARGETS, Results, format_floors
from .tools import REPO_ROOT

#: Bar colours per target (matplotlib's default cycle's first three).
COLOURS = {"pyscsi": "tab:blue", "tgtd": "tab:orange", "istgt": "tab:green"}
#: Panels per row of the figure, and size of one panel in inches.
COLUMNS = 4
PANEL_INCHES = (4.2, 3.4)
#: How bar values are printed above the bars.
VALUE_FORMAT = "{:,.0f}"
#: Free space above the tallest bar for the value labels and the legend (fraction of the range).
HEADROOM = 0.3
#: Resolution of the PNG, dots per inch.
DPI = 110


def bench_requirements(pyproject: Path = REPO_ROOT / "pyproject.toml") -> list[str]:
    """The `bench` optional-dependency group of pyproject.toml."""
    data = tomllib.loads(pyproject.read_text())
    return list(data["project"]["optional-dependencies"]["bench"])


def ensure_matplotlib(install: bool = True) -> Any:
    """Import matplotlib (Agg backend), pip-installing the bench group first if allowed."""
    try:
        mpl = importlib.import_module("matplotlib")
    except ImportError:
        if not install:
            raise
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *bench_requirements()], check=True)
        mpl = importlib.import_module("matplotlib")
    mpl.use("Agg")
    return importlib.import_module("matplotlib.pyplot")


def _spread(results: Results, job: str, target: str, metric: str) -> tuple[float, float, float] | None:
    runs = results.samples.get(job, {}).get(target)
    med = results.median(job, target)
    if not runs or med is None:
        return None
    values = [s[metric] for s in runs]
    return med[metric], med[metric] - min(values), max(values) - med[metric]


def _job_panel(ax: Any, results: Results, job: str) -> None:
    metrics = LATENCY_METRICS if JOBS_BY_NAME[job].primary in LATENCY_METRICS else (JOBS_BY_NAME[job].primary,)
    width = 0.8 / len(TARGETS)
    for i, target in enumerate(TARGETS):
        spreads = [_spread(results, job, target, m) for m in metrics]
        xs = [k + (i - (len(TARGETS) - 1) / 2) * width for k, s in enumerate(spreads) if s]
        kept = [s for s in spreads if s]
        if kept:
            bars = ax.bar(xs, [s[0] for s in kept], width, yerr=[[s[1] for s in kept], [s[2] for s in kept]],
                          color=COLOURS[target], label=target, capsize=3)
            ax.bar_label(bars, fmt=VALUE_FORMAT, fontsize=7, padding=2)
    ax.set_xticks(range(len(metrics)), [METRIC_LABELS[m] for m in metrics])
    ax.set_xlim(-0.5, len(metrics) - 0.5)
    ratios = [(ref, results.ratio(job, JOBS_BY_NAME[job].primary, ref)) for ref in REFERENCES]
    suffix = ", ".join(f"{OURS}/{ref} = {r:.2f}" for ref, r in ratios if r is not None)
    ax.set_title(JOBS_BY_NAME[job].title + (f"\n{suffix}" if suffix else ""), fontsize=9)
    _finish(ax)


def _cpu_panel(ax: Any, results: Results) -> None:
    """Target CPU per command, one group of bars per job."""
    jobs = list(results.samples)
    width = 0.8 / len(TARGETS)
    for i, target in enumerate(TARGETS):
        vals = [(k, (results.median(job, target) or {}).get(CPU_US)) for k, job in enumerate(jobs)]
        kept = [(k, v) for k, v in vals if v is not None]
        if kept:
            bars = ax.bar([k + (i - (len(TARGETS) - 1) / 2) * width for k, _ in kept], [v for _, v in kept],
                          width, color=COLOURS[target], label=target)
            ax.bar_label(bars, fmt=VALUE_FORMAT, fontsize=6, padding=2)
    ax.set_xticks(range(len(jobs)), jobs, rotation=30, ha="right", fontsize=7)
    ax.set_xlim(-0.5, len(jobs) - 0.5)
    ax.set_yscale("log")
    ax.set_ylabel("us per command (log)")
    ax.set_title("target CPU per command (user+system)", fontsize=9)
    _finish(ax)


def _rss_panel(ax: Any, results: Results) -> None:
    groups = (("RSS,\n1 MiB QD16", LARGE_IO_JOBS, "rss_kib"), ("anon,\n1 MiB QD16", LARGE_IO_JOBS, "anon_kib"),
              ("RSS,\nany job", None, "rss_kib"))
    width = 0.8 / len(TARGETS)
    for i, target in enumerate(TARGETS):
        vals = [results.peak_rss_mib(target, jobs, part) for _, jobs, part in groups]
        if any(v is None for v in vals):
            continue
        xs = [k + (i - (len(TARGETS) - 1) / 2) * width for k in range(len(groups))]
        bars = ax.bar(xs, vals, width, color=COLOURS[target], label=target)
        ax.bar_label(bars, fmt=VALUE_FORMAT, fontsize=7, padding=2)
    ax.set_xticks(range(len(groups)), [g[0] for g in groups])
    ax.set_xlim(-0.5, len(groups) - 0.5)
    ax.set_ylabel("MiB")
    ax.set_title("peak RSS (MiB)", fontsize=9)
    _finish(ax)


def _floors_panel(ax: Any, results: Results) -> None:
    lines = [ln.strip() for ln in format_floors(results.floors(), wrap=True)[1:]]
    lines += [ln.strip() for ln in format_floors(results.floors(GOALS), wrap=True, heading="goals (issue #17):")]
    ax.text(0.0, 1.0, "\n".join(lines), va="top", ha="left", fontsize=7, family="monospace",
            transform=ax.transAxes, wrap=True)


def _finish(ax: Any) -> None:
    ax.margins(y=HEADROOM)
    ax.legend(fontsize=7, loc="upper center", ncols=len(TARGETS))


def draw(results: Results, path: Path, subtitle: str, install: bool = True) -> Path:
    """Write the chart of `results` to `path` (PNG) and return the path."""
    plt = ensure_matplotlib(install)
    jobs = list(results.samples)
    panels = len(jobs) + 2
    rows = (panels + COLUMNS) // COLUMNS  # one more slot for the floors and goals
    cols = min(COLUMNS, panels + 1)
    fig, axes = plt.subplots(rows, cols, figsize=(PANEL_INCHES[0] * cols, PANEL_INCHES[1] * rows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax, job in zip(flat, jobs, strict=False):
        _job_panel(ax, results, job)
        primary = JOBS_BY_NAME[job].primary
        ax.set_ylabel("microseconds" if primary in LATENCY_METRICS else METRIC_LABELS[primary])
    _cpu_panel(flat[len(jobs)], results)
    _rss_panel(flat[len(jobs) + 1], results)
    for ax in flat[panels:]:
        ax.axis("off")
    if len(flat) > panels:
        _floors_panel(flat[panels], results)
    fig.suptitle(f"pyscsi-target vs tgtd and istgt (medians, whiskers: min-max over rounds)\n{subtitle}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path
