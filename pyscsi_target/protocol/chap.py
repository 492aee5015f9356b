"""The security negotiation stage: AuthMethod selection and CHAP with MD5, one-way and mutual.

RFC 7143 §12.1.3 / RFC 1994. The exchange (target side):
  1. AuthMethod=<list>       -> AuthMethod=CHAP | None (by the policy), else authentication failure
  2. CHAP_A=<list>           -> CHAP_A=5 CHAP_I=<id> CHAP_C=0x<16 random bytes>
  3. CHAP_N CHAP_R [CHAP_I CHAP_C] -> verify, then [CHAP_N CHAP_R] for mutual authentication
Checks (target-rules §1.1/§1.2): algorithm 5 matched as a whole list item (CHAP_A=56 is not 5),
identifier 0..255, CHAP_R of exactly 16 bytes in 0x/0b encoding, binary CHAP_C at most 1024
bytes, user names compared exactly, responses with `hmac.compare_digest`, our challenge
reflected back refused, fresh challenge and identifier from `secrets` for every login.
Any failure raises `AuthFailed`; the login answers 0x0201 without saying what was wrong.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Callable

from .authority import AuthPolicy, ChapSecret
from .limits import CHAP_CHALLENGE_LENGTH, MAX_CHAP_BINARY_LENGTH
from .negotiation import NOT_UNDERSTOOD, parse_number

#: CHAP_A value of CHAP with MD5 (RFC 7143 §12.1.3, IANA PPP authentication algorithms)
CHAP_MD5 = 5
#: bytes of an MD5 digest = CHAP_R length for algorithm 5 (RFC 1321)
MD5_LENGTH = 16

METHOD_NONE = "None"
#: one-way CHAP only: an initiator asking the target to authenticate itself is refused, as ctld
#: refused it (FreeNAS gave a CHAP target group's credentials no peer secret; issue #11 item 6)
METHOD_CHAP = "CHAP"
#: mutual CHAP only: one-way is refused (stricter than ctld, which accepted it; docs/api.md)
METHOD_CHAP_MUTUAL = "CHAP Mutual"
#: CHAP required, one-way or mutual as the initiator asks (mutual answered when the credential has
#: a peer user): what ctld derived from an auth group holding credentials whose method was "None"
METHOD_CHAP_DERIVED = "CHAP (from the auth group)"

CHAP_KEYS = frozenset({"CHAP_A", "CHAP_I", "CHAP_C", "CHAP_N", "CHAP_R"})

# states of the exchange
_START = "start"
_WAIT_A = "wait_chap_a"
_WAIT_R = "wait_chap_r"
_DONE = "done"


class AuthFailed(Exception):
    """Authentication failed: Login Response 0x0201 (RFC 7143 §11.13.5)."""


def decode_binary(value: str) -> bytes:
    """A binary value in 0x (hex) or 0b (base64) encoding (RFC 7143 §6.1 binary-value)."""
    prefix, body = value[:2], value[2:]
    try:
        if prefix in ("0x", "0X"):
            if len(body) % 2:
                body = "0" + body
            raw = bytes.fromhex(body)
        elif prefix in ("0b", "0B"):
            raw = base64.b64decode(body, validate=True)
        else:
            raise AuthFailed("binary value without 0x/0b prefix")
    except (ValueError, binascii.Error) as exc:
        raise AuthFailed("badly encoded binary value") from exc
    if not raw or len(raw) > MAX_CHAP_BINARY_LENGTH:
        raise AuthFailed("binary value empty or longer than 1024 bytes")
    return raw


def chap_response(identifier: int, secret: str, challenge: bytes) -> bytes:
    """MD5(Identifier || secret || Challenge) (RFC 1994 §4.1)."""
    return hashlib.md5(bytes([identifier]) + secret.encode() + challenge).digest()


class ChapAuthenticator:
    """Target side of the security stage for one login, driven by the portal/target policy."""

    def __init__(self, policy: AuthPolicy, *, random_bytes: Callable[[int], bytes] = secrets.token_bytes,
                 random_id: Callable[[], int] = lambda: secrets.randbelow(256)) -> None:
        self.policy = policy
        self._random_bytes = random_bytes
        self._random_id = random_id
        self._state = _START
        self._identifier = 0
        self._challenge = b""
        self.user: str | None = None
        #: the initiator asked to authenticate the target too (mutual CHAP)
        self.mutual = False

    @property
    def done(self) -> bool:
        return self._state == _DONE

    @property
    def started(self) -> bool:
        return self._state != _START

    def requires_auth(self) -> bool:
        """Every method but "None" needs CHAP: a method we do not know fails closed."""
        return self.policy.method != METHOD_NONE

    def finish_without_keys(self) -> None:
        """The initiator asks to leave the security stage without offering AuthMethod: accepted
        only when the policy is None (RFC 7143 §6.3: the target may refuse to skip security)."""
        if self._state == _START and not self.requires_auth():
            self._state = _DONE
            return
        if self._state != _DONE:
            raise AuthFailed("leaving the security stage before authentication")

    def handle(self, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Answers to the security keys of one Login Request (non-security keys excluded)."""
        keys = dict(pairs)
        answers: list[tuple[str, str]] = []
        if "AuthMethod" in keys:
            answers.append(("AuthMethod", self._choose_method(keys.pop("AuthMethod"))))
        chap = {k: v for k, v in keys.items() if k in CHAP_KEYS}
        if chap:
            answers.extend(self._chap_step(chap))
        answers.extend((k, NOT_UNDERSTOOD) for k in keys if k not in CHAP_KEYS)
        return answers

    def _choose_method(self, value: str) -> str:
        if self._state != _START:
            raise AuthFailed("AuthMethod offered again")
        offered = value.split(",")
        wanted = METHOD_NONE if not self.requires_auth() else METHOD_CHAP
        if wanted not in offered:
            raise AuthFailed(f"policy needs AuthMethod={wanted}")
        self._state = _DONE if wanted == METHOD_NONE else _WAIT_A
        return wanted

    def _chap_step(self, chap: dict[str, str]) -> list[tuple[str, str]]:
        if self._state == _WAIT_A and set(chap) == {"CHAP_A"}:
            return self._challenge_for(chap["CHAP_A"])
        if self._state == _WAIT_R and {"CHAP_N", "CHAP_R"} <= set(chap) and "CHAP_A" not in chap:
            return self._verify(chap)
        raise AuthFailed("CHAP keys out of sequence")

    def _challenge_for(self, value: str) -> list[tuple[str, str]]:
        if str(CHAP_MD5) not in value.split(","):  # whole items: "56" is not "5"
            raise AuthFailed("no supported CHAP algorithm")
        self._identifier = self._random_id() & 0xFF
        self._challenge = self._random_bytes(CHAP_CHALLENGE_LENGTH)
        self._state = _WAIT_R
        return [("CHAP_A", str(CHAP_MD5)), ("CHAP_I", str(self._identifier)),
                ("CHAP_C", "0x" + self._challenge.hex())]

    def _verify(self, chap: dict[str, str]) -> list[tuple[str, str]]:
        response = decode_binary(chap["CHAP_R"])
        if len(response) != MD5_LENGTH:
            raise AuthFailed("CHAP_R is not an MD5 digest")
        credential = self._match(chap["CHAP_N"], response)
        self.user = credential.user
        mutual = "CHAP_I" in chap or "CHAP_C" in chap
        if self.policy.method == METHOD_CHAP_MUTUAL and not mutual:
            raise AuthFailed("policy requires mutual CHAP")
        if self.policy.method == METHOD_CHAP and mutual:
            raise AuthFailed("policy is one-way CHAP: the target does not authenticate itself")
        self._state = _DONE
        self.mutual = mutual
        if not mutual:
            return []
        return self._mutual_answer(credential, chap)

    def _match(self, name: str, response: bytes) -> ChapSecret:
        found: ChapSecret | None = None
        for cred in self.policy.credentials:
            expected = chap_response(self._identifier, cred.secret, self._challenge)
            # exact user match and a constant-time digest comparison (target-rules §1.2)
            if hmac.compare_digest(expected, response) and cred.user == name:
                found = found or cred
        if found is None:
            raise AuthFailed("CHAP_N/CHAP_R do not match a credential")
        return found

    def _mutual_answer(self, cred: ChapSecret, chap: dict[str, str]) -> list[tuple[str, str]]:
        if "CHAP_I" not in chap or "CHAP_C" not in chap:
            raise AuthFailed("mutual CHAP needs both CHAP_I and CHAP_C")
        identifier = parse_number(chap["CHAP_I"])
        if identifier is None or identifier > 255:
            raise AuthFailed("CHAP_I is not 0..255")
        challenge = decode_binary(chap["CHAP_C"])
        if challenge == self._challenge:
            raise AuthFailed("initiator reflected our challenge")  # RFC 7143 §9.2.1
        if not cred.peeruser or not cred.peersecret:
            raise AuthFailed("no target credential for mutual CHAP")
        if cred.peersecret == cred.secret:
            raise AuthFailed("same secret in both directions")  # RFC 7143 §9.2.1
        answer = chap_response(identifier, cred.peersecret, challenge)
        return [("CHAP_N", cred.peeruser), ("CHAP_R", "0x" + answer.hex())]
