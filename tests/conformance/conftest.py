"""Run libiscsi's iscsi-test-cu through the shared `conformance` tool against the real server."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import trio

from tests.support import need_tool

REPO = Path(__file__).resolve().parents[2]


def conformance_tool() -> Path:
    """shared/tools/conformance lies beside the repository (../shared), or where
    $PYSCSI_CONFORMANCE_TOOL says."""
    env = os.environ.get("PYSCSI_CONFORMANCE_TOOL")
    candidates = [Path(env)] if env else []
    candidates += [REPO.parent / "shared" / "tools" / "conformance"]
    for c in candidates:
        if c.is_file():
            return c
    if os.environ.get("CI"):
        pytest.fail(f"the conformance tool is missing (looked in {candidates})")
    pytest.skip("shared/tools/conformance not found beside the repository")


async def run_conformance(url: str, family: str, tmp_path: Path, *extra: str, timeout: float = 900) -> dict:
    need_tool("iscsi-test-cu")
    tool = conformance_tool()
    out_json = tmp_path / f"{family}.json"
    log = tmp_path / f"{family}.log"
    argv = ["python3", str(tool), url, "--test", family, "--json", str(out_json), "--log", str(log), *extra]
    with trio.fail_after(timeout):
        proc = await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False)
    summary = proc.stdout.decode(errors="replace")
    if not out_json.exists():
        raise AssertionError(f"conformance produced no results:\n{summary}\n{proc.stderr.decode(errors='replace')}")
    data = json.loads(out_json.read_text())
    data["summary"] = summary
    data["log_text"] = log.read_text(errors="replace") if log.exists() else ""
    return data
