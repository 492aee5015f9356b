"""`benchmarks/compare` must not rot (issues #6, #17): a one-round smoke run against pyscsi-target,
tgtd and istgt, plus the pieces it is built from (parsers, medians, floors and goals, peak RSS,
CPU per command, prefill).

The smoke run needs fio with the libiscsi engine; the `fio` fixture finds or builds it (cached in
~/.cache/fio-libiscsi), so CI pays for the build once. Only where fio cannot be built (no network,
no root) is the smoke run skipped, and in CI even that is a failure.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.compare_lib.backing import CHUNK_BYTES, prefill, same_prefix, warm
from benchmarks.compare_lib.cli import PROFILES, choose, parser
from benchmarks.compare_lib.cpu import process_cpu_s, tree_cpu_s, us_per_command
from benchmarks.compare_lib.jobs import (
    CLAT_MEAN,
    CLAT_P50,
    CLAT_P99,
    CPU_US,
    IOPS,
    JOBS_BY_NAME,
    MIBS,
    JobError,
    fio_argv,
    fio_filename,
    parse_fio,
    parse_iscsi_perf,
)
from benchmarks.compare_lib.report import FAIL, FLOORS, GOALS, PASS, SKIP, TARGETS, Results, format_table
from benchmarks.compare_lib.rss import PeakRss, RssPeak
from benchmarks.compare_lib.runner import Plan, commands_of, pair_order
from benchmarks.compare_lib.targets import TGTD_SOCKET_DIR
from benchmarks.compare_lib.tools import REPO_ROOT, ToolError, ensure_fio

COMPARE = REPO_ROOT / "benchmarks" / "compare"
#: Upper bound for the whole smoke run (it takes ~10-20 s; generous for a loaded CI machine), s.
SMOKE_TIMEOUT_S = 240
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SMOKE_JOBS = PROFILES["smoke"].jobs


# ---- the smoke run ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fio() -> Path:
    try:
        return ensure_fio()
    except (ToolError, OSError, subprocess.SubprocessError) as err:
        if os.environ.get("CI"):
            pytest.fail(f"could not build fio with libiscsi: {err}")
        pytest.skip(f"fio with the libiscsi engine cannot be built here (needs network and root): {err}")


@pytest.fixture(scope="module")
def smoke(fio: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path_factory.mktemp("compare") / "out"
    env = dict(os.environ, FIO=str(fio))
    res = subprocess.run([sys.executable, str(COMPARE), "--smoke", "--out", str(out)], env=env,
                         capture_output=True, text=True, timeout=SMOKE_TIMEOUT_S)
    return res, out


def _doc(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def test_smoke_run_succeeds_against_all_targets(smoke: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    res, out = smoke
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    doc = _doc(out)
    assert doc["errors"] == []
    assert set(doc["meta"]["targets"]) == {"pyscsi", "tgtd", "istgt"}
    assert doc["meta"]["lun_bytes"] == 1 << 30
    for job in SMOKE_JOBS:
        assert f"round 1/1 {job}" in res.stdout
        for target in TARGETS:
            assert len(doc["jobs"][job]["samples"][target]) == 1


def test_smoke_samples_are_consistent(smoke: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    _, out = smoke
    for name, job in _doc(out)["jobs"].items():
        size = JOBS_BY_NAME[name].block_bytes
        for target, (sample,) in job["samples"].items():
            assert sample[IOPS] > 0, (name, target)
            assert sample[MIBS] == pytest.approx(sample[IOPS] * size / (1 << 20), rel=0.02), (name, target)
            if JOBS_BY_NAME[name].tool == "fio":
                assert 0 < sample[CLAT_P50] <= sample[CLAT_P99], (name, target)
                assert sample[CLAT_MEAN] > 0
            # every target spends CPU on every command; far below a second, far above a tick's share
            assert 0 < sample[CPU_US] < 1e6, (name, target)


def test_smoke_raw_outputs_parse_to_the_recorded_samples(smoke: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    _, out = smoke
    doc = _doc(out)
    for name in SMOKE_JOBS:
        job = JOBS_BY_NAME[name]
        parse = parse_fio if job.tool == "fio" else parse_iscsi_perf
        for target in TARGETS:
            raw = (out / "raw" / f"r01-{name}-{target}.out").read_text().split("\n--- stderr ---\n")[0]
            recorded = dict(doc["jobs"][name]["samples"][target][0])
            assert recorded.pop(CPU_US) > 0  # measured from /proc, not from the tool's output
            assert parse(raw, job) == recorded


def test_smoke_ratios_floors_and_memory(smoke: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    _, out = smoke
    doc = _doc(out)
    for name in SMOKE_JOBS:
        job = doc["jobs"][name]
        ours, theirs = job["median"]["pyscsi"][IOPS], job["median"]["tgtd"][IOPS]
        assert job["ratio"][IOPS] == pytest.approx(ours / theirs)
        istgt = job["median"]["istgt"]
        assert job["ratio_istgt"][IOPS] == pytest.approx(ours / istgt[IOPS])
        assert job["ratio_istgt"][CPU_US] == pytest.approx(job["median"]["pyscsi"][CPU_US] / istgt[CPU_US])
        for target in TARGETS:
            peak = job["peak_rss"][target]
            assert 0 < peak["anon_kib"] <= peak["rss_kib"], (name, target, peak)
    floors = {f["floor"]: f for f in doc["floors"]}
    assert len(floors) == len(FLOORS)
    for floor in FLOORS:
        result = floors[floor.label]["result"]
        measured = floor.kind == "rss_mib" or floor.job in SMOKE_JOBS
        assert (result in (PASS, FAIL)) if measured else (result == SKIP), floor.label
    goals = {g["floor"]: g["result"] for g in doc["goals"]}
    assert len(goals) == len(GOALS)
    for goal in GOALS:
        assert (goals[goal.label] in (PASS, FAIL)) if goal.job in SMOKE_JOBS else (goals[goal.label] == SKIP)
    assert all(doc["peak_rss_mib"][t] > 0 for t in TARGETS)


def test_smoke_writes_table_and_png_chart(smoke: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    res, out = smoke
    table = (out / "table.txt").read_text()
    for name in SMOKE_JOBS:
        assert JOBS_BY_NAME[name].title in table
    assert "floors (issue #6):" in table and "goals (issue #17, against istgt):" in table
    assert "CPU us/cmd" in table and "pyscsi/istgt" in table and table.strip() in res.stdout
    png = (out / "chart.png").read_bytes()
    assert png[:8] == PNG_MAGIC
    width, height = struct.unpack(">II", png[16:24])  # IHDR: the first chunk
    assert width > 400 and height > 200


def test_smoke_leaves_no_target_behind(smoke: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    _, out = smoke
    meta = _doc(out)["meta"]
    for target in meta["targets"].values():
        assert not Path(f"/proc/{target['pid']}").exists(), target
    control = meta["targets"]["tgtd"]["control"]
    assert not (TGTD_SOCKET_DIR / f"socket.{control}").exists()
    assert not (TGTD_SOCKET_DIR / f"socket.{control}.lock").exists()


def test_replot_redraws_from_results_json(smoke: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    _, out = smoke
    (out / "chart.png").unlink()
    res = subprocess.run([sys.executable, str(COMPARE), "--replot", str(out / "results.json")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert (out / "chart.png").read_bytes()[:8] == PNG_MAGIC


# ---- parsers --------------------------------------------------------------------------------

FIO_NOTE = "note: both iodepth >= 1 and synchronous I/O engine are selected, queue depth will be capped at 1\n"


def fio_doc(side: str = "read", error: int = 0, ios: int = 1000) -> dict:
    body = {"iops": 2000.0, "bw_bytes": 2000 * 4096, "total_ios": ios,
            "clat_ns": {"mean": 250_000.0, "percentile": {"50.000000": 200_000, "99.000000": 900_000}}}
    other = {"iops": 0.0, "bw_bytes": 0, "total_ios": 0, "clat_ns": {"mean": 0.0}}
    job = {"jobname": "j", "error": error, side: body, ("write" if side == "read" else "read"): other}
    return {"fio version": "fio-3.33", "jobs": [job]}


def test_fio_filename_escapes_every_colon() -> None:
    url = "iscsi://127.0.0.1:3260/iqn.2005-10.org.freenas.ctl:demo/0"
    assert fio_filename(url) == "iscsi\\://127.0.0.1\\:3260/iqn.2005-10.org.freenas.ctl\\:demo/0"


def test_fio_argv_carries_the_job() -> None:
    argv = fio_argv("fio", JOBS_BY_NAME["randwrite-4k-qd16"], "iscsi://h:1/t:x/0", 2.5, 0.5, 1 << 26)
    for opt in ("--ioengine=libiscsi", "--rw=randwrite", "--bs=4096", "--iodepth=16", "--runtime=2.5s",
                "--ramp_time=0.5s", f"--size={1 << 26}", "--output-format=json", "--norandommap"):
        assert opt in argv


def test_parse_fio_skips_notes_and_reads_the_measured_direction() -> None:
    sample = parse_fio(FIO_NOTE + json.dumps(fio_doc("write")), JOBS_BY_NAME["randwrite-4k-qd16"])
    assert sample == {IOPS: 2000.0, MIBS: 2000 * 4096 / (1 << 20), CLAT_MEAN: 250.0, CLAT_P50: 200.0,
                      CLAT_P99: 900.0}


@pytest.mark.parametrize("text", [
    "",
    "fio: engine libiscsi not loadable\n",
    FIO_NOTE + "{ not json",
    json.dumps({"jobs": []}),
    json.dumps(fio_doc(error=5)),
    json.dumps(fio_doc(ios=0)),
    json.dumps({"jobs": [{"error": 0, "read": {"total_ios": 1}}]}),
    json.dumps([1, 2]),
])
def test_parse_fio_rejects_what_it_cannot_trust(text: str) -> None:
    with pytest.raises(JobError):
        parse_fio(text, JOBS_BY_NAME["randread-4k-qd16"])


PERF_OUT = (
    "iscsi-perf version 0.1 - (c) 2014-2015 by Peter Lieven <pl@kamp.de>\n\n"
    "connected to iscsi://127.0.0.1:3260/iqn.x:t/1\ncapacity is 2097152 blocks or 1073741824 byte (1024 MB)\n"
    "performing RANDOM READ with 16 parallel requests\nFIXED transfer size of 8 blocks (4096 byte)\n"
    "will run for 2 seconds.\n\n"
    "\r00:00:01 - lba 5, iops current 48123 (187 MB/s), iops average 48123 (187 MB/s), in_flight 16, busy 0"
    "\riops average 50660 (197 MB/s)        \n\nfinished.\n"
)


def test_parse_iscsi_perf_takes_the_final_average() -> None:
    sample = parse_iscsi_perf(PERF_OUT, JOBS_BY_NAME["iscsi-perf-4k-qd16"])
    assert sample == {IOPS: 50660.0, MIBS: 50660 * 4096 / (1 << 20)}


@pytest.mark.parametrize("text", [
    "",
    PERF_OUT.replace("finished.", ""),
    PERF_OUT.replace("(4096 byte)", "(512 byte)"),
    "Login Failed. iscsi_service failed\n",
])
def test_parse_iscsi_perf_rejects_incomplete_runs(text: str) -> None:
    with pytest.raises(JobError):
        parse_iscsi_perf(text, JOBS_BY_NAME["iscsi-perf-4k-qd16"])


# ---- medians, ratios, floors ----------------------------------------------------------------


def rate(iops: float, mib: float = 1.0) -> dict[str, float]:
    return {IOPS: iops, MIBS: mib}


def lat(mean: float) -> dict[str, float]:
    return {IOPS: 1.0, MIBS: 1.0, CLAT_MEAN: mean, CLAT_P50: mean, CLAT_P99: 2 * mean}


def test_median_and_ratio_over_rounds() -> None:
    r = Results()
    for ours, theirs in ((100, 300), (900, 200), (300, 250)):
        r.add("randread-4k-qd16", "pyscsi", rate(ours), None)
        r.add("randread-4k-qd16", "tgtd", rate(theirs), None)
    assert r.median("randread-4k-qd16", "pyscsi") == rate(300)
    assert r.ratio("randread-4k-qd16", IOPS) == pytest.approx(300 / 250)
    assert r.ratio("seqread-1m-qd16", MIBS) is None


def floors_of(r: Results) -> dict[str, str]:
    return {f["floor"]: f["result"] for f in r.floors()}


def test_floors_pass_at_the_limits_and_fail_past_them() -> None:
    r = Results()
    r.add("randread-4k-qd16", "pyscsi", rate(50), None)
    r.add("randread-4k-qd16", "tgtd", rate(100), None)  # exactly 0.5: PASS
    r.add("randwrite-4k-qd16", "pyscsi", rate(49), None)
    r.add("randwrite-4k-qd16", "tgtd", rate(100), None)  # 0.49: FAIL
    r.add("randread-4k-qd1", "pyscsi", lat(201), RssPeak(1024, 10, 10, True))
    r.add("randread-4k-qd1", "tgtd", lat(100), None)  # latency 2.01x: FAIL
    r.add("seqwrite-1m-qd16", "pyscsi", rate(1, 950), RssPeak(256 * 1024, 1, 1, True))  # 256 MiB: PASS
    r.add("seqwrite-1m-qd16", "tgtd", rate(1, 1000), None)  # 0.95: PASS
    got = floors_of(r)
    assert got == {
        FLOORS[0].label: PASS, FLOORS[1].label: FAIL, FLOORS[2].label: SKIP,
        FLOORS[3].label: PASS, FLOORS[4].label: FAIL, FLOORS[5].label: PASS,
    }
    r.add("seqread-1m-qd16", "pyscsi", rate(1, 1), RssPeak(256 * 1024 + 1, 1, 1, True))
    assert floors_of(r)[FLOORS[5].label] == FAIL


def test_peak_rss_keeps_the_largest_of_each_part() -> None:
    r = Results()
    r.add("seqread-1m-qd16", "pyscsi", rate(1), RssPeak(2048, 1024, 512, True))
    r.add("seqread-1m-qd16", "pyscsi", rate(1), RssPeak(1024, 2048, 256, False))
    assert r.rss["seqread-1m-qd16"]["pyscsi"] == RssPeak(2048, 2048, 512, False)
    assert r.peak_rss_mib("pyscsi", None, "anon_kib") == 2.0
    assert r.peak_rss_mib("tgtd") is None


def test_results_json_round_trip_and_table() -> None:
    r = Results()
    r.add("randread-4k-qd1", "pyscsi", lat(90), RssPeak(4096, 2048, 2048, True))
    r.add("randread-4k-qd1", "tgtd", lat(60), RssPeak(1024, 512, 512, True))
    r.fail("seqread-1m-qd16", "pyscsi", 1, "boom")
    doc = json.loads(json.dumps(r.to_json({"note": "x"})))
    back = Results.from_json(doc)
    assert back.samples == r.samples and back.rss == r.rss and back.errors == r.errors
    table = format_table(back)
    assert "mean lat us" in table and "1.50" in table and "SKIP" in table


# ---- command line, interleaving, prefill, RSS ----------------------------------------------------


def test_profiles_and_overrides() -> None:
    profile, jobs, targets = choose(parser().parse_args(["--quick", "--rounds", "4", "--jobs", "seqread-1m-qd16"]))
    assert (profile.rounds, profile.runtime_s, [j.name for j in jobs]) == (4, PROFILES["quick"].runtime_s,
                                                                           ["seqread-1m-qd16"])
    assert targets == ["pyscsi", "tgtd", "istgt"]
    for bad in (["--jobs", "nope"], ["--targets", "lio"], ["--rounds", "0"], ["--targets", "tgtd,tgtd"]):
        with pytest.raises(SystemExit):
            choose(parser().parse_args(bad))


def test_pair_order_alternates() -> None:
    a, b = object(), object()
    orders = [pair_order([a, b], rnd, job) for rnd in (1, 2) for job in (0, 1)]  # type: ignore[list-item]
    assert orders == [[b, a], [a, b], [a, b], [b, a]]
    c = object()
    three = [pair_order([a, b, c], rnd, 0) for rnd in (0, 1, 2)]  # type: ignore[list-item]
    assert three == [[a, b, c], [b, c, a], [c, a, b]]  # each target first, middle and last once


def test_prefill_writes_identical_distinct_chunks(tmp_path: Path) -> None:
    a, b = tmp_path / "a.img", tmp_path / "sub" / "b.img"
    prefill([a, b], 4 * CHUNK_BYTES, 2 * CHUNK_BYTES)
    assert a.stat().st_size == b.stat().st_size == 4 * CHUNK_BYTES
    assert same_prefix(a, b, 4 * CHUNK_BYTES)
    data = a.read_bytes()
    first, second, tail = data[:CHUNK_BYTES], data[CHUNK_BYTES:2 * CHUNK_BYTES], data[2 * CHUNK_BYTES:]
    assert first != second and first[8:] == second[8:] and any(first[8:])
    assert tail == bytes(len(tail))
    with b.open("r+b") as f:
        f.seek(CHUNK_BYTES + 100)
        f.write(b"\xff")
    assert not same_prefix(a, b, 2 * CHUNK_BYTES)


def test_warm_reads_the_span_and_stops_at_the_end(tmp_path: Path) -> None:
    a = tmp_path / "a.img"
    prefill([a], 4 * CHUNK_BYTES, 4 * CHUNK_BYTES)
    assert warm(a, 2 * CHUNK_BYTES + 1) == 3 * CHUNK_BYTES  # whole chunks: at least the span
    assert warm(a, 10 * CHUNK_BYTES) == 4 * CHUNK_BYTES  # no further than the file goes


@pytest.mark.parametrize(("size", "span"), [(0, 0), (CHUNK_BYTES, 2 * CHUNK_BYTES), (CHUNK_BYTES + 1, CHUNK_BYTES)])
def test_prefill_rejects_bad_geometry(tmp_path: Path, size: int, span: int) -> None:
    with pytest.raises(ValueError):
        prefill([tmp_path / "x.img"], size, span)


#: A child that allocates (and touches) 64 MiB each time it reads a line, frees it, and says so.
ALLOCATOR = (
    "import sys\n"
    "print('ready', flush=True)\n"
    "for _ in sys.stdin:\n"
    "    b = bytearray(64 << 20); b[::4096] = b'x' * len(b[::4096]); del b\n"
    "    print('freed', flush=True)\n"
)


def test_peak_rss_sees_a_peak_that_is_gone_by_the_end() -> None:
    child = subprocess.Popen([sys.executable, "-c", ALLOCATOR], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    assert child.stdin is not None and child.stdout is not None
    stdin, stdout = child.stdin, child.stdout

    def allocate_and_free() -> None:
        stdin.write("go\n")
        stdin.flush()
        assert stdout.readline() == "freed\n"

    try:
        assert stdout.readline() == "ready\n"
        allocate_and_free()  # a peak before the measurement: the reset must forget it
        with PeakRss(child.pid, interval_s=60) as before:
            pass
        with PeakRss(child.pid, interval_s=60) as during:  # no sampling in between: only VmHWM sees it
            allocate_and_free()
        assert before.result is not None and during.result is not None
        assert before.result.exact and during.result.exact
        assert before.result.rss_kib < 64 * 1024
        assert during.result.rss_kib >= 64 * 1024
        assert during.result.anon_kib < 64 * 1024  # the samples (start, end) never saw it
    finally:
        child.kill()
        child.wait()


# ---- CPU per command (issue #17) ------------------------------------------------------------------

#: A child that burns CPU in two threads until stdin closes (a target's I/O threads).
SPINNER = (
    "import sys, threading, time\n"
    "def spin():\n"
    "    while True: time.perf_counter()\n"
    "threading.Thread(target=spin, daemon=True).start()\n"
    "print('ready', flush=True)\n"
    "sys.stdin.read()\n"
)


def test_process_cpu_time_counts_the_threads_of_a_busy_child() -> None:
    child = subprocess.Popen([sys.executable, "-c", SPINNER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    assert child.stdin is not None and child.stdout is not None
    try:
        assert child.stdout.readline() == "ready\n"
        before = tree_cpu_s(child.pid)
        deadline = time.monotonic() + 30
        while tree_cpu_s(child.pid) - before < 0.2 and time.monotonic() < deadline:
            pass  # the spinning thread's time shows in the process's figure
        assert tree_cpu_s(child.pid) - before >= 0.2
        assert process_cpu_s(child.pid) == pytest.approx(tree_cpu_s(child.pid), abs=0.05)
    finally:
        child.kill()
        child.wait()
    assert process_cpu_s(child.pid) == 0.0  # gone: nothing to count


def test_cpu_per_command_counts_the_ramp_for_fio_and_whole_seconds_for_iscsi_perf(tmp_path: Path) -> None:
    plan = Plan((), 1, 10.0, 2.0, 1 << 30, Path("fio"), None, 512, tmp_path)
    assert commands_of(plan, JOBS_BY_NAME["randread-4k-qd16"], {IOPS: 1000.0, MIBS: 1.0}) == 12_000
    assert commands_of(plan, JOBS_BY_NAME["iscsi-perf-4k-qd16"], {IOPS: 1000.0, MIBS: 1.0}) == 10_000
    assert us_per_command(0.3, 12_000) == pytest.approx(25.0)
    assert us_per_command(0.3, 0) is None


def test_baseline_is_a_fourth_target_with_a_column_of_its_own(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):  # not a checkout: refused before anything starts
        choose(parser().parse_args(["--baseline", str(tmp_path)]))
    _, _, targets = choose(parser().parse_args(["--baseline", str(REPO_ROOT)]))
    assert targets == ["pyscsi", "tgtd", "istgt", "pyscsi-base"]
    r = Results()
    r.add("randread-4k-qd16", "pyscsi", {IOPS: 200.0, MIBS: 1.0, CPU_US: 20.0}, None)
    r.add("randread-4k-qd16", "istgt", {IOPS: 100.0, MIBS: 1.0, CPU_US: 25.0}, None)
    assert "pyscsi-base" not in format_table(r)
    r.add("randread-4k-qd16", "pyscsi-base", {IOPS: 150.0, MIBS: 1.0, CPU_US: 31.5}, None)
    table = format_table(r)
    assert "pyscsi-base" in table and "31.5" in table
    assert r.ratio("randread-4k-qd16", IOPS, "istgt") == 2.0  # ratios stay this build's


def test_goals_compare_with_istgt_and_cpu_lower_is_better() -> None:
    r = Results()
    r.add("randwrite-4k-qd16", "pyscsi", {IOPS: 100.0, MIBS: 1.0, CPU_US: 30.0}, None)
    r.add("randwrite-4k-qd16", "tgtd", {IOPS: 300.0, MIBS: 1.0, CPU_US: 10.0}, None)
    r.add("randwrite-4k-qd16", "istgt", {IOPS: 100.0, MIBS: 1.0, CPU_US: 29.0}, None)
    goals = {g["floor"]: g["result"] for g in r.floors(GOALS)}
    by_label = {g.label: g for g in GOALS}
    write_iops = next(g for g in GOALS if g.job == "randwrite-4k-qd16" and g.metric == IOPS)
    write_cpu = next(g for g in GOALS if g.job == "randwrite-4k-qd16" and g.metric == CPU_US)
    assert goals[write_iops.label] == PASS  # 1.00 of istgt, though a third of tgtd
    assert goals[write_cpu.label] == FAIL  # 30 us against istgt's 29
    assert sum(v == SKIP for v in goals.values()) == len(by_label) - 2
    table = format_table(r)
    assert "CPU us/cmd" in table and "1.03" in table and "pyscsi/istgt" in table
