"""Run libiscsi's iscsi-test-cu against the real server with the project's own runner
(tests/conformance/runner.py, issue #13 item 8): a clean clone of this repository alone runs the
whole conformance suite. `../shared/tools/conformance`, when it lies beside the repository (or
$PYSCSI_CONFORMANCE_TOOL names it), is a second opinion: test_second_opinion.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support import need_tool

from .runner import DEFAULT_RUN_TIMEOUT_S, Run, run_suite

REPO = Path(__file__).resolve().parents[2]


async def run_conformance(url: str, family: str, *, second_url: str | None = None, allow_sanitize: bool = False,
                          timeout: float = DEFAULT_RUN_TIMEOUT_S) -> Run:
    need_tool("iscsi-test-cu")  # in CI a missing tool fails, locally it skips (Debian libiscsi-bin)
    return await run_suite(url, family, second_url=second_url, allow_sanitize=allow_sanitize, timeout=timeout)


def shared_conformance_tool() -> Path | None:
    """The shared tool beside the repository (../shared/tools/conformance), or $PYSCSI_CONFORMANCE_TOOL."""
    env = os.environ.get("PYSCSI_CONFORMANCE_TOOL")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "tools" / "conformance")
    return next((c for c in candidates if c.is_file()), None)


@pytest.fixture
def shared_tool() -> Path:
    tool = shared_conformance_tool()
    if tool is None:
        pytest.skip("no second opinion here: ../shared/tools/conformance is not beside the repository")
    return tool
