"""Operational key negotiation (RFC 7143 §6.2 and the key table of §13).

`KEYS` describes every key RFC 7143 defines (plus RFC 7144's iSCSIProtocolLevel and RFC 7145's
RDMAExtensions): its kind, result function, range, default, when it may be sent and by whom,
and what this target offers. `Negotiator` answers an initiator's offers with the RFC rules:
list keys take the first value we support in the initiator's order (§6.2.1), numeric keys the
Minimum/Maximum of both offers, booleans AND/OR (§6.2.2); unknown keys are answered
`NotUnderstood`, values we cannot accept `Reject` (the key keeps its default), and keys that do
not apply to a discovery session `Irrelevant` (§13). Breaking the rules of the exchange itself
(a target-only key from the initiator, a key in the wrong phase, a key offered twice, an invalid
declaration) raises `NegotiationError` during login (status 0x0200) and is answered `Reject`
in a full-feature Text exchange.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from ..model import SessionType
from .limits import (
    DEFAULT_FIRST_BURST_LENGTH,
    DEFAULT_MAX_BURST_LENGTH,
    DEFAULT_MAX_OUTSTANDING_R2T,
    DEFAULT_MRDSL,
    DEFAULT_TIME2RETAIN,
    DEFAULT_TIME2WAIT,
    TARGET_ERROR_RECOVERY_LEVEL,
    TARGET_FIRST_BURST_LENGTH,
    TARGET_MAX_BURST_LENGTH,
    TARGET_MAX_CONNECTIONS,
    TARGET_MAX_OUTSTANDING_R2T,
    TARGET_MRDSL,
    TARGET_PROTOCOL_LEVEL,
)

LIST = "list"
BOOLEAN = "boolean"
NUMERIC = "numeric"
DECLARATIVE = "declarative"  # no answer; the value is recorded
NUMERIC_DECLARATIVE = "numeric-declarative"
IRRELEVANT = "irrelevant"  # obsolete keys we answer Irrelevant (RFC 7143 §13.25: markers)
SPECIAL = "special"  # handled by login or text (names, session type, auth, SendTargets)

PHASE_LOGIN = "login"  # LO/IO: only during the login phase
PHASE_ANY = "any"  # ALL: login and full feature phase
PHASE_FFP = "ffp"  # FFPO: only in full feature phase
PHASE_SECURITY = "security"  # only in the security negotiation stage

NOT_UNDERSTOOD = "NotUnderstood"
REJECT = "Reject"
IRRELEVANT_VALUE = "Irrelevant"
RESERVED_VALUES = frozenset({NOT_UNDERSTOOD, REJECT, IRRELEVANT_VALUE})
_MAX_24BIT = (1 << 24) - 1
_DECIMAL = re.compile(r"[0-9]{1,20}")
_HEX = re.compile(r"0[xX][0-9a-fA-F]{1,16}")


class NegotiationError(ValueError):
    """The initiator broke the negotiation rules: login fails with 0x0200 (RFC 7143 §6.2)."""


@dataclass(frozen=True, slots=True)
class KeySpec:
    name: str
    kind: str
    result: str | None = None  # "Min" | "Max" | "AND" | "OR" for negotiated keys
    low: int = 0
    high: int = 0
    default: str = ""
    ours: str = ""  # what this target offers / accepts at most
    phase: str = PHASE_LOGIN
    sender: str = "both"  # "initiator" | "target" | "both"
    discovery_irrelevant: bool = False
    values: tuple[str, ...] = ()  # list keys: the values we support, in our preference order


def _k(*args: object, **kw: object) -> KeySpec:
    return KeySpec(*args, **kw)  # type: ignore[arg-type]


_SPECS = [
    # RFC 7143 §13.1 digests: CRC32C or None, in the initiator's order
    _k("HeaderDigest", LIST, default="None", values=("CRC32C", "None")),
    _k("DataDigest", LIST, default="None", values=("CRC32C", "None")),
    _k("MaxConnections", NUMERIC, "Min", 1, 65535, "1", str(TARGET_MAX_CONNECTIONS),
       discovery_irrelevant=True),  # §13.2
    _k("SendTargets", SPECIAL, phase=PHASE_FFP, sender="initiator"),  # §13.3
    _k("TargetName", SPECIAL, sender="initiator"),  # §13.4 (the target sends it in SendTargets)
    _k("InitiatorName", SPECIAL, sender="initiator"),  # §13.5
    _k("TargetAlias", DECLARATIVE, phase=PHASE_ANY, sender="target"),  # §13.6
    _k("InitiatorAlias", DECLARATIVE, phase=PHASE_ANY, sender="initiator"),  # §13.7
    _k("TargetAddress", DECLARATIVE, phase=PHASE_ANY, sender="target"),  # §13.8
    _k("TargetPortalGroupTag", DECLARATIVE, sender="target"),  # §13.9
    _k("InitialR2T", BOOLEAN, "OR", default="Yes", ours="No", discovery_irrelevant=True),  # §13.10
    _k("ImmediateData", BOOLEAN, "AND", default="Yes", ours="Yes",
       discovery_irrelevant=True),  # §13.11
    _k("MaxRecvDataSegmentLength", NUMERIC_DECLARATIVE, None, 512, _MAX_24BIT, str(DEFAULT_MRDSL),
       str(TARGET_MRDSL), phase=PHASE_ANY),  # §13.12
    _k("MaxBurstLength", NUMERIC, "Min", 512, _MAX_24BIT, str(DEFAULT_MAX_BURST_LENGTH),
       str(TARGET_MAX_BURST_LENGTH), discovery_irrelevant=True),  # §13.13
    _k("FirstBurstLength", NUMERIC, "Min", 512, _MAX_24BIT, str(DEFAULT_FIRST_BURST_LENGTH),
       str(TARGET_FIRST_BURST_LENGTH), discovery_irrelevant=True),  # §13.14
    _k("DefaultTime2Wait", NUMERIC, "Max", 0, 3600, str(DEFAULT_TIME2WAIT),
       str(DEFAULT_TIME2WAIT)),  # §13.15
    _k("DefaultTime2Retain", NUMERIC, "Min", 0, 3600, str(DEFAULT_TIME2RETAIN),
       str(DEFAULT_TIME2RETAIN)),  # §13.16
    _k("MaxOutstandingR2T", NUMERIC, "Min", 1, 65535, str(DEFAULT_MAX_OUTSTANDING_R2T),
       str(TARGET_MAX_OUTSTANDING_R2T), discovery_irrelevant=True),  # §13.17
    _k("DataPDUInOrder", BOOLEAN, "OR", default="Yes", ours="Yes", discovery_irrelevant=True),
    _k("DataSequenceInOrder", BOOLEAN, "OR", default="Yes", ours="Yes", discovery_irrelevant=True),
    _k("ErrorRecoveryLevel", NUMERIC, "Min", 0, 2, "0", str(TARGET_ERROR_RECOVERY_LEVEL)),  # §13.20
    _k("SessionType", SPECIAL, sender="initiator"),  # §13.21
    _k("TaskReporting", LIST, default="RFC3720", values=("RFC3720",),
       discovery_irrelevant=True),  # §13.23
    _k("iSCSIProtocolLevel", NUMERIC, "Min", 0, 31, "1", str(TARGET_PROTOCOL_LEVEL)),  # RFC 7144 §2.1
    # RFC 7143 §13.25 obsoleted the marker keys; answering them keeps RFC 3720 initiators working
    _k("IFMarker", BOOLEAN, "AND", default="No", ours="No"),
    _k("OFMarker", BOOLEAN, "AND", default="No", ours="No"),
    _k("IFMarkInt", IRRELEVANT),
    _k("OFMarkInt", IRRELEVANT),
    _k("RDMAExtensions", BOOLEAN, "AND", default="No", ours="No"),  # RFC 7145 §6.1: no iSER
    # RFC 7143 §12: authentication keys, security stage only (login.py / chap.py)
    _k("AuthMethod", SPECIAL, phase=PHASE_SECURITY),
    *(_k(name, SPECIAL, phase=PHASE_SECURITY)
      for name in ("CHAP_A", "CHAP_I", "CHAP_C", "CHAP_N", "CHAP_R")),
]
KEYS: dict[str, KeySpec] = {s.name: s for s in _SPECS}

#: the keys LoginComplete.params and Connection.negotiated report
SESSION_PARAMS = (
    "HeaderDigest", "DataDigest", "MaxConnections", "InitialR2T", "ImmediateData",
    "MaxRecvDataSegmentLength", "MaxBurstLength", "FirstBurstLength", "DefaultTime2Wait",
    "DefaultTime2Retain", "MaxOutstandingR2T", "DataPDUInOrder", "DataSequenceInOrder",
    "ErrorRecoveryLevel", "iSCSIProtocolLevel",
)


def parse_number(value: str) -> int | None:
    """A numeric value in decimal or 0x hex (RFC 7143 §6.1 numerical-value), or None."""
    if _DECIMAL.fullmatch(value):
        return int(value, 10)
    if _HEX.fullmatch(value):
        return int(value[2:], 16)
    return None


class Negotiator:
    """Per-connection negotiated values, starting at the RFC defaults."""

    def __init__(self, session_type: SessionType | str = SessionType.NORMAL) -> None:
        self.session_type = SessionType(session_type)  # the key's value ("Discovery") names it too
        self.values: dict[str, str] = {s.name: s.default for s in _SPECS if s.default}
        self.offered: set[str] = set()

    def negotiate(self, pairs: Iterable[tuple[str, str]], *, ffp: bool = False) -> list[tuple[str, str]]:
        """Answers to the initiator's operational keys, in order (FirstBurstLength last, as it
        depends on MaxBurstLength, InitialR2T and ImmediateData)."""
        answers: list[tuple[str, str]] = []
        deferred: list[tuple[str, str]] = []
        for key, value in pairs:
            if key == "FirstBurstLength":
                deferred.append((key, value))
                continue
            self._answer(key, value, ffp, answers)
        for key, value in deferred:
            self._answer(key, value, ffp, answers)
        return answers

    def _answer(self, key: str, value: str, ffp: bool, out: list[tuple[str, str]]) -> None:
        spec = KEYS.get(key)
        if spec is None:
            out.append((key, NOT_UNDERSTOOD))  # RFC 7143 §6.2
            return
        try:
            self._check_allowed(spec, value, ffp)
        except NegotiationError:
            if not ffp:
                raise
            out.append((key, REJECT))
            return
        if spec.kind == IRRELEVANT or (spec.discovery_irrelevant and self.session_type is SessionType.DISCOVERY):
            out.append((key, IRRELEVANT_VALUE))
            return
        answer = self._result(spec, value, ffp)
        if answer is not None:
            out.append((key, answer))

    def _check_allowed(self, spec: KeySpec, value: str, ffp: bool) -> None:
        if spec.sender == "target":
            raise NegotiationError(f"{spec.name} may only be sent by the target")
        if value in RESERVED_VALUES:
            raise NegotiationError(f"{spec.name}={value} proposes a reserved value")
        if spec.kind == SPECIAL or spec.phase == PHASE_SECURITY:
            raise NegotiationError(f"{spec.name} is not allowed here")
        if ffp and spec.phase == PHASE_LOGIN:
            raise NegotiationError(f"{spec.name} may only be negotiated during login")
        if not ffp and spec.kind not in (DECLARATIVE, NUMERIC_DECLARATIVE):
            if spec.name in self.offered:
                raise NegotiationError(f"{spec.name} offered twice")  # RFC 7143 §6.2
            self.offered.add(spec.name)

    def _result(self, spec: KeySpec, value: str, ffp: bool) -> str | None:
        if spec.kind == LIST:
            return self._list(spec, value)
        if spec.kind == BOOLEAN:
            return self._boolean(spec, value)
        if spec.kind == NUMERIC:
            return self._numeric(spec, value)
        if spec.kind == NUMERIC_DECLARATIVE:
            number = parse_number(value)
            if number is None or not spec.low <= number <= spec.high:
                if ffp:
                    return REJECT
                raise NegotiationError(f"{spec.name}={value} is out of range")
            self.values[spec.name] = str(number)
            return None
        self.values[spec.name] = value  # DECLARATIVE
        return None

    def _list(self, spec: KeySpec, value: str) -> str:
        offered = value.split(",")
        if any(not v for v in offered):
            return REJECT
        for v in offered:
            if v in spec.values:
                self.values[spec.name] = v
                return v
        return REJECT  # RFC 7143 §6.2.1: none acceptable

    def _boolean(self, spec: KeySpec, value: str) -> str:
        if value not in ("Yes", "No"):
            return REJECT
        if spec.result == "AND":
            result = "Yes" if value == "Yes" and spec.ours == "Yes" else "No"
        else:
            result = "Yes" if value == "Yes" or spec.ours == "Yes" else "No"
        self.values[spec.name] = result
        return result

    def _numeric(self, spec: KeySpec, value: str) -> str:
        number = parse_number(value)
        if number is None or not spec.low <= number <= spec.high:
            return REJECT  # RFC 7143 §6.2.2: out of range
        ours = int(spec.ours)
        result = min(number, ours) if spec.result == "Min" else max(number, ours)
        if spec.name == "FirstBurstLength":
            if self.values["InitialR2T"] == "Yes" and self.values["ImmediateData"] == "No":
                return IRRELEVANT_VALUE  # RFC 7143 §13.14
            result = min(result, int(self.values["MaxBurstLength"]))  # FBL <= MBL
        self.values[spec.name] = str(result)
        return str(result)

    def int_value(self, key: str) -> int:
        return int(self.values[key])

    def bool_value(self, key: str) -> bool:
        return self.values[key] == "Yes"

    def session_params(self) -> dict[str, str]:
        """The negotiated values the server reports (initiator's MaxRecvDataSegmentLength, i.e.
        the largest data segment we may send, plus ours as TargetRecvDataSegmentLength)."""
        params = {k: self.values[k] for k in SESSION_PARAMS}
        params["TargetRecvDataSegmentLength"] = str(TARGET_MRDSL)
        params["SessionType"] = self.session_type.value
        return params
