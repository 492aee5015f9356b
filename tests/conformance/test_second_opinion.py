"""Issue #13 item 8: the project's runner (runner.py) is the default; where the shared
`../shared/tools/conformance` lies beside the repository, both must reach the same verdict for every
test of a family that has passes, skips and the documented [FAILED] lines (a second opinion on the
parser). Without the shared tool this test skips: the suite itself never depends on it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import trio

from tests.support import Running

from .conftest import run_conformance

pytestmark = pytest.mark.conformance

#: passes (Inquiry), CUnit-"passed" skips (Sanitize without -S, MultipathIO with one path) and the
#: expected [FAILED] lines of the DataSN test
FAMILY = "ALL.Inquiry,ALL.Sanitize,ALL.MultipathIO,ALL.iSCSIdatasn"
#: seconds the shared tool may take for FAMILY
SHARED_TOOL_TIMEOUT_S = 300


async def test_both_runners_agree(demo: Running, shared_tool: Path, tmp_path: Path) -> None:
    ours = await run_conformance(demo.lun_url, FAMILY)
    out = tmp_path / "shared.json"
    with trio.fail_after(SHARED_TOOL_TIMEOUT_S):
        await trio.run_process([sys.executable, str(shared_tool), demo.lun_url, "--test", FAMILY,
                                "--json", str(out)], capture_stdout=True, capture_stderr=True)
    theirs = json.loads(out.read_text())
    assert ours.results == theirs["results"], ours.summary()
    assert ours.counts == theirs["counts"]
    assert {"passed", "skipped", "failed"} == set(ours.results.values())  # the family exercises all three
    assert ours.real_failures() == []  # the only failure is the documented DataSN one
