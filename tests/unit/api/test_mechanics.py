"""HTTP mechanics: authentication and slowing, status codes, bodies, slashes, 405/400/404/413."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import trio
import trio.testing

from pyscsi_target.api import auth, create_app, load_api_password

from . import builders as b
from .conftest import AUTH, PASSWORD, Api, FakeControl, P, basic

CHALLENGE = 'Basic realm="pyscsi-target"'


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _raw(api: Api, method: str, path: str, headers: dict[str, str] | None = None, **kw: object):
    client = api.app.test_client()
    return await client.open(path, method=method, headers=headers or {}, **kw)


# ---- authentication (spec Part B §B.1.6) ------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic("root", "wrong"),
        basic("admin", PASSWORD),
        basic("root", PASSWORD + "x"),
        {"Authorization": "Basic !!!not-base64!!!"},
        {"Authorization": "Basic " + "cm9vdA=="},  # "root" with no colon
        {"Authorization": "Bearer " + PASSWORD},
    ],
)
async def test_without_the_right_credentials_everything_is_401(api: Api, headers: dict[str, str]) -> None:
    for path in (f"{P}/target/", "/api/v1.0/system/version/", "/api/v1.0/openapi.json", "/nowhere/"):
        response = await _raw(api, "GET", path, headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == CHALLENGE
        assert await response.get_data() == b""
    assert (await _raw(api, "POST", f"{P}/target/", headers, json={"iscsi_target_name": "x"})).status_code == 401
    assert api.control.applied == []


ELSEWHERE = {"client": ("10.9.9.9", 4000)}


async def _guess(api: Api, n: int, first: int = 0, **kw: object) -> list[int]:
    """`n` distinct wrong passwords for root; their status codes."""
    return [(await _raw(api, "GET", f"{P}/target/", basic("root", f"guess{first + i}"), **kw)).status_code
            for i in range(n)]


async def _timed(api: Api, headers: dict[str, str], **kw: object) -> tuple[int, float]:
    """Status code and virtual seconds of one request (trio's autojump clock)."""
    start = trio.current_time()
    response = await _raw(api, "GET", f"{P}/target/", headers, **kw)
    return response.status_code, trio.current_time() - start


async def test_a_guesser_of_roots_password_is_slowed_and_the_right_password_still_gets_in(
        api: Api, autojump_clock: trio.testing.MockClock) -> None:
    """Issue #10: from MAX_FAILURES distinct wrong passwords on, root's requests from that address
    are answered late, right or wrong; the right password gets in after a bounded delay."""
    assert await _guess(api, auth.MAX_FAILURES) == [401] * auth.MAX_FAILURES
    assert await _timed(api, AUTH) == (200, auth.FIRST_DELAY_SECONDS)
    assert await _timed(api, basic("root", "guess-a")) == (401, auth.FIRST_DELAY_SECONDS)
    assert await _timed(api, basic("root", "guess-b")) == (401, 2 * auth.FIRST_DELAY_SECONDS)
    await _guess(api, 2, first=100)  # 4 s and 8 s: 16 virtual seconds since the first guess
    assert await _timed(api, AUTH) == (200, auth.MAX_DELAY_SECONDS)  # bounded
    assert await _timed(api, AUTH, scope_base=ELSEWHERE) == (200, 0)  # another address: at once
    await trio.sleep(auth.FAILURE_WINDOW)  # the failures age out
    assert await _timed(api, AUTH) == (200, 0)


async def test_wrong_user_names_and_malformed_headers_never_slow_root(
        api: Api, autojump_clock: trio.testing.MockClock) -> None:
    """Issue #10: a broken script with another user name or a mangled header gets 401 each time,
    and root from the same address is neither refused nor delayed; the guard keeps no state."""
    junk = [{}, {"Authorization": "Basic !!!not-base64!!!"}, {"Authorization": "Basic cm9vdA=="},
            {"Authorization": "Bearer x"}, basic("admin", PASSWORD), basic("Root", "guess")]
    for i in range(auth.MAX_FAILURES * 4):
        headers = junk[i % len(junk)] if i < len(junk) else basic(f"user{i}", f"guess{i}")
        assert await _timed(api, headers) == (401, 0)
    assert await _timed(api, AUTH) == (200, 0)
    assert api.app.extensions["pyscsi_target"].guard._records == {}


async def test_a_repeated_stale_password_is_one_failure(api: Api, autojump_clock: trio.testing.MockClock) -> None:
    """A script retrying one old password tests nothing new: it never throttles root."""
    for _ in range(auth.MAX_FAILURES * 4):
        assert await _timed(api, basic("root", "last-years-password")) == (401, 0)
    assert await _timed(api, AUTH) == (200, 0)
    guard = api.app.extensions["pyscsi_target"].guard
    assert [guard.failures(address) for address in guard._records] == [1]


async def test_a_success_does_not_erase_the_failures(api: Api, autojump_clock: trio.testing.MockClock) -> None:
    """A guesser riding on legitimate traffic from its address is slowed all the same."""
    for i in range(auth.MAX_FAILURES):
        assert await _timed(api, AUTH) == (200, 0)
        await _guess(api, 1, first=i)
    assert await _timed(api, basic("root", "guess-next")) == (401, auth.FIRST_DELAY_SECONDS)


async def test_waiting_requests_per_address_are_bounded(api: Api, autojump_clock: trio.testing.MockClock) -> None:
    """A parallel guesser gets at most MAX_WAITING_PER_ADDRESS guesses per delay; the rest 429."""
    await _guess(api, auth.MAX_FAILURES)
    results: list[int] = []

    async def one(i: int) -> None:
        response = await _raw(api, "GET", f"{P}/target/", basic("root", f"parallel{i}"))
        results.append(response.status_code)
        if response.status_code == 429:
            assert 1 <= int(response.headers["Retry-After"]) <= math.ceil(auth.MAX_DELAY_SECONDS)
            assert "error" in await response.get_json()

    async with trio.open_nursery() as nursery:
        for i in range(auth.MAX_WAITING_PER_ADDRESS + 3):
            nursery.start_soon(one, i)
    assert sorted(results) == [401] * auth.MAX_WAITING_PER_ADDRESS + [429] * 3
    assert await _timed(api, AUTH, scope_base=ELSEWHERE) == (200, 0)


async def test_an_ipv6_client_cannot_step_through_its_64(api: Api, autojump_clock: trio.testing.MockClock) -> None:
    for i in range(auth.MAX_FAILURES):
        await _raw(api, "GET", f"{P}/target/", basic("root", f"guess{i}"),
                   scope_base={"client": (f"2001:db8::{i + 1:x}", 4000)})
    assert await _timed(api, AUTH, scope_base={"client": ("2001:db8::ffff", 4000)}) == (
        200, auth.FIRST_DELAY_SECONDS)
    assert await _timed(api, AUTH, scope_base={"client": ("2001:db8:0:1::1", 4000)}) == (200, 0)  # another /64
    assert auth.client_key("::ffff:10.0.0.1") == "10.0.0.1"


async def test_tracked_addresses_are_bounded(api: Api) -> None:
    guard = api.app.extensions["pyscsi_target"].guard
    guard.clock = Clock()
    for i in range(auth.MAX_TRACKED + 5):
        guard.judge(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", basic("root", "x")["Authorization"])
    assert len(guard._records) == auth.MAX_TRACKED
    for i in range(auth.MAX_FAILURES_TRACKED * 2):
        if guard.judge("192.0.2.1", basic("root", f"x{i}")["Authorization"]).wait:
            guard.done_waiting("192.0.2.1")
    assert guard.failures("192.0.2.1") == auth.MAX_FAILURES_TRACKED


def test_an_empty_password_is_refused() -> None:
    with pytest.raises(ValueError):
        create_app(FakeControl(), password="", extent_roots=["/tmp"], version="1")


def test_password_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    password, generated = load_api_password(str(tmp_path / "data"), None)
    assert generated and len(password) >= 32
    path = tmp_path / "data" / auth.PASSWORD_FILE_NAME
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_api_password(str(tmp_path / "data"), None) == (password, False)
    given = tmp_path / "pw"
    given.write_text("  s3cret-value \n")
    assert load_api_password(str(tmp_path / "data"), str(given)) == ("s3cret-value", False)
    given.write_text("\n")
    with pytest.raises(ValueError):
        load_api_password(str(tmp_path / "data"), str(given))


# ---- response format and status codes (spec Part B §B.1.1-§B.1.2) -----------------------------


async def test_responses_are_sorted_json_with_vary_accept(api: Api) -> None:
    await b.target(api, "sorted")
    response = await api.call("GET", f"{P}/target/1/")
    raw = (await response.get_data()).decode()
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Vary"] == "Accept"
    assert raw == json.dumps(json.loads(raw), sort_keys=True)


async def test_version_is_the_object_form(api: Api) -> None:
    assert await api.ok("GET", "/api/v1.0/system/version/") == {
        "fullversion": "pyscsi-target-9.9.9",
        "name": "pyscsi-target",
        "version": "9.9.9",
    }


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("POST", f"{P}/globalconfiguration/", {"GET", "PUT"}),
        ("DELETE", f"{P}/globalconfiguration/", {"GET", "PUT"}),
        ("DELETE", f"{P}/target/", {"GET", "POST"}),  # FreeNAS deleted the whole list; we refuse
        ("PUT", f"{P}/target/", {"GET", "POST"}),
        ("POST", f"{P}/target/1/", {"GET", "PUT", "PATCH", "DELETE"}),
        ("POST", "/api/v1.0/system/version/", {"GET"}),
        ("DELETE", f"{P}/sessions/", {"GET"}),
    ],
)
async def test_method_not_allowed_is_405_with_allow(api: Api, method: str, path: str, allowed: set[str]) -> None:
    response = await api.call(method, path)
    assert response.status_code == 405
    assert allowed <= {m.strip() for m in response.headers["Allow"].split(",")}
    assert "error" in await response.get_json()


@pytest.mark.parametrize("path", [f"{P}/target/abc/", f"{P}/target/-1/", f"{P}/target/99/", f"{P}/nothing/"])
async def test_unknown_objects_and_urls_are_404_with_an_empty_body(api: Api, path: str) -> None:
    response = await api.call("GET", path)
    assert response.status_code == 404
    assert await response.get_data() == b""


async def test_get_without_trailing_slash_redirects_with_its_query(api: Api) -> None:
    response = await api.call("GET", f"{P}/target?limit=5")
    assert response.status_code == 301
    assert response.headers["Location"] == f"{P}/target/?limit=5"
    assert (await api.call("GET", f"{P}/target/1")).headers["Location"] == f"{P}/target/1/"


async def test_other_methods_without_trailing_slash_are_served(api: Api) -> None:
    created = await api.ok("POST", f"{P}/target", {"iscsi_target_name": "noslash"}, status=201)
    await api.ok("PUT", f"{P}/target/{created['id']}", {"iscsi_target_alias": "a"})
    await api.ok("DELETE", f"{P}/target/{created['id']}", status=204)


# ---- request bodies (spec Part B §B.1.3, §B.1.5) ----------------------------------------------


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'"text"', "must be a JSON object"),
        (b'{"iscsi_target_name": NaN}', "not valid JSON"),
        (b"\xff\xfe{}", "not valid JSON"),
        (b"iscsi_target_name=t1", "not valid JSON"),  # curl -d without a JSON body
        (b"[" * 100000 + b"]" * 100000, "not valid JSON"),
        (b'{"iscsi_target_name": "\\ud800"}', "unpaired surrogate"),
        (b'{"\\udfff": 1}', "unpaired surrogate"),
    ],
)
async def test_malformed_bodies_are_400(api: Api, data: bytes, needle: str) -> None:
    response = await api.call("POST", f"{P}/target/", data=data)
    assert response.status_code == 400
    assert needle in (await response.get_json())["error"]
    assert api.control.applied == []


async def test_json_is_read_whatever_the_content_type(api: Api) -> None:
    for i, content_type in enumerate(["text/plain", "application/x-www-form-urlencoded", ""]):
        body = json.dumps({"iscsi_target_name": f"ct{i}"}).encode()
        headers = {"Content-Type": content_type} if content_type else {}
        await api.ok("POST", f"{P}/target/", data=body, headers=headers, status=201)


async def test_delete_ignores_any_body(api: Api) -> None:
    one, two = await b.target(api, "one"), await b.target(api, "two")
    await api.ok("DELETE", f"{P}/target/{one['id']}/", data=b"{}", status=204)
    await api.ok("DELETE", f"{P}/target/{two['id']}/", data=b"garbage", status=204)


async def test_an_oversized_body_is_413(api: Api) -> None:
    body = b'{"iscsi_target_name": "' + b"a" * (2 << 20) + b'"}'
    response = await api.call("POST", f"{P}/target/", data=body)
    assert response.status_code == 413
    assert "error" in await response.get_json()


async def test_unknown_and_read_only_keys_are_ignored(api: Api) -> None:
    created = await api.ok(
        "POST", f"{P}/target/", {"iscsi_target_name": "t", "id": 77, "bogus": 1, "iscsi_maxconnect": 16},
        status=201,
    )
    assert created["id"] == 1 and "bogus" not in created


async def test_null_clears_an_optional_field_and_fails_a_required_one(api: Api) -> None:
    created = await b.target(api, "nulls", iscsi_target_alias="alias")
    url = f"{P}/target/{created['id']}/"
    assert (await api.ok("PUT", url, {"iscsi_target_alias": None}))["iscsi_target_alias"] is None
    assert await api.conflict("PUT", url, {"iscsi_target_name": None}) == {
        "iscsi_target_name": ["This field is required."]
    }
    ext = await b.extent(api, "cleared", iscsi_target_extent_comment="note")
    cleared = await api.ok("PUT", f"{P}/extent/{ext['id']}/", {"iscsi_target_extent_comment": None})
    assert cleared["iscsi_target_extent_comment"] == ""


@pytest.mark.parametrize(
    ("value", "expected"),
    [("4096", 4096), (4096.0, 4096), (" 1024 ", 1024)],
)
async def test_integers_may_come_as_strings_or_whole_floats(api: Api, value: object, expected: int) -> None:
    ext = await b.extent(api, "ints", iscsi_target_extent_blocksize=value)
    assert ext["iscsi_target_extent_blocksize"] == expected


@pytest.mark.parametrize("value", ["abc", 1.5, True, [512], {"a": 1}, "1e3", float("inf")])
async def test_non_integers_are_refused(api: Api, value: object) -> None:
    body = b.file_extent_body(api, "bad", iscsi_target_extent_blocksize=value)
    data = json.dumps(body).replace("Infinity", "1e999").encode()
    response = await api.call("POST", f"{P}/extent/", data=data)
    assert response.status_code == 409
    assert (await response.get_json()) == {"iscsi_target_extent_blocksize": ["Enter a whole number."]}


@pytest.mark.parametrize(("value", "expected"), [(True, True), ("false", False), ("True", True), (0, False)])
async def test_booleans_accept_django_spellings(api: Api, value: object, expected: bool) -> None:
    ext = await b.extent(api, "bools", iscsi_target_extent_ro=value)
    assert ext["iscsi_target_extent_ro"] is expected


@pytest.mark.parametrize("value", ["maybe", 2, [True], {}])
async def test_bad_booleans_are_refused(api: Api, value: object) -> None:
    errors = await api.conflict("POST", f"{P}/extent/", b.file_extent_body(api, "b", iscsi_target_extent_ro=value))
    assert errors == {"iscsi_target_extent_ro": [f"'{value}' value must be either True or False."]}


async def test_strings_are_typed_and_bounded(api: Api) -> None:
    assert await api.conflict("POST", f"{P}/target/", {"iscsi_target_name": ["x"]}) == {
        "iscsi_target_name": ["Enter a text value."]
    }
    assert await api.conflict("POST", f"{P}/target/", {"iscsi_target_name": "a" * 121}) == {
        "iscsi_target_name": ["Ensure this value has at most 120 characters (it has 121)."]
    }
    assert await api.conflict("POST", f"{P}/target/", {"iscsi_target_name": "   "}) == {
        "iscsi_target_name": ["This field is required."]
    }


async def test_format_json_is_accepted_and_others_are_400(api: Api) -> None:
    await api.ok("GET", f"{P}/target/?format=json")
    response = await api.call("GET", f"{P}/target/?format=xml")
    assert response.status_code == 400
    assert "format" in (await response.get_json())["error"]
