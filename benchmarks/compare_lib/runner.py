"""Running the workloads: interleaved A/B rounds over the live targets.

Within a round every job runs once on each target, back to back, and the order of the two
alternates from one (round, job) to the next (A B, B A, ...) so that slow drift of the machine
(page-cache writeback, another engineer's load) falls on both sides alike. After a write job the
page cache is synced (not timed) so the next run does not pay for the previous run's dirty pages.
A failed run is recorded and the rounds go on; a target that died is not run again.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .jobs import Job, JobError, Sample, fio_argv, iscsi_perf_argv, parse_fio, parse_iscsi_perf
from .report import Results
from .rss import PeakRss, RssPeak
from .targets import ChildTarget

#: Time a tool may take beyond its runtime and ramp (connect, login, teardown), seconds.
RUN_SLACK_S = 60.0


@dataclass(frozen=True)
class Plan:
    """What to run: jobs, rounds, seconds per run, the LUN region fio uses, and the tools."""

    jobs: Sequence[Job]
    rounds: int
    runtime_s: float
    ramp_s: float
    span: int
    fio: Path
    iscsi_perf: Path | None
    block_size: int
    raw_dir: Path


def command(plan: Plan, job: Job, url: str) -> list[str]:
    if job.tool == "fio":
        return fio_argv(str(plan.fio), job, url, plan.runtime_s, plan.ramp_s, plan.span)
    if plan.iscsi_perf is None:
        raise JobError("iscsi-perf is not available")
    return iscsi_perf_argv(str(plan.iscsi_perf), job, url, plan.runtime_s, plan.block_size)


def run_once(plan: Plan, job: Job, target: ChildTarget, round_no: int) -> tuple[Sample, RssPeak | None]:
    """One run of `job` against `target`; its sample and the target's peak RSS meanwhile."""
    argv = command(plan, job, target.url)
    with PeakRss(target.pid) as peak:
        res = subprocess.run(argv, capture_output=True, text=True,
                             timeout=plan.runtime_s + plan.ramp_s + RUN_SLACK_S)
    raw = plan.raw_dir / f"r{round_no:02d}-{job.name}-{target.name}.out"
    raw.write_text(res.stdout + ("\n--- stderr ---\n" + res.stderr if res.stderr else ""))
    if job.writes:
        os.sync()
    if not target.alive():
        raise JobError(f"{target.name} exited during the run")
    if res.returncode != 0:
        raise JobError(f"{argv[0]} exited {res.returncode}: {(res.stderr or res.stdout).strip()[-300:]}")
    parse = parse_fio if job.tool == "fio" else parse_iscsi_perf
    return parse(res.stdout, job), peak.result


def pair_order(targets: Sequence[ChildTarget], round_no: int, job_index: int) -> list[ChildTarget]:
    """A B for even (round + job), B A for odd: the interleaving."""
    return list(targets) if (round_no + job_index) % 2 == 0 else list(reversed(targets))


Progress = Callable[[str], None]


def run_rounds(plan: Plan, targets: Sequence[ChildTarget], results: Results, say: Progress) -> None:
    """All rounds of all jobs on all targets, into `results`."""
    for round_no in range(1, plan.rounds + 1):
        for job_index, job in enumerate(plan.jobs):
            for target in pair_order(targets, round_no, job_index):
                if not target.alive():
                    results.fail(job.name, target.name, round_no, "target is not running")
                    continue
                try:
                    sample, peak = run_once(plan, job, target, round_no)
                except (JobError, subprocess.TimeoutExpired, OSError) as err:
                    results.fail(job.name, target.name, round_no, str(err))
                    say(f"round {round_no}/{plan.rounds} {job.name:20} {target.name:7} FAILED: {err}")
                    continue
                results.add(job.name, target.name, sample, peak)
                say(f"round {round_no}/{plan.rounds} {job.name:20} {target.name:7} {brief(job, sample)}")


def brief(job: Job, sample: Sample) -> str:
    return (f"{sample['iops']:>10,.0f} IOPS {sample['mib_s']:>8,.1f} MiB/s"
            + (f"  mean {sample['clat_mean_us']:.1f} us" if "clat_mean_us" in sample else ""))
