"""Issue #10 items 6 and 7 through the real app: characters that corrupt logs and iSCSI text in
any free-text field of the eight resources, oversized and Unicode names, and duplicate CHAP users.

Every refusal is a 409 naming the field, and nothing is applied (on create and on edit)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from pyscsi_target.model.text import MSG_CONTROL
from pyscsi_target.model.validation import MSG_NAME_CHARS

from . import builders as b
from .conftest import Api, P

#: refused anywhere inside a value (model/text.py): C0, DEL, C1, line/paragraph separators,
#: bidirectional formatting, byte order mark
HOSTILE = ["\n", "\r", "\t", "\x00", "\x1b", "\x1c", "\x7f", "\x85", "\x9b", "\u2028", "\u2029", "\u202e",
           "\u2066", "\u200f", "\u061c", "\ufeff"]
#: list fields keep tab, newline and carriage return as separators
LIST_HOSTILE = [c for c in HOSTILE if c not in "\t\n\r"]
IQN = "iqn.2026-11.org.example:host"


async def _prepare(api: Api) -> None:
    """One object of each kind whose free-text fields the cases below edit."""
    await b.portal(api)
    await b.target(api)
    await b.target(api, "target2")  # without a target group: room for a new one
    await b.credential(api, tag=1, user="alice")
    await b.initiator(api)
    await b.group(api, 1, 1)
    await b.extent(api, "ext1")


#: (resource URL, field, body for a new object, hostile characters, the field's message)
Case = tuple[str, str, Callable[[Api], dict[str, Any]], list[str], str]
CASES: list[Case] = [
    ("extent", "iscsi_target_extent_name", lambda api: b.file_extent_body(api, "new"), HOSTILE, MSG_CONTROL),
    ("extent", "iscsi_target_extent_comment", lambda api: b.file_extent_body(api, "new"), HOSTILE, MSG_CONTROL),
    ("portal", "iscsi_target_portal_comment", lambda api: {"iscsi_target_portal_ips": ["127.0.0.1:3260"]},
     HOSTILE, MSG_CONTROL),
    ("authorizedinitiator", "iscsi_target_initiator_comment", lambda api: {}, HOSTILE, MSG_CONTROL),
    ("authorizedinitiator", "iscsi_target_initiator_initiators", lambda api: {}, LIST_HOSTILE, MSG_CONTROL),
    ("authorizedinitiator", "iscsi_target_initiator_auth_network", lambda api: {}, LIST_HOSTILE, MSG_CONTROL),
    ("authcredential", "iscsi_target_auth_user",
     lambda api: {"iscsi_target_auth_tag": 2, "iscsi_target_auth_secret": "secretsecret12"}, HOSTILE, MSG_CONTROL),
    ("authcredential", "iscsi_target_auth_peeruser",
     lambda api: {"iscsi_target_auth_tag": 2, "iscsi_target_auth_user": "bob",
                  "iscsi_target_auth_secret": "secretsecret12", "iscsi_target_auth_peersecret": "peersecret1234"},
     HOSTILE, MSG_CONTROL),
    ("target", "iscsi_target_alias", lambda api: {"iscsi_target_name": "new"}, HOSTILE, MSG_CONTROL),
    ("target", "iscsi_target_name", lambda api: {}, HOSTILE, MSG_NAME_CHARS),
    ("targetgroup", "iscsi_target_initialdigest",
     lambda api: {"iscsi_target": 2, "iscsi_target_portalgroup": 1}, HOSTILE, MSG_CONTROL),
]


def _value(field: str, ch: str) -> str:
    """A value that is valid but for `ch`, which sits inside it (surrounding whitespace is
    stripped, as Django's CharField does)."""
    if field == "iscsi_target_initiator_initiators":
        return f"{IQN}{ch}b"
    if field == "iscsi_target_initiator_auth_network":
        return f"10.0.0.0/8{ch}10.1.0.0/16"
    return f"a{ch}b"


@pytest.mark.parametrize(("resource", "field", "body", "chars", "message"), CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in CASES])
async def test_hostile_characters_are_409_on_the_field_on_create_and_edit(
        api: Api, resource: str, field: str, body: Callable[[Api], dict[str, Any]], chars: list[str],
        message: str) -> None:
    await _prepare(api)
    before = api.control.config
    for ch in chars:
        errors = await api.conflict("POST", f"{P}/{resource}/", {**body(api), field: _value(field, ch)})
        assert errors == {field: [message]}, (repr(ch), errors)
        errors = await api.conflict("PATCH" if resource == "targetgroup" else "PUT", f"{P}/{resource}/1/",
                                    {field: _value(field, ch)})
        assert field in errors and message in errors[field], (repr(ch), errors)
    assert api.control.config is before  # nothing applied


@pytest.mark.parametrize("ch", LIST_HOSTILE)
async def test_hostile_characters_in_the_global_configuration(api: Api, ch: str) -> None:
    url = f"{P}/globalconfiguration/"
    assert await api.conflict("PUT", url, {"iscsi_isns_servers": f"10.0.0.1{ch}10.0.0.2"}) == {
        "iscsi_isns_servers": [MSG_CONTROL]}
    assert list(await api.conflict("PUT", url, {"iscsi_basename": f"iqn.2005-10.org.a{ch}b"})) == [
        "iscsi_basename"]
    assert api.control.applied == []


@pytest.mark.parametrize("field", ["iscsi_target_auth_secret", "iscsi_target_auth_peersecret"])
@pytest.mark.parametrize("ch", ["\x85", "\u202e", "\u2028"])
async def test_secrets_refuse_the_same_characters(api: Api, field: str, ch: str) -> None:
    body = {"iscsi_target_auth_user": "u", "iscsi_target_auth_secret": "secretsecret12",
            "iscsi_target_auth_peeruser": "p", "iscsi_target_auth_peersecret": "peersecret1234"}
    body[field] = f"secret{ch}secret1"
    assert await api.conflict("POST", f"{P}/authcredential/", body) == {field: [MSG_CONTROL]}


# ---- Unicode and sizes: each gets a decided answer ----------------------------------------------


async def test_unicode_text_is_kept_as_sent(api: Api) -> None:
    """Names and comments may be written in any script; only the characters above are refused."""
    await b.portal(api, "127.0.0.1:3260", iscsi_target_portal_comment="Büro 東京 ☃")
    ext = await b.extent(api, "Ünïcødé-名前", iscsi_target_extent_comment="disque de données ✓")
    assert (ext["iscsi_target_extent_name"], ext["iscsi_target_extent_comment"]) == (
        "Ünïcødé-名前", "disque de données ✓")
    tgt = await b.target(api, "t1", iscsi_target_alias="Ελληνικά")
    assert tgt["iscsi_target_alias"] == "Ελληνικά"
    cred = await b.credential(api, user="usér-名")
    assert cred["iscsi_target_auth_user"] == "usér-名"
    ini = await b.initiator(api, iscsi_target_initiator_initiators="iqn.2026-11.org.example:名前",
                            iscsi_target_initiator_comment="ラボ")
    assert ini["iscsi_target_initiator_initiators"] == "iqn.2026-11.org.example:名前"


async def test_target_names_are_ascii(api: Api) -> None:
    """The IQN is <basename>:<name>; names keep to RFC 3720's safe ASCII subset."""
    assert await api.conflict("POST", f"{P}/target/", {"iscsi_target_name": "名前"}) == {
        "iscsi_target_name": [MSG_NAME_CHARS]}


async def test_chap_user_names_fit_an_iscsi_text_value(api: Api) -> None:
    """CHAP_N carries at most 255 bytes (RFC 7143 §6.1): 120 characters may be more."""
    assert (await b.credential(api, user="é" * 120))["iscsi_target_auth_user"] == "é" * 120  # 240 bytes
    for field in ("iscsi_target_auth_user", "iscsi_target_auth_peeruser"):
        body = {"iscsi_target_auth_tag": 2, "iscsi_target_auth_user": "u", "iscsi_target_auth_secret": "secretsecret12",
                "iscsi_target_auth_peeruser": "p", "iscsi_target_auth_peersecret": "peersecret1234",
                field: "名" * 86}  # 258 bytes
        assert await api.conflict("POST", f"{P}/authcredential/", body) == {field: [
            "At most 255 bytes of UTF-8 (an iSCSI text value, RFC 7143 §6.1)."]}


@pytest.mark.parametrize(("size", "ok"), [(223, True), (224, False)])
async def test_initiator_names_are_at_most_223_bytes(api: Api, size: int, ok: bool) -> None:
    name = IQN + "x" * (size - len(IQN))
    body = {"iscsi_target_initiator_initiators": name}
    if ok:
        await b.initiator(api, **body)
    else:
        assert list(await api.conflict("POST", f"{P}/authorizedinitiator/", body)) == [
            "iscsi_target_initiator_initiators"]


# ---- duplicate CHAP users (issue #10 item 7) ------------------------------------------------------


DUP = "This user already has a credential in auth group 1."


@pytest.mark.parametrize("secret", ["othersecret12", "secretsecret12"], ids=["other-secret", "same-secret"])
async def test_a_user_twice_in_one_auth_group_is_409(api: Api, secret: str) -> None:
    await b.credential(api, tag=1, user="alice")
    body = {"iscsi_target_auth_tag": 1, "iscsi_target_auth_user": "alice", "iscsi_target_auth_secret": secret}
    assert await api.conflict("POST", f"{P}/authcredential/", body) == {"iscsi_target_auth_user": [DUP]}
    assert len(api.control.config.auths) == 1


async def test_a_credential_moved_or_renamed_into_a_duplicate_is_409(api: Api) -> None:
    await b.credential(api, tag=1, user="alice")
    await b.credential(api, tag=2, user="alice")  # another group: its own namespace
    await b.credential(api, tag=1, user="bob")

    def edit(oid: int, body: dict[str, Any]) -> Awaitable[dict[str, list[str]]]:
        return api.conflict("PUT", f"{P}/authcredential/{oid}/", body)

    assert await edit(2, {"iscsi_target_auth_tag": 1}) == {"iscsi_target_auth_user": [DUP]}
    assert await edit(3, {"iscsi_target_auth_user": "alice"}) == {"iscsi_target_auth_user": [DUP]}
    await api.ok("PUT", f"{P}/authcredential/1/", {"iscsi_target_auth_secret": "newsecret1234"})  # itself


async def test_users_compare_exactly_and_peer_users_may_repeat(api: Api) -> None:
    """As CHAP_N is matched (protocol/chap.py): "Alice" is another user. The peer user only
    answers for the credential the initiator's user selected, so it may repeat."""
    await b.credential(api, tag=1, user="alice", iscsi_target_auth_peeruser="target",
                       iscsi_target_auth_peersecret="peersecret1234")
    await b.credential(api, tag=1, user="Alice")
    await b.credential(api, tag=1, user="bob", iscsi_target_auth_peeruser="target",
                       iscsi_target_auth_peersecret="peersecret5678")
    assert len(api.control.config.auths) == 3


@pytest.mark.parametrize("ch", ["\x1b", "\x85", "\x9b", "\u202e", "\u2028"])
async def test_extent_paths_and_devices_refuse_the_same_characters(api: Api, ch: str) -> None:
    """A path or device name reaches the log lines of every open and refusal as well."""
    body = b.file_extent_body(api, "new")
    body["iscsi_target_extent_path"] = body["iscsi_target_extent_path"].replace("new", f"n{ch}ew")
    assert "iscsi_target_extent_path" in await api.conflict("POST", f"{P}/extent/", body)
    disk = {"iscsi_target_extent_name": "d", "iscsi_target_extent_type": "Disk",
            "iscsi_target_extent_disk": f"zvol/tank/v{ch}1"}
    assert "iscsi_target_extent_disk" in await api.conflict("POST", f"{P}/extent/", disk)
    assert api.control.applied == []
