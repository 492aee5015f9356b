"""The parser of tests/conformance/runner.py on iscsi-test-cu output captured from real runs against
this server (tests/conformance/captured/, trimmed where a line repeats hundreds of times), and on
the cases such runs rarely show: a hung or crashed run, a clean-up UNIT ATTENTION after a verdict."""

from __future__ import annotations

from pathlib import Path

from .runner import FAILED, PASSED, SKIPPED, parse_output

CAPTURED = Path(__file__).with_name("captured")


def captured(name: str) -> str:
    return (CAPTURED / name).read_text()


def test_all_passed() -> None:
    run = parse_output(captured("inquiry.txt"))
    assert run.results == {f"Inquiry.{t}": PASSED for t in (
        "Standard", "AllocLength", "EVPD", "BlockLimits", "MandatoryVPDSBC", "SupportedVPD", "VersionDescriptors")}
    assert run.cunit_summary == {"total": 7, "ran": 7, "passed": 7, "failed": 0}
    assert run.consistent and not run.unfinished and not run.real_failures()


def test_skipped_is_not_passed_although_cunit_says_passed() -> None:
    run = parse_output(captured("sanitize-not-allowed.txt"))
    assert len(run.results) == 11 and set(run.results.values()) == {SKIPPED}
    assert run.counts == {PASSED: 0, FAILED: 0, SKIPPED: 11}
    assert run.cunit_summary is not None and run.cunit_summary["passed"] == 11  # CUnit's view
    assert run.consistent


def test_cunit_failures_on_a_read_only_lu() -> None:
    run = parse_output(captured("write10-read-only-lu.txt"))
    assert run.results == {"Write10.Simple": FAILED, "Write10.BeyondEol": FAILED, "Write10.ZeroBlocks": FAILED,
                           "Write10.WriteProtect": PASSED, "Write10.DpoFua": FAILED, "Write10.Async": FAILED}
    assert run.consistent  # 6 ran, 5 failed, as CUnit's summary says
    assert run.outcomes["Write10.Async"].after[0].endswith("CU_ASSERT_NOT_EQUAL(status,SCSI_STATUS_CHECK_CONDITION)")
    # on an LU that is not read-only these are real failures; on a read-only one the writes were
    # refused with DATA PROTECT / WRITE PROTECTED, the right answer
    assert run.real_failures() == ["Write10.Async", "Write10.BeyondEol", "Write10.DpoFua", "Write10.Simple",
                                   "Write10.ZeroBlocks"]
    assert run.real_failures(read_only=True) == []


def test_expected_failure_lines_of_the_datasn_test() -> None:
    run = parse_output(captured("datasn-invalid.txt"))
    assert run.results == {"iSCSIdatasn.iSCSIDataSnInvalid": FAILED}  # strict: it printed [FAILED] lines
    assert run.real_failures() == []  # ... which are the failures the test provokes (documented)
    # the same lines in any other test are a failure
    other = captured("datasn-invalid.txt").replace("iSCSIDataSnInvalid", "SomethingElse")
    assert parse_output(other).real_failures() == ["iSCSIdatasn.SomethingElse"]


def test_failed_line_although_cunit_passed() -> None:
    text = ("Suite: Read10\n  Test: Simple ...    [FAILED] READ10 command failed with sense ILLEGAL_REQUEST\n"
            "passed\n  Test: Next ...passed\n")
    run = parse_output(text)
    assert run.results == {"Read10.Simple": FAILED, "Read10.Next": PASSED}
    assert run.real_failures() == ["Read10.Simple"]
    assert not run.consistent  # no Run Summary: the run did not end normally


def test_cleanup_unit_attention_after_the_verdict_is_excused_only_after_it() -> None:
    ua = "    [FAILED] PRIN command: failed with sense. SENSE KEY:UNIT_ATTENTION(6) ASCQ:BUS_RESET(0x2900)"
    after = f"Suite: MultipathIO\n  Test: Reset ...passed\n{ua}\n  Test: Simple ...passed\n"
    run = parse_output(after)
    assert run.results["MultipathIO.Reset"] == FAILED and run.real_failures() == []
    before = f"Suite: MultipathIO\n  Test: Reset ...{ua.strip()}\npassed\n"
    assert parse_output(before).real_failures() == ["MultipathIO.Reset"]


def test_unfinished_test_is_failed_and_never_excused() -> None:
    text = captured("inquiry.txt").split("  Test: EVPD")[0] + "  Test: EVPD ...    [SKIPPED] x\n"
    run = parse_output(text, ended="timed out after 900 s")
    assert run.results["Inquiry.EVPD"] == FAILED and run.unfinished == ["Inquiry.EVPD"]
    assert run.real_failures(read_only=True) == ["Inquiry.EVPD"]
    assert "run ended early: timed out" in run.summary()


def test_same_test_name_in_two_suites() -> None:
    text = ("Suite: Read10\n  Test: Simple ...passed\n"
            "Suite: Write10\n  Test: Simple ...FAILED\n    1. x.c:1  - CU_ASSERT\n")
    assert parse_output(text).results == {"Read10.Simple": PASSED, "Write10.Simple": FAILED}
