"""CHAP MD5 (RFC 1994, RFC 7143 §12.1.3) at the unit level: encodings, checks, mutual answers."""

from __future__ import annotations

import base64
import hashlib

import pytest

from pyscsi_target.protocol.authority import AuthPolicy, ChapSecret
from pyscsi_target.protocol.chap import (
    METHOD_CHAP_DERIVED,
    AuthFailed,
    ChapAuthenticator,
    chap_response,
    decode_binary,
)

CRED = ChapSecret("alice", "alice-secret-16b", "bob", "bob-secret-12345")
CHALLENGE = bytes(range(16))


def authenticator(method: str = "CHAP", creds: tuple[ChapSecret, ...] = (CRED,)) -> ChapAuthenticator:
    return ChapAuthenticator(AuthPolicy(method=method, credentials=creds), random_bytes=lambda n: CHALLENGE[:n],
                             random_id=lambda: 7)


def to_challenge(auth: ChapAuthenticator) -> None:
    assert auth.handle([("AuthMethod", "CHAP,None")]) == [("AuthMethod", "CHAP")]
    assert auth.handle([("CHAP_A", "5")]) == [("CHAP_A", "5"), ("CHAP_I", "7"), ("CHAP_C", "0x" + CHALLENGE.hex())]


def good_response(identifier: int = 7, secret: str = CRED.secret) -> str:
    return "0x" + hashlib.md5(bytes([identifier]) + secret.encode() + CHALLENGE).hexdigest()


def test_rfc1994_response_is_md5_of_id_secret_challenge() -> None:
    assert chap_response(1, "s", b"c") == hashlib.md5(b"\x01sc").digest()


def test_one_way_success_with_hex_and_base64() -> None:
    for encode in (lambda r: r, lambda r: "0b" + base64.b64encode(bytes.fromhex(r[2:])).decode()):
        auth = authenticator()
        to_challenge(auth)
        assert auth.handle([("CHAP_N", "alice"), ("CHAP_R", encode(good_response()))]) == []
        assert auth.done and auth.user == "alice"


def test_mutual_answer_uses_the_peer_secret() -> None:
    auth = authenticator("CHAP Mutual")
    to_challenge(auth)
    theirs = b"\x55" * 20
    answers = dict(auth.handle([("CHAP_N", "alice"), ("CHAP_R", good_response()), ("CHAP_I", "200"),
                                ("CHAP_C", "0x" + theirs.hex())]))
    assert answers == {"CHAP_N": "bob", "CHAP_R": "0x" + chap_response(200, CRED.peersecret, theirs).hex()}


@pytest.mark.parametrize(("name", "response"), [
    ("alic", good_response()),  # prefix of the user name
    ("aliceX", good_response()),  # longer user name
    ("alice", good_response(secret="wrong")),
    ("alice", good_response(identifier=8)),
    ("alice", good_response()[:-2]),  # 15 bytes
    ("alice", good_response() + "00"),  # 17 bytes
    ("alice", "deadbeef"),  # no 0x/0b prefix
    ("alice", "0xzz"),
    ("alice", "0b!!!"),
])
def test_one_way_failures(name: str, response: str) -> None:
    auth = authenticator()
    to_challenge(auth)
    with pytest.raises(AuthFailed):
        auth.handle([("CHAP_N", name), ("CHAP_R", response)])


@pytest.mark.parametrize("value", ["56", "7", "15,6", "", "5x", "0x5"])
def test_chap_a_without_algorithm_5_fails(value: str) -> None:
    auth = authenticator()
    auth.handle([("AuthMethod", "CHAP")])
    with pytest.raises(AuthFailed):
        auth.handle([("CHAP_A", value)])


def test_chap_a_list_with_5_anywhere_is_accepted() -> None:
    auth = authenticator()
    auth.handle([("AuthMethod", "CHAP")])
    assert auth.handle([("CHAP_A", "7,6,5")])[0] == ("CHAP_A", "5")


@pytest.mark.parametrize("extra", [
    [("CHAP_I", "256"), ("CHAP_C", "0x" + "11" * 16)],  # identifier > 255
    [("CHAP_I", "-1"), ("CHAP_C", "0x" + "11" * 16)],
    [("CHAP_I", "1"), ("CHAP_C", "0x" + CHALLENGE.hex())],  # our challenge reflected
    [("CHAP_I", "1"), ("CHAP_C", "0x" + "11" * 1025)],  # challenge over 1024 bytes
    [("CHAP_I", "1")],  # CHAP_C missing
    [("CHAP_C", "0x" + "11" * 16)],  # CHAP_I missing
])
def test_mutual_failures(extra: list[tuple[str, str]]) -> None:
    auth = authenticator("CHAP")
    to_challenge(auth)
    with pytest.raises(AuthFailed):
        auth.handle([("CHAP_N", "alice"), ("CHAP_R", good_response()), *extra])


def test_policy_mutual_requires_the_initiator_to_ask() -> None:
    auth = authenticator("CHAP Mutual")
    to_challenge(auth)
    with pytest.raises(AuthFailed):
        auth.handle([("CHAP_N", "alice"), ("CHAP_R", good_response())])


def test_policy_chap_refuses_a_mutual_request() -> None:
    """Issue #11 item 6: with method CHAP, FreeNAS gave ctld no peer secret, and ctld refused an
    initiator asking the target to authenticate itself; so do we, even when the credential has a
    peer user."""
    auth = authenticator("CHAP")
    to_challenge(auth)
    with pytest.raises(AuthFailed):
        auth.handle([("CHAP_N", "alice"), ("CHAP_R", good_response()), ("CHAP_I", "1"),
                     ("CHAP_C", "0x" + "22" * 16)])


def test_chap_derived_from_the_auth_group_takes_one_way_or_mutual() -> None:
    """Issue #11 item 6: method None with credentials in the auth group (ctld's derived group)."""
    auth = authenticator(METHOD_CHAP_DERIVED)
    assert auth.requires_auth()
    to_challenge(auth)
    assert auth.handle([("CHAP_N", "alice"), ("CHAP_R", good_response())]) == []
    auth = authenticator(METHOD_CHAP_DERIVED)
    to_challenge(auth)
    theirs = b"\x66" * 16
    answers = dict(auth.handle([("CHAP_N", "alice"), ("CHAP_R", good_response()), ("CHAP_I", "9"),
                                ("CHAP_C", "0x" + theirs.hex())]))
    assert answers == {"CHAP_N": "bob", "CHAP_R": "0x" + chap_response(9, CRED.peersecret, theirs).hex()}
    auth = authenticator(METHOD_CHAP_DERIVED)
    with pytest.raises(AuthFailed):
        auth.finish_without_keys()  # the security stage cannot be skipped


def test_mutual_needs_a_peer_credential_distinct_from_the_initiator_secret() -> None:
    for cred in (ChapSecret("alice", CRED.secret), ChapSecret("alice", CRED.secret, "bob", CRED.secret)):
        auth = authenticator(METHOD_CHAP_DERIVED, (cred,))
        to_challenge(auth)
        with pytest.raises(AuthFailed):
            auth.handle([("CHAP_N", "alice"), ("CHAP_R", good_response()), ("CHAP_I", "1"),
                         ("CHAP_C", "0x" + "22" * 16)])


@pytest.mark.parametrize(("method", "offer"), [("CHAP", "None"), ("None", "CHAP"), ("CHAP", "KRB5,SRP")])
def test_auth_method_mismatch_fails(method: str, offer: str) -> None:
    with pytest.raises(AuthFailed):
        authenticator(method).handle([("AuthMethod", offer)])


def test_keys_out_of_sequence_fail() -> None:
    with pytest.raises(AuthFailed):
        authenticator().handle([("CHAP_A", "5")])  # before AuthMethod
    auth = authenticator()
    to_challenge(auth)
    with pytest.raises(AuthFailed):
        auth.handle([("CHAP_A", "5")])  # a second challenge request
    auth = authenticator()
    auth.handle([("AuthMethod", "CHAP")])
    with pytest.raises(AuthFailed):
        auth.handle([("CHAP_A", "5"), ("CHAP_N", "alice"), ("CHAP_R", good_response())])


def test_real_challenges_are_fresh_and_16_bytes() -> None:
    seen = set()
    for _ in range(4):
        auth = ChapAuthenticator(AuthPolicy(method="CHAP", credentials=(CRED,)))
        auth.handle([("AuthMethod", "CHAP")])
        challenge = dict(auth.handle([("CHAP_A", "5")]))["CHAP_C"]
        assert len(decode_binary(challenge)) == 16
        seen.add(challenge)
    assert len(seen) == 4


def test_policy_none_accepts_none_or_skipping() -> None:
    auth = authenticator("None")
    assert auth.handle([("AuthMethod", "CHAP,None")]) == [("AuthMethod", "None")]
    assert auth.done
    skipping = authenticator("None")
    skipping.finish_without_keys()
    assert skipping.done
    with pytest.raises(AuthFailed):
        authenticator("CHAP").finish_without_keys()


def test_unknown_security_keys_are_not_understood() -> None:
    auth = authenticator()
    assert auth.handle([("AuthMethod", "CHAP"), ("SRP_U", "x")]) == [("AuthMethod", "CHAP"),
                                                                      ("SRP_U", "NotUnderstood")]


@pytest.mark.parametrize("method", ["Auto", "chap", ""])
def test_an_unknown_method_requires_chap(method: str) -> None:
    auth = authenticator(method)
    assert auth.requires_auth()
    assert auth.handle([("AuthMethod", "CHAP,None")]) == [("AuthMethod", "CHAP")]
    with pytest.raises(AuthFailed):
        authenticator(method).finish_without_keys()
    with pytest.raises(AuthFailed):
        authenticator(method).handle([("AuthMethod", "None")])
