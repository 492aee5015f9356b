"""Running the workloads: interleaved rounds over the live targets.

Within a round every job runs once on each target, back to back, and the order rotates from one
(round, job) to the next (A B C, B C A, ...; with two targets A B, B A) so that slow drift of the
machine (page-cache writeback, another engineer's load) falls on every side alike. Around each
run the target's CPU time is read from /proc (cpu.py) and divided by the commands the run
completed: the sample's CPU_US (issue #17). After a write job the
page cache is synced (not timed) so the next run does not pay for the previous run's dirty pages,
and before every run the target's backing file is read through (not timed): the machine may have
dropped page-cache pages since the prefill, and a cold run measures the disk, not the target.
A failed run is recorded and the rounds go on; a target that died is not run again.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .backing import warm
from .cpu import tree_cpu_s, us_per_command
from .jobs import CPU_US, IOPS, Job, JobError, Sample, fio_argv, iscsi_perf_argv, parse_fio, parse_iscsi_perf
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
    #: each target's backing file by target name: its first `span` bytes are read before every
    #: run, so every run starts from a hot page cache (backing.warm)
    backing: Mapping[str, Path] = field(default_factory=dict)


def command(plan: Plan, job: Job, url: str) -> list[str]:
    if job.tool == "fio":
        return fio_argv(str(plan.fio), job, url, plan.runtime_s, plan.ramp_s, plan.span)
    if plan.iscsi_perf is None:
        raise JobError("iscsi-perf is not available")
    return iscsi_perf_argv(str(plan.iscsi_perf), job, url, plan.runtime_s, plan.block_size)


def commands_of(plan: Plan, job: Job, sample: Sample) -> float:
    """Commands the run completed, from its IOPS: fio's IOPS cover the measured `runtime`, but the
    target also served the `ramp` before it at about the same rate (connect and login are a few
    commands); iscsi-perf runs whole seconds without a ramp."""
    if job.tool == "fio":
        return sample[IOPS] * (plan.runtime_s + plan.ramp_s)
    return sample[IOPS] * max(1, round(plan.runtime_s))


def run_once(plan: Plan, job: Job, target: ChildTarget, round_no: int) -> tuple[Sample, RssPeak | None]:
    """One run of `job` against `target`; its sample (with the target's CPU per command) and the
    target's peak RSS meanwhile."""
    argv = command(plan, job, target.url)
    if target.name in plan.backing:
        warm(plan.backing[target.name], plan.span)
    with PeakRss(target.pid) as peak:
        cpu_before = tree_cpu_s(target.pid)
        res = subprocess.run(argv, capture_output=True, text=True,
                             timeout=plan.runtime_s + plan.ramp_s + RUN_SLACK_S)
        cpu_s = tree_cpu_s(target.pid) - cpu_before
    raw = plan.raw_dir / f"r{round_no:02d}-{job.name}-{target.name}.out"
    raw.write_text(res.stdout + ("\n--- stderr ---\n" + res.stderr if res.stderr else ""))
    if job.writes:
        os.sync()
    if not target.alive():
        raise JobError(f"{target.name} exited during the run")
    if res.returncode != 0:
        raise JobError(f"{argv[0]} exited {res.returncode}: {(res.stderr or res.stdout).strip()[-300:]}")
    parse = parse_fio if job.tool == "fio" else parse_iscsi_perf
    sample = parse(res.stdout, job)
    cpu_us = us_per_command(cpu_s, commands_of(plan, job, sample))
    if cpu_us is not None:
        sample[CPU_US] = cpu_us
    return sample, peak.result


def pair_order(targets: Sequence[ChildTarget], round_no: int, job_index: int) -> list[ChildTarget]:
    """The targets rotated by (round + job): A B C, B C A, C A B, ...; for two, A B then B A."""
    k = (round_no + job_index) % len(targets) if targets else 0
    return [*targets[k:], *targets[:k]]


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
            + (f"  mean {sample['clat_mean_us']:.1f} us" if "clat_mean_us" in sample else "")
            + (f"  CPU {sample[CPU_US]:.1f} us/cmd" if CPU_US in sample else ""))
