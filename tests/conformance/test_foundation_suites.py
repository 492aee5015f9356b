"""Issue #2: 0 failures in each of these libiscsi suites (tgtd passes all of them too)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import Running

from .conftest import run_conformance

FOUNDATION_SUITES = [
    "Inquiry",
    "Mandatory",
    "ModeSense6",
    "Read6",
    "Read10",
    "Read12",
    "Read16",
    "ReadCapacity10",
    "ReadCapacity16",
    "TestUnitReady",
    "Write10",
    "Write12",
    "Write16",
    "iSCSIcmdsn",
    "iSCSIResiduals",
]

pytestmark = pytest.mark.conformance


@pytest.mark.parametrize("suite", FOUNDATION_SUITES)
async def test_suite_has_no_failures(demo: Running, tmp_path: Path, suite: str) -> None:
    res = await run_conformance(demo.lun_url, f"ALL.{suite}", tmp_path)
    failed = sorted(t for t, v in res["results"].items() if v == "failed")
    assert res["results"], res["summary"]
    assert not failed, f"{res['summary']}\n--- log ---\n{res['log_text'][-6000:]}"
    assert res["counts"]["passed"] > 0, res["summary"]
