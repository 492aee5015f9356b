"""Pre-login admission: connection caps and the slow-down of initiators failing authentication."""

from __future__ import annotations

from pyscsi_target.server import admission as adm
from pyscsi_target.server.admission import Admission


def test_per_source_cap_and_release() -> None:
    a = Admission()
    for _ in range(adm.MAX_PRELOGIN_PER_SOURCE):
        assert a.admit("10.0.0.1")
    assert not a.admit("10.0.0.1")
    assert a.admit("10.0.0.2")  # another source is not affected
    a.release("10.0.0.1")
    assert a.admit("10.0.0.1")
    assert a.prelogin_total == adm.MAX_PRELOGIN_PER_SOURCE + 1


def test_total_cap() -> None:
    a = Admission()
    admitted = sum(a.admit(f"10.0.{i // 200}.{i % 200}") for i in range(adm.MAX_PRELOGIN_TOTAL + 50))
    assert admitted == adm.MAX_PRELOGIN_TOTAL
    assert not a.admit("192.0.2.1")
    a.release("10.0.0.0")
    assert a.admit("192.0.2.1")


def test_release_never_goes_negative() -> None:
    a = Admission()
    a.release("10.0.0.9")
    assert a.prelogin_total == 0
    assert a.admit("10.0.0.9")


NAME = "iqn.2026-11.org.example:guesser"
HEALTHY = "iqn.2026-11.org.example:healthy"


def test_auth_failures_delay_that_initiator_exponentially_and_expire() -> None:
    a = Admission()
    t = 1000.0
    for _ in range(adm.FAILURES_BEFORE_DELAY - 1):
        a.auth_failed("10.0.0.1", NAME, t)
    assert a.login_delay("10.0.0.1", NAME, t) == 0.0
    a.auth_failed("10.0.0.1", NAME, t)
    assert a.login_delay("10.0.0.1", NAME, t) == adm.FIRST_FAILURE_DELAY_S
    a.auth_failed("10.0.0.1", NAME.upper(), t)  # names compare case-folded (RFC 3722)
    assert a.login_delay("10.0.0.1", NAME, t) == 2 * adm.FIRST_FAILURE_DELAY_S
    for _ in range(40):
        a.auth_failed("10.0.0.1", NAME, t)
    assert a.login_delay("10.0.0.1", NAME, t) == adm.MAX_FAILURE_DELAY_S
    assert a.login_delay("10.0.0.2", NAME, t) == 0.0  # the same name elsewhere: not affected
    assert a.login_delay("10.0.0.1", NAME, t + adm.FAILURE_WINDOW_S + 1) == 0.0


def test_another_initiator_on_the_failing_address_is_never_delayed() -> None:
    """Issue #10: one initiator failing CHAP all day does not slow its neighbour down."""
    a = Admission()
    for i in range(200):
        a.auth_failed("10.0.0.1", NAME, float(i))
    assert a.login_delay("10.0.0.1", NAME, 200.0) == adm.MAX_FAILURE_DELAY_S
    assert a.login_delay("10.0.0.1", HEALTHY, 200.0) == 0.0


def test_a_success_does_not_erase_the_failures() -> None:
    a = Admission()
    for _ in range(adm.FAILURES_BEFORE_DELAY):
        a.auth_failed("10.0.0.1", NAME, 0.0)
    a.authenticated("10.0.0.1", NAME)  # a guesser riding on the name's logins is not let off
    assert a.login_delay("10.0.0.1", NAME, 1.0) == adm.FIRST_FAILURE_DELAY_S


def test_a_source_rotating_names_is_slowed_down_except_for_names_that_passed_chap() -> None:
    a = Admission()
    a.authenticated("10.0.0.1", HEALTHY)
    for i in range(adm.NAMES_BEFORE_SOURCE_DELAY - 1):
        a.auth_failed("10.0.0.1", f"{NAME}-{i}", 1.0)
        a.auth_failed("10.0.0.1", f"{NAME}-{i}", 1.0)  # a name failing again is not a new name
    assert a.login_delay("10.0.0.1", f"{NAME}-next", 1.0) == 0.0
    a.auth_failed("10.0.0.1", f"{NAME}-last", 1.0)
    assert a.login_delay("10.0.0.1", f"{NAME}-next", 1.0) == adm.FIRST_FAILURE_DELAY_S
    a.auth_failed("10.0.0.1", f"{NAME}-more", 1.0)
    assert a.login_delay("10.0.0.1", f"{NAME}-next", 1.0) == 2 * adm.FIRST_FAILURE_DELAY_S
    assert a.login_delay("10.0.0.1", HEALTHY, 1.0) == 0.0  # proved a secret from here before
    assert a.login_delay("10.0.0.2", f"{NAME}-next", 1.0) == 0.0
    assert a.login_delay("10.0.0.1", f"{NAME}-next", 2.0 + adm.FAILURE_WINDOW_S) == 0.0


def test_tracked_keys_are_bounded() -> None:
    a = Admission()
    for i in range(adm.MAX_SOURCES_TRACKED + 10):
        a.auth_failed(f"src{i}", NAME, 0.0)
        a.auth_failed("10.0.0.1", f"{NAME}-{i}", 0.0)
    assert len(a._failures) == adm.MAX_SOURCES_TRACKED
    assert len(a._failing_names) == adm.MAX_SOURCES_TRACKED
    for i in range(adm.MAX_TRUSTED_PAIRS + 10):
        a.authenticated("10.0.0.1", f"{NAME}-{i}")
    assert len(a._trusted) == adm.MAX_TRUSTED_PAIRS


def test_sources_are_ipv4_addresses_and_ipv6_slash_64s() -> None:
    assert adm.source_key("10.0.0.1") == "10.0.0.1"
    assert adm.source_key("::ffff:10.0.0.1") == "10.0.0.1"
    assert adm.source_key("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert adm.source_key("fe80::1%eth0") == "fe80::/64"
    assert adm.source_key("not an address") == "not an address"


def test_an_ipv6_host_cannot_step_through_its_64_to_escape_the_caps() -> None:
    a = Admission()
    for i in range(adm.MAX_PRELOGIN_PER_SOURCE):
        assert a.admit(f"2001:db8::{i + 1:x}")
    assert not a.admit("2001:db8::ffff:1")
    assert a.admit("2001:db8:0:1::1")  # another /64
    for i in range(adm.FAILURES_BEFORE_DELAY):
        a.auth_failed(f"2001:db8::{i + 100:x}", NAME, 0.0)
    assert a.login_delay("2001:db8::dead", NAME, 0.0) == adm.FIRST_FAILURE_DELAY_S
    for i in range(adm.MAX_PRELOGIN_PER_SOURCE):
        a.release(f"2001:db8::{i + 1:x}")
    assert a.admit("2001:db8::1")


def test_a_pair_that_keeps_failing_is_not_forgotten_first() -> None:
    a = Admission()
    a.auth_failed("192.0.2.1", NAME, 0.0)
    for i in range(adm.MAX_SOURCES_TRACKED - 1):
        a.auth_failed(f"src{i}", NAME, 0.0)
    for _ in range(adm.FAILURES_BEFORE_DELAY):
        a.auth_failed("192.0.2.1", NAME, 1.0)  # the oldest entry, refreshed
    a.auth_failed("newcomer", NAME, 1.0)  # evicts the least recently failing one, src0
    assert a.login_delay("192.0.2.1", NAME, 1.0) > 0
    assert a._failures.count(("src0", NAME), 1.0) == 0
    assert a._failures.count(("src1", NAME), 1.0) == 1
