"""The project's own runner for libiscsi's conformance suite, `iscsi-test-cu` (issue #13 item 8).

`run_suite(url, family)` runs `iscsi-test-cu -d -v [-S] -t FAMILY URL [URL2]` with stdout and
stderr in one stream (so each message stays beside the test that printed it) and `parse_output`
turns that stream into one `TestOutcome` per test:

- CUnit prints `Suite: NAME`, then per test `  Test: NAME ...`, then whatever the test prints, then
  its verdict: `passed` or `FAILED` (on the same line after `...`, or at the start of a later line),
  then for a failure the numbered failed assertions. A suite's clean-up may print after a verdict.
- CUnit counts a skipped test as passed; libiscsi marks it with a `[SKIPPED] ...` line. We count it
  as **skipped**.
- A test that printed a `[FAILED]` line (libiscsi's helpers print one when a command does not get
  the answer they expected) is **failed** even when CUnit says passed, unless it is one of the
  documented exceptions below.
- A test with no verdict (iscsi-test-cu hung, crashed or was stopped inside it) is **failed** and
  listed in `unfinished`.
- CUnit's own "Run Summary" is parsed too; `Run.consistent` says whether the number of tests we saw
  equals the number CUnit says it ran, so a parser that lost a test cannot pass silently.

The documented exceptions (where a `[FAILED]` line is not a failure of the target) are
`EXPECTED_FAILURE_TESTS`, `CLEANUP_UA` and, for read-only LUs, `refused_as_write_protected`; see
`Run.real_failures`. `../shared/tools/conformance` is a second opinion (test_second_opinion.py).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field

import trio

PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"

#: seconds a whole `iscsi-test-cu` run may take before it is stopped (its tests after that count as not run)
DEFAULT_RUN_TIMEOUT_S = 900.0

_SUITE = re.compile(r"^Suite: (?P<suite>\S+)\s*$")
_TEST = re.compile(r"^\s+Test: (?P<test>\S+) \.\.\.(?P<rest>.*)$")
_VERDICT = re.compile(r"^\s*(?P<verdict>passed|FAILED)\b")
_SUMMARY_TESTS = re.compile(r"^\s+tests\s+(?P<total>\d+)\s+(?P<ran>\d+)\s+(?P<passed>\d+)\s+(?P<failed>\d+)")
_RUN_SUMMARY = "Run Summary:"
_ENDS_FAILED = re.compile(r"\bfailed\s*$", re.IGNORECASE)

#: Tests whose `[FAILED]` lines are the expected failure the test provokes: test_iscsi_datasn_invalid.c
#: asserts that its writes with a wrong DataSN fail, and libiscsi's write10() helper prints
#: "[FAILED] WRITE10 command failed ..." each time that expected failure happens.
EXPECTED_FAILURE_TESTS = {"iSCSIdatasn.iSCSIDataSnInvalid": "WRITE10 command failed"}
#: After a test that leaves a unit attention pending for a nexus (a LUN reset reports 29/00 to every
#: nexus, the issuer included, as MultipathIO.Reset requires), the suite's clean-up PERSISTENT
#: RESERVE IN gets that UNIT ATTENTION and prints this after the test's verdict.
CLEANUP_UA = re.compile(r"\[FAILED\] PRIN command: failed with sense\. SENSE KEY:UNIT_ATTENTION")
#: asynchronous write tests that assert "status != CHECK CONDITION" without printing the sense
SILENT_WRITE_ASSERTS = re.compile(
    r"CU_ASSERT_NOT_EQUAL\(status,SCSI_STATUS_CHECK_CONDITION\)|CU_ASSERT_EQUAL\(state\.wr_good,1\)")


def is_failure_line(line: str) -> bool:
    """libiscsi's helpers print `[FAILED] ...` when a command did not get the expected answer;
    some messages instead end in "failed" (e.g. a login that failed)."""
    return "[FAILED]" in line or _ENDS_FAILED.search(line) is not None


@dataclass
class TestOutcome:
    name: str  # "Suite.Test" (test names repeat across suites)
    #: CUnit's verdict, "passed" or "FAILED", or None when the test never finished
    cunit: str | None = None
    #: lines printed while the test ran, before CUnit's verdict
    during: list[str] = field(default_factory=list)
    #: lines printed after the verdict until the next test (failed assertions, suite clean-up)
    after: list[str] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.cunit is not None

    @property
    def skipped(self) -> bool:
        return any("[SKIPPED]" in line for line in self.during)

    @property
    def failed_lines(self) -> list[str]:
        """Failure lines the test's helpers printed, before and after its verdict."""
        return [ln for ln in self.during + self.after if is_failure_line(ln)]

    @property
    def verdict(self) -> str:
        """Strict: CUnit's FAILED, an unfinished test, or any `[FAILED]` line is a failure."""
        if self.cunit != "passed" or self.failed_lines:
            return FAILED
        return SKIPPED if self.skipped else PASSED

    def text(self) -> str:
        return "\n".join([*self.during, self.cunit or "(no verdict)", *self.after])


@dataclass
class Run:
    outcomes: dict[str, TestOutcome]
    #: CUnit's "Run Summary" tests row: total, ran, passed, failed (None if it never printed one)
    cunit_summary: dict[str, int] | None
    #: why the run ended early ("timed out after ...", "iscsi-test-cu died ..."), or None
    ended: str | None = None
    output: str = ""

    @property
    def results(self) -> dict[str, str]:
        return {name: o.verdict for name, o in self.outcomes.items()}

    @property
    def counts(self) -> dict[str, int]:
        verdicts = list(self.results.values())
        return {v: verdicts.count(v) for v in (PASSED, FAILED, SKIPPED)}

    @property
    def unfinished(self) -> list[str]:
        return [name for name, o in self.outcomes.items() if not o.finished]

    @property
    def consistent(self) -> bool:
        """Did we see as many tests as CUnit says it ran, with as many CUnit failures?"""
        if self.cunit_summary is None:
            return False
        cunit_failed = sum(1 for o in self.outcomes.values() if o.cunit == "FAILED")
        return (self.cunit_summary["ran"] == len(self.outcomes)
                and self.cunit_summary["failed"] == cunit_failed)

    def real_failures(self, *, read_only: bool = False) -> list[str]:
        """The failed tests, less the documented exceptions (module docstring)."""
        return sorted(name for name, o in self.outcomes.items()
                      if o.verdict == FAILED and not excused(o, read_only=read_only))

    def summary(self) -> str:
        c = self.counts
        lines = [f"{name}: {verdict}" + ("" if self.outcomes[name].finished else " (unfinished)")
                 for name, verdict in sorted(self.results.items()) if verdict == FAILED]
        if self.ended:
            lines.append(f"run ended early: {self.ended}")
        lines.append(f"{c[PASSED]} passed, {c[FAILED]} failed, {c[SKIPPED]} skipped, {len(self.outcomes)} run"
                     f"; CUnit summary {self.cunit_summary}")
        return "\n".join(lines)

    def report(self, *, read_only: bool = False) -> str:
        """What a failing assertion shows: the real failures with the output of each."""
        real = self.real_failures(read_only=read_only)
        parts = [f"real failures: {real}", self.summary()]
        parts += [f"--- {name} ---\n{self.outcomes[name].text()[-3000:]}" for name in real]
        return "\n".join(parts)


def excused(o: TestOutcome, *, read_only: bool = False) -> bool:
    """A strict failure that is not a failure of the target (see the constants above). A test that
    never finished is never excused."""
    if not o.finished:
        return False
    if read_only and refused_as_write_protected(o):
        # iscsi-test-cu -d expects writes to succeed; on a read-only LU they are refused with
        # DATA PROTECT / WRITE PROTECTED (07/27/00), which is the right answer
        return True
    if o.cunit != "passed":
        return False
    during = [ln for ln in o.during if is_failure_line(ln)]
    after = [ln for ln in o.after if is_failure_line(ln)]
    expected = EXPECTED_FAILURE_TESTS.get(o.name)
    if expected is not None:
        return all(expected in ln for ln in during) and not after
    return not during and all(CLEANUP_UA.search(ln) for ln in after)


def refused_as_write_protected(o: TestOutcome) -> bool:
    text = "\n".join(o.during + o.after)
    if "WRITE_PROTECTED(0x2700)" in text or "(0x07)/(0x2700)" in text or "DATA PROTECTION(0x07)" in text:
        return True
    asserts = [ln for ln in o.after if " - CU_" in ln]
    return bool(asserts) and all(SILENT_WRITE_ASSERTS.search(ln) for ln in asserts)


def parse_output(text: str, *, ended: str | None = None) -> Run:
    """One `TestOutcome` per `Suite.Test` in iscsi-test-cu's verbose output (module docstring)."""
    outcomes: dict[str, TestOutcome] = {}
    suite = ""
    current: TestOutcome | None = None
    summary: dict[str, int] | None = None
    in_summary = False
    for line in text.splitlines():
        if line.startswith(_RUN_SUMMARY):
            in_summary, current = True, None
            continue
        if in_summary:
            m = _SUMMARY_TESTS.match(line)
            if m:
                summary = {k: int(v) for k, v in m.groupdict().items()}
            continue
        m = _SUITE.match(line)
        if m:
            suite, current = m["suite"], None
            continue
        m = _TEST.match(line)
        if m:
            current = TestOutcome(f"{suite}.{m['test']}")
            outcomes[current.name] = current
            line = m["rest"]
        if current is None:
            continue
        verdict = _VERDICT.match(line) if current.cunit is None else None
        if verdict:
            current.cunit = verdict["verdict"]
            rest = line[verdict.end():].strip()
            if rest:
                current.after.append(rest)
        elif line.strip():
            (current.during if current.cunit is None else current.after).append(line.strip())
    return Run(outcomes, summary, ended, text)


def iscsi_test_cu() -> str | None:
    return shutil.which("iscsi-test-cu")


async def run_suite(url: str, family: str, *, second_url: str | None = None, allow_sanitize: bool = False,
                    timeout: float = DEFAULT_RUN_TIMEOUT_S) -> Run:
    """Run iscsi-test-cu (destructive tests allowed: use a scratch LU) and parse what it printed,
    also when it hangs (stopped after `timeout`) or dies."""
    tool = iscsi_test_cu()
    if tool is None:
        raise FileNotFoundError("iscsi-test-cu is missing (Debian package libiscsi-bin; `make system-deps`)")
    argv = [tool, "-d", "-v", *(["-S"] if allow_sanitize else []), "-t", family, url,
            *([second_url] if second_url else [])]
    chunks: list[bytes] = []
    ended: str | None = None
    proc = await trio.lowlevel.open_process(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    try:
        with trio.move_on_after(timeout) as scope:
            async with proc.stdout:
                while chunk := await proc.stdout.receive_some():
                    chunks.append(chunk)
            await proc.wait()
        if scope.cancelled_caught:
            ended = f"timed out after {timeout:.0f} s"
        elif proc.returncode < 0 or proc.returncode > 128:
            ended = f"iscsi-test-cu died (exit status {proc.returncode})"
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return parse_output(b"".join(chunks).decode(errors="replace"), ended=ended)
