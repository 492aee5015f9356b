"""`benchmarks/compare`: the command line, set-up, and the whole comparison from tools to chart.

Steps: find or build fio with libiscsi, install tgt, istgt and libiscsi-bin if missing; write
identical backing files; start tgtd, istgt and pyscsi-target on loopback; check the LUNs have the
same geometry;
run the interleaved rounds; stop the targets; print the table and write results.json, table.txt
and chart.png (plus every tool's raw output under raw/ and the targets' logs under logs/).

Exit status: 0 all runs succeeded; 1 set-up failed (a tool or a target); 2 some runs failed;
3 every run succeeded but a floor failed and --fail-on-floor was given.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import chart
from .backing import prefill
from .jobs import JOBS, JOBS_BY_NAME, MIB, Job
from .report import BASELINE, FAIL, ISTGT, OURS, TARGETS, THEIRS, Results, format_table
from .rss import tree_status
from .runner import Plan, run_rounds
from .targets import BaselinePyscsi, ChildTarget, Istgt, PyscsiTarget, TargetError, Tgtd, lun_geometry, pyscsi_command
from .tools import DEFAULT_FIO_PREFIX, REPO_ROOT, ToolError, ensure_fio, ensure_istgt, ensure_programs, ensure_tgt

#: Capacity of both LUNs, bytes: pyscsi-target's demo LUN is 1 GiB (issue #2), tgtd's file matches.
LUN_BYTES = 1 << 30
#: Where results go unless --out says otherwise (benchmarks/.gitignore ignores it).
RESULTS_ROOT = REPO_ROOT / "benchmarks" / "results"
EXIT_OK, EXIT_SETUP, EXIT_RUNS, EXIT_FLOORS = 0, 1, 2, 3
DESCRIPTION = """\
pyscsi-target vs tgtd and istgt, side by side (issues #6, #17): fio (libiscsi engine) and
iscsi-perf over loopback against the targets on identical 1 GiB backing files, in interleaved
rounds; prints medians, target CPU per command, pyscsi/tgtd and pyscsi/istgt ratios, peak RSS,
issue #6's floors and issue #17's goals, and writes results.json, table.txt and chart.png. Needs
root (apt-get, tgtd). See docs/performance.md.

exit status: 0 all runs succeeded; 1 set-up failed; 2 some runs failed;
3 a floor failed and --fail-on-floor was given."""


@dataclass(frozen=True)
class Profile:
    """A run length: rounds, seconds per run (plus unmeasured ramp), LUN region, jobs."""

    rounds: int
    runtime_s: float
    ramp_s: float
    span: int
    jobs: tuple[str, ...]


ALL_JOBS = tuple(j.name for j in JOBS)
#: default: 5 rounds x 6 jobs x 3 targets x (10 s + 2 s ramp) ~ 19 minutes.
#: --quick: 3 rounds of 3 s runs (+0.5 s ramp) ~ 3 minutes with set-up.
#: --smoke: one round, 1 s runs, two fio jobs and iscsi-perf on a 64 MiB region: a CI check that
#: the script still works, its numbers mean nothing.
PROFILES = {
    "full": Profile(rounds=5, runtime_s=10, ramp_s=2, span=LUN_BYTES, jobs=ALL_JOBS),
    "quick": Profile(rounds=3, runtime_s=3, ramp_s=0.5, span=LUN_BYTES, jobs=ALL_JOBS),
    "smoke": Profile(rounds=1, runtime_s=1, ramp_s=0, span=64 * MIB,
                     jobs=("randread-4k-qd16", "seqwrite-1m-qd16", "iscsi-perf-4k-qd16")),
}


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="benchmarks/compare", description=DESCRIPTION,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_const", dest="profile", const="quick",
                      help="3 short rounds, about two minutes")
    mode.add_argument("--smoke", action="store_const", dest="profile", const="smoke",
                      help="one 1-second round of 3 jobs: checks the script works (CI)")
    ap.set_defaults(profile="full")
    ap.add_argument("--rounds", type=int, help="override the profile's number of rounds")
    ap.add_argument("--runtime", type=float, help="override the seconds measured per run")
    ap.add_argument("--ramp", type=float, help="override fio's unmeasured ramp seconds per run")
    ap.add_argument("--jobs", help=f"comma-separated subset of: {', '.join(ALL_JOBS)}")
    ap.add_argument("--targets", default=",".join(TARGETS), help=f"comma-separated subset of {','.join(TARGETS)}")
    ap.add_argument("--baseline", type=Path, metavar="DIR",
                    help="also run pyscsi-target from DIR (a checkout holding pyscsi_target/) as target "
                         "'pyscsi-base' in the same rounds: before/after in one run")
    ap.add_argument("--out", type=Path, help="results directory (default benchmarks/results/compare-TIMESTAMP)")
    ap.add_argument("--workdir", type=Path, help="where the backing files go (default: a temporary directory)")
    ap.add_argument("--fio-prefix", type=Path, default=DEFAULT_FIO_PREFIX,
                    help="where fio with libiscsi is cached/built (default %(default)s); $FIO overrides")
    ap.add_argument("--pyscsi-arg", action="append", default=[],
                    help="extra argument for `pyscsi-target serve` (repeatable, e.g. --pyscsi-arg=--log-level=ERROR)")
    ap.add_argument("--no-chart", action="store_true", help="skip the PNG chart")
    ap.add_argument("--no-install", action="store_true", help="never pip-install the bench extra for the chart")
    ap.add_argument("--fail-on-floor", action="store_true",
                    help="exit 3 if an issue #6 floor fails (issue #17's goals never fail the run)")
    ap.add_argument("--replot", type=Path, metavar="RESULTS_JSON",
                    help="measure nothing: redraw table.txt and chart.png next to an earlier results.json")
    return ap


def choose(args: argparse.Namespace) -> tuple[Profile, list[Job], list[str]]:
    base = PROFILES[args.profile]
    names = [n.strip() for n in args.jobs.split(",")] if args.jobs else list(base.jobs)
    unknown = [n for n in names if n not in JOBS_BY_NAME]
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if unknown or not names:
        raise SystemExit(f"unknown job(s) {unknown}; choose from {', '.join(ALL_JOBS)}")
    if not targets or any(t not in TARGETS for t in targets) or len(set(targets)) != len(targets):
        raise SystemExit(f"--targets must be a subset of {','.join(TARGETS)}")
    if args.baseline is not None:
        if not (args.baseline / "pyscsi_target" / "__init__.py").is_file():
            raise SystemExit(f"--baseline {args.baseline}: no pyscsi_target/ package there")
        targets.append(BASELINE)
    profile = Profile(
        rounds=args.rounds if args.rounds is not None else base.rounds,
        runtime_s=args.runtime if args.runtime is not None else base.runtime_s,
        ramp_s=args.ramp if args.ramp is not None else base.ramp_s,
        span=base.span, jobs=tuple(names),
    )
    if profile.rounds < 1 or profile.runtime_s <= 0 or profile.ramp_s < 0:
        raise SystemExit("--rounds must be >= 1, --runtime > 0 and --ramp >= 0")
    return profile, [JOBS_BY_NAME[n] for n in names], targets


def say(line: str) -> None:
    print(line, flush=True)


def version_of(argv: list[str]) -> str:
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as err:
        return f"unknown ({err})"
    return (res.stdout.strip() or res.stderr.strip()).splitlines()[0] if (res.stdout or res.stderr) else "unknown"


def tools_needed(jobs: list[Job], targets: list[str], fio_prefix: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    if any(j.tool == "fio" for j in jobs):
        found["fio"] = ensure_fio(fio_prefix)
    libiscsi = ["iscsi-readcapacity16"] + (["iscsi-perf"] if any(j.tool == "iscsi-perf" for j in jobs) else [])
    found.update(ensure_programs(*libiscsi, package="libiscsi-bin"))
    if THEIRS in targets:
        found.update(ensure_tgt())
    if ISTGT in targets:
        found.update(ensure_istgt())
    return found


def start_targets(stack: contextlib.ExitStack, names: list[str], work: Path, logs: Path,
                  tools: dict[str, Path], extra: list[str], baseline: Path | None = None) -> list[ChildTarget]:
    started: list[ChildTarget] = []
    for name in names:
        target: ChildTarget
        if name == OURS:
            target = PyscsiTarget(logs, work / "pyscsi-data", extra)
        elif name == BASELINE:
            assert baseline is not None  # choose() adds BASELINE only with --baseline
            target = BaselinePyscsi(logs, work / "pyscsi-base-data", baseline.resolve(), extra)
        elif name == ISTGT:
            target = Istgt(logs, work / "istgt", backing_path(name, work), tools["istgt"])
        else:
            target = Tgtd(logs, work / "tgtd.img", tools["tgtd"], tools["tgtadm"])
        started.append(stack.enter_context(target))
        say(f"{name}: pid {target.pid}, {target.url}")
    return started


def backing_path(name: str, work: Path) -> Path:
    if name == OURS:
        return PyscsiTarget.extent_path(work / "pyscsi-data")
    if name == BASELINE:
        return PyscsiTarget.extent_path(work / "pyscsi-base-data")
    return work / f"{name}.img"


def backing_paths(names: list[str], work: Path) -> list[Path]:
    return [backing_path(n, work) for n in names]


def common_block_size(targets: list[ChildTarget], readcap: Path) -> int:
    """All LUNs must have the same geometry, or the comparison is not fair."""
    geometry = {t.name: lun_geometry(readcap, t.url) for t in targets}
    if len(set(geometry.values())) != 1:
        raise TargetError(f"the LUNs differ (block size, bytes): {geometry}")
    block, size = next(iter(geometry.values()))
    if size != LUN_BYTES:
        raise TargetError(f"LUN capacity is {size} bytes, expected {LUN_BYTES}")
    return block


def meta_of(profile: Profile, targets: list[ChildTarget], tools: dict[str, Path], block: int,
            idle_rss: dict[str, dict[str, int]]) -> dict[str, Any]:
    versions = {"fio": version_of([str(tools["fio"]), "--version"]) if "fio" in tools else None,
                "pyscsi-target": version_of([*pyscsi_command(), "--version"]),
                "tgtd": version_of([str(tools["tgtd"]), "-V"]) if "tgtd" in tools else None,
                "istgt": version_of([str(tools["istgt"]), "-V"]) if "istgt" in tools else None}
    return {
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "profile": profile.__dict__ | {"jobs": list(profile.jobs)},
        "lun_bytes": LUN_BYTES, "block_size": block,
        "targets": {t.name: t.describe() for t in targets},
        "idle_rss_kib": idle_rss, "versions": versions,
        "host": {"cpus": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version()},
    }


def measure(args: argparse.Namespace, profile: Profile, jobs: list[Job], names: list[str],
            out: Path, results: Results) -> dict[str, Any]:
    """Set up, run every round, tear down; returns the run's metadata."""
    tools = tools_needed(jobs, names, args.fio_prefix)
    say("tools: " + ", ".join(f"{k}={v}" for k, v in tools.items()))
    with contextlib.ExitStack() as stack:
        work = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pyscsi-compare-")))
        t0 = time.monotonic()
        prefill(backing_paths(names, work), LUN_BYTES, profile.span)
        say(f"prefilled {len(names)} backing file(s), {profile.span >> 20} MiB each, in {time.monotonic() - t0:.1f} s")
        targets = start_targets(stack, names, work, out / "logs", tools, args.pyscsi_arg, args.baseline)
        block = common_block_size(targets, tools["iscsi-readcapacity16"])
        idle = {t.name: tree_status(t.pid) for t in targets}
        meta = meta_of(profile, targets, tools, block, idle)
        plan = Plan(jobs, profile.rounds, profile.runtime_s, profile.ramp_s, profile.span,
                    tools.get("fio", Path("fio")), tools.get("iscsi-perf"), block, out / "raw",
                    dict(zip(names, backing_paths(names, work), strict=True)))
        run_rounds(plan, targets, results, say)
    return meta


def write_outputs(args: argparse.Namespace, out: Path, results: Results, meta: dict[str, Any]) -> None:
    table = format_table(results)
    print("\n" + table, flush=True)
    (out / "table.txt").write_text(table + "\n")
    (out / "results.json").write_text(json.dumps(results.to_json(meta), indent=2) + "\n")
    say(f"\nwrote {out / 'results.json'} and {out / 'table.txt'}")
    if not args.no_chart:
        say(f"wrote {chart.draw(results, out / 'chart.png', subtitle_of(meta), install=not args.no_install)}")


def replot(args: argparse.Namespace) -> int:
    """Redraw the table and the chart of an earlier run from its results.json."""
    try:
        doc = json.loads(args.replot.read_text())
        results = Results.from_json(doc)
        meta = doc["meta"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        print(f"benchmarks/compare: cannot read {args.replot}: {err!r}", file=sys.stderr)
        return EXIT_SETUP
    out = args.replot.parent
    table = format_table(results)
    print(table, flush=True)
    (out / "table.txt").write_text(table + "\n")
    if not args.no_chart:
        say(f"wrote {chart.draw(results, out / 'chart.png', subtitle_of(meta), install=not args.no_install)}")
    return EXIT_OK


def subtitle_of(meta: dict[str, Any]) -> str:
    return (f"{meta['profile']['rounds']} round(s) x {meta['profile']['runtime_s']:g} s, "
            f"{meta['host']['cpus']} CPUs, {meta['started']}")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.replot:
        return replot(args)
    profile, jobs, names = choose(args)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or RESULTS_ROOT / f"compare-{stamp}"
    for sub in ("logs", "raw"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    say(f"benchmarks/compare: {args.profile} profile, {profile.rounds} round(s), "
        f"{len(jobs)} job(s), targets {', '.join(names)}, results in {out}")
    results = Results()
    try:
        meta = measure(args, profile, jobs, names, out, results)
    except (ToolError, TargetError, OSError, subprocess.SubprocessError) as err:
        print(f"benchmarks/compare: set-up failed: {err}", file=sys.stderr)
        return EXIT_SETUP
    write_outputs(args, out, results, meta)
    if results.errors:
        print(f"benchmarks/compare: {len(results.errors)} run(s) failed (see results.json)", file=sys.stderr)
        return EXIT_RUNS
    if args.fail_on_floor and any(f["result"] == FAIL for f in results.floors()):
        return EXIT_FLOORS
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
