"""Issue #5: libiscsi's whole suite (`iscsi-test-cu -t ALL`) against a thin file LU (with a second
path to the same LU so MultipathIO runs, and SANITIZE allowed), a read-only LU and a 4096-byte-block
LU. The scoreboard: 0 failed. tgtd: 157 passed, 11 failed, 62 skipped."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pyscsi_target.model import Extent, LunMapping, Target, TargetGroup
from pyscsi_target.model.config import EXTENT_FILE
from pyscsi_target.model.extents import new_naa, new_serial
from tests.support import DEMO_IQN, Running

from .conftest import run_conformance

pytestmark = pytest.mark.conformance

#: The shared tool counts a test as failed when any line printed while it ran contains "FAILED".
#: Two kinds of such lines are not failures of the target, and a test is accepted as passed only
#: when CUnit's own verdict for it is "passed" and every "[FAILED]" line is of these kinds:
#: - test_iscsi_datasn_invalid.c asserts that its writes FAIL; libiscsi's write10() helper prints
#:   "[FAILED] WRITE10 command failed ..." each time the expected failure happens;
#: - after a test that ends with a unit attention pending for a nexus (a LUN reset reports
#:   29/00 to every nexus, the issuer included, as MultipathIO.Reset requires), the suite's
#:   clean-up PERSISTENT RESERVE IN receives that UNIT ATTENTION and prints "[FAILED] PRIN ...".
EXPECTED_FAILURE_TESTS = {"iSCSIdatasn.iSCSIDataSnInvalid"}
CLEANUP_UA = re.compile(r"\[FAILED\] PRIN command: failed with sense\. SENSE KEY:UNIT_ATTENTION")


def segment_of(log: str, test: str) -> str:
    """The output printed while `Suite.Test` ran (test names repeat across suites)."""
    suite, name = test.split(".", 1)
    start = log.find(f"Suite: {suite}\n")
    if start < 0:
        return ""
    m = re.compile(rf"Test: {re.escape(name)} \.\.\.(.*?)(?=\n\s*Test: |\nSuite: |\nRun Summary|\Z)", re.S)
    found = m.search(log, start)
    return found.group(1) if found else ""


def miscounted(log: str, test: str) -> bool:
    """True if the tool's "failed" is one of the two non-failures above (see EXPECTED_...)."""
    seg = segment_of(log, test)
    if not seg or re.search(r"(?m)^FAILED\b", seg) or "passed" not in seg:
        return False  # CUnit itself failed it, or never finished it
    verdict = seg.index("passed")
    before, after = seg[:verdict], seg[verdict:]
    if test in EXPECTED_FAILURE_TESTS:
        return all("WRITE10 command failed" in ln for ln in before.splitlines() if "[FAILED]" in ln)
    return "[FAILED]" not in before and all(CLEANUP_UA.search(ln) for ln in after.splitlines() if "FAILED" in ln)


def real_failures(res: dict, *, read_only: bool = False) -> list[str]:
    failed = sorted(t for t, v in res["results"].items() if v == "failed")
    log = res["log_text"]
    out = [t for t in failed if not miscounted(log, t)]
    if read_only:
        # iscsi-test-cu -d expects writes to succeed; on a read-only LU they are refused with
        # DATA PROTECT / WRITE PROTECTED (07/27/00), which is the right answer, so a test counts
        # only if it failed for any other reason
        out = [t for t in out if not refused_as_write_protected(segment_of(log, t))]
    return out


#: asynchronous write tests that assert "status != CHECK CONDITION" without printing the sense
SILENT_WRITE_ASSERTS = re.compile(
    r"CU_ASSERT_NOT_EQUAL\(status,SCSI_STATUS_CHECK_CONDITION\)|CU_ASSERT_EQUAL\(state\.wr_good,1\)")


def refused_as_write_protected(seg: str) -> bool:
    if "WRITE_PROTECTED(0x2700)" in seg or "(0x07)/(0x2700)" in seg or "DATA PROTECTION(0x07)" in seg:
        return True
    asserts = [ln for ln in seg.splitlines() if " - CU_" in ln]
    return bool(asserts) and all(SILENT_WRITE_ASSERTS.search(ln) for ln in asserts)


async def add_lu(run: Running, name: str, *, blocksize: int = 512, ro: bool = False,
                 no_physical_block: bool = False) -> str:
    """A new target `name` with one fresh 256 MiB file LU, on the demo portal; returns its URL."""
    svc = run.service
    cfg = svc.config.copy()
    portal_id = next(iter(cfg.portals))
    tid = cfg.new_id("targets")
    cfg.targets[tid] = Target(id=tid, name=name)
    gid = cfg.new_id("targetgroups")
    cfg.targetgroups[gid] = TargetGroup(id=gid, target=tid, portalgroup=portal_id)
    eid = cfg.new_id("extents")
    path = run.options.data_dir / "extents" / f"{name}.img"
    cfg.extents[eid] = Extent(id=eid, name=name, type=EXTENT_FILE, path=str(path), filesize=str(256 << 20),
                              blocksize=blocksize, ro=ro, pblocksize=no_physical_block,
                              naa=new_naa(cfg), serial=new_serial(cfg))
    mid = cfg.new_id("mappings")
    cfg.mappings[mid] = LunMapping(id=mid, target=tid, extent=eid, lunid=0)
    await svc.apply(cfg)
    return f"iscsi://{run.portal}/{cfg.target_iqn(cfg.targets[tid])}/0"


def report(res: dict, *, read_only: bool = False) -> str:
    real = real_failures(res, read_only=read_only)
    segments = "\n".join(f"--- {t} ---\n{segment_of(res['log_text'], t)[-3000:]}" for t in real)
    return f"real failures: {real}\n{res['summary']}\n{segments}"


async def test_full_suite_thin_file_lu(demo: Running, tmp_path: Path) -> None:
    # Physical block size reporting off (the API's pblocksize flag): GetLBAStatus.UnmapSingle
    # asks for LBA i+1 but expects a descriptor at i+LBPPB, which only holds for LBPPB=1.
    url = await add_lu(demo, "thin", no_physical_block=True)
    # Without the second path: libiscsi 1.19's Sanitize.Reservations takes a RESERVE(6) on the
    # second path when there is one and never releases it, so the next test's SANITIZE meets a
    # (correct) RESERVATION CONFLICT. The multipath tests run on their own below.
    res = await run_conformance(url, "ALL", tmp_path, "--allow-sanitize")
    assert not real_failures(res), report(res)
    mp = await run_conformance(url, "ALL.MultipathIO", tmp_path, "--second-url", url)
    assert not real_failures(mp), report(mp)
    assert mp["counts"]["passed"] >= 1 and not mp["counts"]["skipped"], report(mp)
    skipped_mp = {t for t, v in res["results"].items() if v == "skipped" and t.startswith("MultipathIO.")}
    passed = res["counts"]["passed"] + sum(1 for t, v in mp["results"].items() if v == "passed" and t in skipped_mp)
    assert passed >= 200, report(res)


async def test_full_suite_read_only_lu(demo: Running, tmp_path: Path) -> None:
    url = await add_lu(demo, "readonly", ro=True)
    res = await run_conformance(url, "ALL", tmp_path)
    assert not real_failures(res, read_only=True), report(res, read_only=True)


async def test_full_suite_4096_byte_blocks(demo: Running, tmp_path: Path) -> None:
    url = await add_lu(demo, "bs4k", blocksize=4096)
    res = await run_conformance(url, "ALL", tmp_path, "--allow-sanitize")
    assert not real_failures(res), report(res)


def test_demo_iqn_is_what_the_suite_targets() -> None:
    assert DEMO_IQN.endswith(":demo")
