"""Pre-login admission: connection caps and the slow-down of failing sources."""

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


def test_failures_delay_exponentially_and_expire() -> None:
    a = Admission()
    t = 1000.0
    for _ in range(adm.FAILURES_BEFORE_DELAY - 1):
        a.failed("10.0.0.1", t)
    assert a.delay("10.0.0.1", t) == 0.0
    a.failed("10.0.0.1", t)
    assert a.delay("10.0.0.1", t) == adm.FIRST_FAILURE_DELAY_S
    a.failed("10.0.0.1", t)
    assert a.delay("10.0.0.1", t) == 2 * adm.FIRST_FAILURE_DELAY_S
    for _ in range(40):
        a.failed("10.0.0.1", t)
    assert a.delay("10.0.0.1", t) == adm.MAX_FAILURE_DELAY_S
    assert a.delay("10.0.0.2", t) == 0.0  # other sources unaffected
    assert a.delay("10.0.0.1", t + adm.FAILURE_WINDOW_S + 1) == 0.0


def test_tracked_sources_are_bounded() -> None:
    a = Admission()
    for i in range(adm.MAX_SOURCES_TRACKED + 10):
        a.failed(f"src{i}", 0.0)
    assert len(a._failures) == adm.MAX_SOURCES_TRACKED


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
        a.failed(f"2001:db8::{i + 100:x}", 0.0)
    assert a.delay("2001:db8::dead", 0.0) == adm.FIRST_FAILURE_DELAY_S
    for i in range(adm.MAX_PRELOGIN_PER_SOURCE):
        a.release(f"2001:db8::{i + 1:x}")
    assert a.admit("2001:db8::1")


def test_a_source_that_keeps_failing_is_not_forgotten_first() -> None:
    a = Admission()
    a.failed("192.0.2.1", 0.0)
    for i in range(adm.MAX_SOURCES_TRACKED - 1):
        a.failed(f"src{i}", 0.0)
    for _ in range(adm.FAILURES_BEFORE_DELAY):
        a.failed("192.0.2.1", 1.0)  # the oldest entry, refreshed
    a.failed("newcomer", 1.0)  # evicts the least recently failing one, src0
    assert a.delay("192.0.2.1", 1.0) > 0
    assert a.delay("src0", 1.0) == 0.0
