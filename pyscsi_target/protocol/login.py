"""The login phase state machine (RFC 7143 §6.3, §11.12, §11.13), without I/O.

Stages: SecurityNegotiation (0) -> LoginOperationalNegotiation (1) -> FullFeaturePhase (3).
`LoginMachine.handle()` takes one Login Request (header + data segment) and returns the Login
Response to send, or raises `LoginFailed` with the Status-Class/Detail of the reject (the
connection sends it and closes). Rules enforced (target-rules §1.3):
- first request: InitiatorName, and TargetName for a Normal session, else 0x0207; the policy
  comes from the `LoginAuthority` (unknown target 0x0203, ACL 0x0202 ...)
- T=1 with C=1, a reserved or backwards CSG/NSG, a changed ISID/TSIH/CID: 0x0200
- Version-min above 0x00: 0x0205
- skipping security (or not finishing CHAP) when the policy needs CHAP: 0x0201
- C=1: text accumulates and the answer has no data segment; the total is capped, and so is the
  number of Login Requests (`MAX_LOGIN_PDUS`) before the login completes
- TargetPortalGroupTag in the first response of a Normal session; our MaxRecvDataSegmentLength
  declared once, in the first operational-stage or final response
- TSIH from `authority.new_session()` only in the final response (T=1, NSG=3)
- TargetAlias (RFC 7143 §13.6) in the final response of a Normal session when the target has an
  alias, as ctld does (issue #11 item 3); none when it has not (the key is optional)
"""

from __future__ import annotations

from dataclasses import dataclass

from ..model import SessionType
from .authority import AuthPolicy, LoginAuthority, LoginRefused
from .chap import CHAP_KEYS, AuthFailed, ChapAuthenticator
from .limits import DEFAULT_MRDSL, ISCSI_VERSION, MAX_LOGIN_PDUS, MAX_TEXT_SEQUENCE_BYTES, TARGET_MRDSL
from .negotiation import NegotiationError, Negotiator
from .pdu import STAGE_FULL_FEATURE, STAGE_OPERATIONAL, STAGE_SECURITY, LoginRequest, LoginResponse
from .textkeys import TextError, encode_text, parse_text

# Status-Class / Status-Detail (RFC 7143 §11.13.5)
INITIATOR_ERROR = (2, 0x00)
AUTH_FAILURE = (2, 0x01)
AUTHORIZATION_FAILURE = (2, 0x02)
NOT_FOUND = (2, 0x03)
UNSUPPORTED_VERSION = (2, 0x05)
MISSING_PARAMETER = (2, 0x07)
SESSION_DOES_NOT_EXIST = (2, 0x0A)
INVALID_DURING_LOGIN = (2, 0x0B)
TARGET_ERROR = (3, 0x00)

_DECLARED_ONCE = ("InitiatorName", "TargetName", "SessionType")
_SECURITY_KEYS = CHAP_KEYS | {"AuthMethod"}


class LoginFailed(Exception):
    """The login must be rejected with this status (RFC 7143 §11.13.5), then the connection closed."""

    def __init__(self, status: tuple[int, int], reason: str) -> None:
        super().__init__(reason)
        self.status_class, self.status_detail = status
        self.reason = reason


@dataclass(slots=True)
class LoginStep:
    """A Login Response to send (sequence numbers are filled in by the connection)."""

    response: LoginResponse
    data: bytes
    complete: bool = False


class LoginMachine:
    """One connection's login exchange."""

    def __init__(self, authority: LoginAuthority, tpgt: int) -> None:
        self.authority = authority
        self.tpgt = tpgt
        self.stage: int | None = None
        self.isid = 0
        self.tsih = 0
        self.cid = 0
        self.initiator_name = ""
        self.initiator_alias: str | None = None
        self.target_name: str | None = None
        self.session_type = SessionType.NORMAL
        self.negotiator = Negotiator()
        self.auth: ChapAuthenticator | None = None
        self._declared: dict[str, str] = {}
        self._pending = bytearray()
        self._text_total = 0
        self._requests = 0
        self._pending_csg: int | None = None  # CSG of a C=1 sequence before the first full request
        self._mrdsl_declared = False
        self.target_alias: str | None = None  # the TargetAlias sent in the final response

    # ---- entry point ---------------------------------------------------------------------------

    def handle(self, req: LoginRequest, data: bytes | bytearray) -> LoginStep:
        self._requests += 1
        if self._requests > MAX_LOGIN_PDUS:
            raise LoginFailed(INITIATOR_ERROR, f"more than {MAX_LOGIN_PDUS} login requests")
        self._check_header(req)
        self._text_total += len(data)
        if self._text_total > MAX_TEXT_SEQUENCE_BYTES:
            raise LoginFailed(INITIATOR_ERROR, "login text too long")
        if req.cont:  # RFC 7143 §6.1: the answer to C=1 has no data segment
            self._pending += data
            return LoginStep(self._response(req, transit=False, nsg=0), b"")
        text = bytes(self._pending) + bytes(data)
        self._pending.clear()
        try:
            pairs = parse_text(text)
        except TextError as exc:
            raise LoginFailed(INITIATOR_ERROR, str(exc)) from exc
        first = self.stage is None
        if first:
            self._first_request(req, pairs)
        answers = self._answer_keys(pairs, first)
        return self._transit(req, answers)

    def echo_ids(self, req: LoginRequest) -> None:
        """A Login Request refused before `handle()` (framing): its reject still echoes the ISID
        and TSIH (RFC 7143 §11.13.3, §11.13.4) unless an earlier request fixed them."""
        if self._requests == 0:
            self.isid, self.tsih, self.cid = req.isid, req.tsih, req.cid

    def failure_response(self, itt: int, status: tuple[int, int]) -> LoginResponse:
        """A Login reject: T, C, CSG and NSG are reserved (RFC 7143 §11.13.5)."""
        return LoginResponse(version_max=ISCSI_VERSION, version_active=ISCSI_VERSION, isid=self.isid,
                             tsih=self.tsih, itt=itt, status_class=status[0], status_detail=status[1])

    # ---- checks --------------------------------------------------------------------------------

    def _check_header(self, req: LoginRequest) -> None:
        if self._requests == 1:  # the first request fixes ISID/TSIH/CID; a reject echoes them
            self.isid, self.tsih, self.cid = req.isid, req.tsih, req.cid
        elif (req.isid, req.tsih, req.cid) != (self.isid, self.tsih, self.cid):
            raise LoginFailed(INITIATOR_ERROR, "ISID/TSIH/CID changed during login")
        if req.version_min > ISCSI_VERSION:
            raise LoginFailed(UNSUPPORTED_VERSION, f"Version-min {req.version_min}")
        if req.transit and req.cont:
            raise LoginFailed(INITIATOR_ERROR, "T=1 together with C=1")
        if req.csg not in (STAGE_SECURITY, STAGE_OPERATIONAL):
            raise LoginFailed(INITIATOR_ERROR, f"CSG {req.csg}")
        if req.transit and (req.nsg not in (STAGE_OPERATIONAL, STAGE_FULL_FEATURE) or req.nsg <= req.csg):
            raise LoginFailed(INITIATOR_ERROR, f"transition {req.csg} -> {req.nsg}")
        # a continued text stays in its stage (RFC 7143 §6.1), and so does every later request
        stage = self.stage if self.stage is not None else self._pending_csg
        if stage is not None and req.csg != stage:
            raise LoginFailed(INITIATOR_ERROR, f"CSG {req.csg} in stage {stage}")
        self._pending_csg = req.csg if req.cont else None

    def _first_request(self, req: LoginRequest, pairs: list[tuple[str, str]]) -> None:
        keys = dict(pairs)
        name = keys.get("InitiatorName", "")
        target = keys.get("TargetName") or None
        self.initiator_name, self.target_name = name, target  # known from here on, for the log
        if not name:
            raise LoginFailed(MISSING_PARAMETER, "no InitiatorName")
        try:
            session_type = SessionType(keys.get("SessionType", SessionType.NORMAL))
        except ValueError:
            raise LoginFailed(MISSING_PARAMETER, "unknown SessionType") from None
        if session_type is SessionType.NORMAL and target is None:
            raise LoginFailed(MISSING_PARAMETER, "no TargetName")
        if session_type is SessionType.NORMAL:
            assert target is not None
            policy = self.authority.target_policy(target, name)
        else:
            policy = self.authority.discovery_policy(name)
        if isinstance(policy, LoginRefused):
            raise LoginFailed((policy.status_class, policy.status_detail), policy.reason or "refused")
        self.auth = ChapAuthenticator(policy)
        if req.csg == STAGE_OPERATIONAL and self.auth.requires_auth():
            raise LoginFailed(AUTH_FAILURE, "security stage skipped")  # RFC 7143 §6.3
        self.session_type = session_type
        self.negotiator = Negotiator(session_type)
        self.stage = req.csg

    @property
    def policy(self) -> AuthPolicy | None:
        return self.auth.policy if self.auth else None

    # ---- keys ----------------------------------------------------------------------------------

    def _answer_keys(self, pairs: list[tuple[str, str]], first: bool) -> list[tuple[str, str]]:
        assert self.auth is not None
        security: list[tuple[str, str]] = []
        operational: list[tuple[str, str]] = []
        for key, value in pairs:
            if key in _DECLARED_ONCE:
                self._declare_once(key, value)
            elif key in _SECURITY_KEYS:
                if self.stage != STAGE_SECURITY:
                    raise LoginFailed(INITIATOR_ERROR, f"{key} outside the security stage")
                security.append((key, value))
            else:
                if key == "InitiatorAlias":
                    self.initiator_alias = value
                operational.append((key, value))
        answers: list[tuple[str, str]] = []
        try:
            if security:
                answers += self.auth.handle(security)
        except AuthFailed as exc:
            raise LoginFailed(AUTH_FAILURE, str(exc)) from exc
        if first and self.session_type is SessionType.NORMAL:
            answers.append(("TargetPortalGroupTag", str(self.tpgt)))  # RFC 7143 §13.9
        try:
            answers += self.negotiator.negotiate(operational)
        except NegotiationError as exc:
            raise LoginFailed(INITIATOR_ERROR, str(exc)) from exc
        return answers

    def _declare_once(self, key: str, value: str) -> None:
        """InitiatorName/TargetName/SessionType may be repeated only with the same value
        (target-rules §1.3: re-declaring a key is an initiator error)."""
        previous = self._declared.setdefault(key, value)
        if previous != value:
            raise LoginFailed(INITIATOR_ERROR, f"{key} re-declared with another value")

    # ---- stage transitions ---------------------------------------------------------------------

    def _transit(self, req: LoginRequest, answers: list[tuple[str, str]]) -> LoginStep:
        assert self.auth is not None and self.stage is not None
        transit = req.transit
        if transit and self.stage == STAGE_SECURITY and not self.auth.done:
            if self.auth.started:
                transit = False  # CHAP still in progress: stay (RFC 7143 §6.3)
            else:
                try:
                    self.auth.finish_without_keys()
                except AuthFailed as exc:
                    raise LoginFailed(AUTH_FAILURE, str(exc)) from exc
        complete = transit and req.nsg == STAGE_FULL_FEATURE
        if complete:
            self.tsih = self._new_session()
            alias = self.policy.alias if self.policy else None
            if self.session_type is SessionType.NORMAL and alias:
                answers.append(("TargetAlias", alias))  # RFC 7143 §13.6, issue #11 item 3
                self.target_alias = alias
        if (self.stage == STAGE_OPERATIONAL or complete) and not self._mrdsl_declared:
            answers.append(("MaxRecvDataSegmentLength", str(TARGET_MRDSL)))  # RFC 7143 §13.12
            self._mrdsl_declared = True
        data = encode_text(answers)
        if len(data) > DEFAULT_MRDSL:
            raise LoginFailed(INITIATOR_ERROR, "login response text too long")
        response = self._response(req, transit=transit, nsg=req.nsg if transit else 0)
        if transit:
            self.stage = req.nsg
        return LoginStep(response, data, complete)

    def _new_session(self) -> int:
        result = self.authority.new_session(self.initiator_name, self.isid, self.target_name, self.tsih)
        if isinstance(result, LoginRefused):
            raise LoginFailed((result.status_class, result.status_detail), result.reason or "refused")
        if not 0 < result <= 0xFFFF:
            raise LoginFailed(TARGET_ERROR, f"authority returned TSIH {result}")
        return result

    def _response(self, req: LoginRequest, *, transit: bool, nsg: int) -> LoginResponse:
        assert self.stage is not None or req.cont
        return LoginResponse(
            transit=transit, cont=False, csg=req.csg, nsg=nsg, version_max=ISCSI_VERSION,
            version_active=ISCSI_VERSION, isid=req.isid, tsih=self.tsih, itt=req.itt,
        )

    def complete_info(self) -> dict[str, object]:
        """What LoginComplete reports, once the final response was produced."""
        return {
            "session_type": self.session_type, "initiator_name": self.initiator_name,
            "initiator_alias": self.initiator_alias, "target_name": self.target_name,
            "isid": self.isid, "tsih": self.tsih, "cid": self.cid, "tpgt": self.tpgt,
            "params": self.negotiator.session_params(),
            "auth_user": self.auth.user if self.auth else None, "target_alias": self.target_alias,
            "auth_method": self._auth_method(),
        }

    def _auth_method(self) -> str:
        """How the initiator authenticated: "None", "CHAP" or "CHAP Mutual" (the API's names)."""
        if self.auth is None or self.auth.user is None:
            return "None"
        return "CHAP Mutual" if self.auth.mutual else "CHAP"
