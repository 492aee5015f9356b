"""Persistent reservation state (SPC-4 §5.13) as an immutable value, and the pure operations on it.

`PrState` is what a logical unit holds: registrations (one reservation key per I_T nexus, or per
initiator port on every target port with ALL_TG_PT), at most one reservation, the PRGENERATION
counter and the APTPL flag. Each PERSISTENT RESERVE OUT service action is a function
`(state, nexus, ...) -> Outcome` that never mutates: the caller persists the new state (APTPL)
and only then installs it, so a failed save leaves the LU unchanged. `conflicts()` is the SPC-4
conflict table (§5.13.1 table 66, SBC-4 §4.17 table 13) used by `execute()` before dispatch.

Decisions (documented in REPORT CAPABILITIES): SPEC_I_PT is not supported (SIP_C=0), ALL_TG_PT
is (ATP_C=1), only LU_SCOPE exists, REGISTER AND MOVE is not implemented.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace

from .sense import CheckCondition, SenseReason, invalid_param
from .types import Nexus

#: PRGENERATION is a 32-bit counter that wraps (SPC-4 §6.16.2)
GENERATION_MODULUS = 1 << 32
#: reservation keys are 8 bytes (SPC-4 §6.17.3)
KEY_LIMIT = 1 << 64
#: version of the `to_json()` layout, checked by `from_json()`
STATE_VERSION = 1
#: at most this many registrations per LU; more get INSUFFICIENT REGISTRATION RESOURCES
#: (SPC-4 §5.13.7). Unit: registrations. Bounds the memory an initiator can make us hold.
MAX_REGISTRATIONS = 1024
#: RESERVATION KEY field offset in the PROUT parameter list, for field pointers (SPC-4 §6.17.3)
RK_OFFSET = 0
SARK_OFFSET = 8


class PrType(enum.IntEnum):
    """Persistent reservation TYPE codes (SPC-4 §6.16.3.4, table 170)."""

    WRITE_EXCLUSIVE = 1
    EXCLUSIVE_ACCESS = 3
    WRITE_EXCLUSIVE_REGISTRANTS_ONLY = 5
    EXCLUSIVE_ACCESS_REGISTRANTS_ONLY = 6
    WRITE_EXCLUSIVE_ALL_REGISTRANTS = 7
    EXCLUSIVE_ACCESS_ALL_REGISTRANTS = 8

    @property
    def all_registrants(self) -> bool:
        return self in (PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS, PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS)

    @property
    def registrants(self) -> bool:
        """Registrants-only or all-registrants: registered I_T nexuses have full access."""
        return self not in (PrType.WRITE_EXCLUSIVE, PrType.EXCLUSIVE_ACCESS)

    @property
    def exclusive_access(self) -> bool:
        return self in (
            PrType.EXCLUSIVE_ACCESS,
            PrType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY,
            PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS,
        )


class PrAccess(enum.Enum):
    """How a command fares in the conflict table (SPC-4 §5.13.1 table 66, SBC-4 table 13)."""

    #: Allowed under every reservation (INQUIRY, REPORT LUNS, TEST UNIT READY, PR IN/OUT ...)
    ALLOWED = "allowed"
    #: reads the medium: allowed under Write Exclusive types, conflicts under Exclusive Access
    #: types for nexuses that are neither holder nor (for RO/AR types) registered
    READ = "read"
    #: conflicts for every nexus that is neither holder nor (for RO/AR types) registered
    EXCLUSIVE = "exclusive"
    #: SPC-2 RESERVE/RELEASE(6/10): conflict while any registration exists (SPC-4 §5.13.3)
    SPC2 = "spc2"


class ReservationConflict(Exception):
    """The service action ends with RESERVATION CONFLICT status (SPC-4 §5.13)."""


@dataclass(frozen=True, slots=True)
class Registration:
    """One registered I_T nexus, or with ALL_TG_PT every I_T nexus of the initiator port
    (`target_port` None)."""

    initiator_port: str
    target_port: str | None
    key: int
    #: RELATIVE TARGET PORT IDENTIFIER of the registering nexus, for READ FULL STATUS
    relative_port_id: int = 1

    @property
    def ident(self) -> tuple[str, str | None]:
        return self.initiator_port, self.target_port

    def covers(self, nexus: Nexus) -> bool:
        if self.initiator_port != nexus.initiator_port:
            return False
        return self.target_port is None or self.target_port == nexus.target_port


@dataclass(frozen=True, slots=True)
class Reservation:
    type: PrType
    #: `Registration.ident` of the holder; for all-registrants types every registrant holds it
    holder: tuple[str, str | None]


@dataclass(frozen=True, slots=True)
class PrState:
    generation: int = 0
    registrations: tuple[Registration, ...] = ()
    reservation: Reservation | None = None
    aptpl: bool = False

    # ---- queries ----------------------------------------------------------------------------

    def registration_of(self, nexus: Nexus) -> Registration | None:
        """The registration of `nexus`: its own I_T nexus registration, else an ALL_TG_PT one."""
        fallback = None
        for reg in self.registrations:
            if reg.covers(nexus):
                if reg.target_port is not None:
                    return reg
                fallback = reg
        return fallback

    def is_holder(self, nexus: Nexus) -> bool:
        """SPC-4 §5.13.10: the reservation holder (every registrant for all-registrants types)."""
        res = self.reservation
        reg = self.registration_of(nexus)
        if res is None or reg is None:
            return False
        return res.type.all_registrants or reg.ident == res.holder

    def holder_key(self) -> int:
        """The holder's key (READ RESERVATION); 0 for all-registrants types (SPC-4 §6.16.3.3)."""
        res = self.reservation
        if res is None or res.type.all_registrants:
            return 0
        for reg in self.registrations:
            if reg.ident == res.holder:
                return reg.key
        return 0

    def conflicts(self, nexus: Nexus, access: PrAccess) -> bool:
        """The conflict table of SPC-4 §5.13.1 (table 66) and SBC-4 §4.17 (table 13)."""
        if access is PrAccess.SPC2:
            return bool(self.registrations)
        res = self.reservation
        if res is None or access is PrAccess.ALLOWED or self.is_holder(nexus):
            return False
        if res.type.registrants and self.registration_of(nexus) is not None:
            return False
        return access is PrAccess.EXCLUSIVE or res.type.exclusive_access

    # ---- plain data (APTPL) -------------------------------------------------------------------

    def to_json(self) -> dict[str, object]:
        res = self.reservation
        return {
            "version": STATE_VERSION,
            "generation": self.generation,
            "aptpl": self.aptpl,
            "registrations": [
                {
                    "initiator_port": r.initiator_port,
                    "target_port": r.target_port,
                    "relative_port_id": r.relative_port_id,
                    "key": r.key,
                }
                for r in self.registrations
            ],
            "reservation": None
            if res is None
            else {"type": int(res.type), "initiator_port": res.holder[0], "target_port": res.holder[1]},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> PrState:
        """Inverse of `to_json()`; ValueError for anything malformed (nothing is guessed)."""
        if not isinstance(data, Mapping) or data.get("version") != STATE_VERSION:
            raise ValueError("not a persistent reservation state of a known version")
        regs = tuple(_registration(r) for r in _list(data.get("registrations")))
        if len({r.ident for r in regs}) != len(regs):
            raise ValueError("two registrations for the same I_T nexus")
        generation = _int(data.get("generation"), GENERATION_MODULUS)
        aptpl = data.get("aptpl")
        if not isinstance(aptpl, bool):
            raise ValueError("aptpl must be a boolean")
        return cls(generation, regs, _reservation(data.get("reservation"), regs), aptpl)


def _list(value: object) -> list[object]:
    if not isinstance(value, list):
        raise ValueError("registrations must be a list")
    return value


def _int(value: object, limit: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < limit:
        raise ValueError(f"{value!r} is not an integer in [0, {limit})")
    return value


def _str(value: object, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise ValueError(f"{value!r} is not a non-empty string")
    return value


def _registration(raw: object) -> Registration:
    if not isinstance(raw, Mapping):
        raise ValueError("a registration must be an object")
    initiator = _str(raw.get("initiator_port"))
    assert initiator is not None
    key = _int(raw.get("key"), KEY_LIMIT)
    if key == 0:
        raise ValueError("a registered reservation key is never zero")
    port = _int(raw.get("relative_port_id", 1), 1 << 16)
    return Registration(initiator, _str(raw.get("target_port"), optional=True), key, port)


def _reservation(raw: object, regs: tuple[Registration, ...]) -> Reservation | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ValueError("a reservation must be an object or null")
    try:
        rtype = PrType(_int(raw.get("type"), 256))
    except ValueError as err:
        raise ValueError(f"unknown reservation type {raw.get('type')!r}") from err
    initiator = _str(raw.get("initiator_port"))
    holder = (initiator or "", _str(raw.get("target_port"), optional=True))
    if not any(r.ident == holder for r in regs):
        raise ValueError("the reservation holder is not registered")
    return Reservation(rtype, holder)


# ---- PERSISTENT RESERVE OUT service actions (SPC-4 §5.13.5-5.13.11) -------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    state: PrState
    #: unit attentions to establish: (registration whose nexuses get it, reason)
    attentions: tuple[tuple[Registration, SenseReason], ...] = ()
    #: registrations removed by PREEMPT (AND ABORT): their tasks are the ones to abort
    preempted: tuple[Registration, ...] = ()


@dataclass(frozen=True, slots=True)
class Request:
    """The fields of one PERSISTENT RESERVE OUT command that the service actions use."""

    nexus: Nexus
    key: int = 0  # RESERVATION KEY
    sa_key: int = 0  # SERVICE ACTION RESERVATION KEY
    type: PrType | None = None
    aptpl: bool = False
    all_tg_pt: bool = False


def _bump(state: PrState, **changes: object) -> PrState:
    return replace(state, generation=(state.generation + 1) % GENERATION_MODULUS, **changes)  # type: ignore[arg-type]


def _own(state: PrState, req: Request) -> Registration:
    """The issuing nexus's registration; RESERVATION CONFLICT unless RESERVATION KEY matches it."""
    reg = state.registration_of(req.nexus)
    if reg is None or reg.key != req.key:
        raise ReservationConflict
    return reg


def register(state: PrState, req: Request, *, ignore_key: bool) -> Outcome:
    """REGISTER (§5.13.5.2) and REGISTER AND IGNORE EXISTING KEY (§5.13.5.3)."""
    reg = state.registration_of(req.nexus)
    if reg is None:
        if not ignore_key and req.key != 0:
            raise ReservationConflict
        if req.sa_key == 0:
            return Outcome(state)  # unregistered nexus, key 0: nothing to do, no generation bump
        return Outcome(_bump(state, registrations=(*state.registrations, _new(state, req)), aptpl=req.aptpl))
    if not ignore_key and req.key != reg.key:
        raise ReservationConflict
    if req.sa_key == 0:
        return _unregister(state, reg, req.aptpl)
    regs = tuple(replace(r, key=req.sa_key) if r is reg else r for r in state.registrations)
    return Outcome(_bump(state, registrations=regs, aptpl=req.aptpl))


def _new(state: PrState, req: Request) -> Registration:
    if len(state.registrations) >= MAX_REGISTRATIONS:
        raise CheckCondition(SenseReason.INSUFFICIENT_REGISTRATION_RESOURCES)
    nexus = req.nexus
    port = None if req.all_tg_pt else nexus.target_port
    return Registration(nexus.initiator_port, port, req.sa_key, nexus.relative_port_id)


def _unregister(state: PrState, reg: Registration, aptpl: bool) -> Outcome:
    """Remove `reg`; a holder leaving releases the reservation (§5.13.11.2.2), and for the
    registrants-only types the remaining registrants learn of it (RESERVATIONS RELEASED)."""
    remaining = tuple(r for r in state.registrations if r is not reg)
    res = state.reservation
    attentions: tuple[tuple[Registration, SenseReason], ...] = ()
    if res is not None and (not remaining if res.type.all_registrants else res.holder == reg.ident):
        if res.type in (PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY, PrType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY):
            attentions = tuple((r, SenseReason.RESERVATIONS_RELEASED) for r in remaining)
        res = None
    return Outcome(_bump(state, registrations=remaining, reservation=res, aptpl=aptpl), attentions)


def reserve(state: PrState, req: Request) -> Outcome:
    """RESERVE (§5.13.9): a registered nexus creates the reservation, or re-reserves as holder
    with the same type (no change); anything else is a RESERVATION CONFLICT."""
    reg = _own(state, req)
    assert req.type is not None
    res = state.reservation
    if res is None:
        return Outcome(replace(state, reservation=Reservation(req.type, reg.ident)))
    if state.is_holder(req.nexus) and res.type == req.type:
        return Outcome(state)
    raise ReservationConflict


def release(state: PrState, req: Request) -> Outcome:
    """RELEASE (§5.13.11.2): only the holder releases; a different TYPE is INVALID RELEASE OF
    PERSISTENT RESERVATION; releasing an RO/AR type tells the other registrants."""
    _own(state, req)
    res = state.reservation
    if res is None or not state.is_holder(req.nexus):
        return Outcome(state)
    if res.type != req.type:
        raise CheckCondition(SenseReason.INVALID_RELEASE_OF_PERSISTENT_RESERVATION)
    attentions: tuple[tuple[Registration, SenseReason], ...] = ()
    if res.type.registrants:
        attentions = _others(state, req.nexus, SenseReason.RESERVATIONS_RELEASED)
    return Outcome(replace(state, reservation=None), attentions)


def _others(state: PrState, nexus: Nexus, reason: SenseReason) -> tuple[tuple[Registration, SenseReason], ...]:
    own = state.registration_of(nexus)
    return tuple((r, reason) for r in state.registrations if r is not own)


def clear(state: PrState, req: Request) -> Outcome:
    """CLEAR (§5.13.11.3): every registration and the reservation go; the others are told
    RESERVATIONS PREEMPTED."""
    _own(state, req)
    attentions = _others(state, req.nexus, SenseReason.RESERVATIONS_PREEMPTED)
    return Outcome(_bump(state, registrations=(), reservation=None), attentions)


def preempt(state: PrState, req: Request) -> Outcome:
    """PREEMPT / PREEMPT AND ABORT (§5.13.11.4)."""
    own = _own(state, req)
    assert req.type is not None
    res = state.reservation
    takes_reservation = res is not None and (
        req.sa_key == 0 if res.type.all_registrants else req.sa_key == state.holder_key()
    )
    if not takes_reservation:
        return _preempt_registrations(state, own, req)
    assert res is not None
    if res.type.all_registrants:
        victims = tuple(r for r in state.registrations if r is not own)
    else:
        victims = tuple(r for r in state.registrations if r.key == req.sa_key and r is not own)
    remaining = tuple(r for r in state.registrations if r not in victims)
    attentions = [(r, SenseReason.REGISTRATIONS_PREEMPTED) for r in victims]
    if res.type != req.type:
        attentions += [(r, SenseReason.RESERVATIONS_RELEASED) for r in remaining if r is not own]
    new = _bump(state, registrations=remaining, reservation=Reservation(req.type, own.ident))
    return Outcome(new, tuple(attentions), victims)


def _preempt_registrations(state: PrState, own: Registration, req: Request) -> Outcome:
    """PREEMPT that does not take the reservation: remove the registrations with SERVICE ACTION
    RESERVATION KEY (§5.13.11.4.3). A zero key is INVALID FIELD IN PARAMETER LIST; a key that
    nobody holds is a RESERVATION CONFLICT."""
    if req.sa_key == 0:
        raise invalid_param(SARK_OFFSET)
    if not any(r.key == req.sa_key for r in state.registrations):
        raise ReservationConflict
    victims = tuple(r for r in state.registrations if r.key == req.sa_key and r is not own)
    remaining = tuple(r for r in state.registrations if r not in victims)
    # the holder is never a victim here: its key would have taken the reservation
    attentions = tuple((r, SenseReason.REGISTRATIONS_PREEMPTED) for r in victims)
    return Outcome(_bump(state, registrations=remaining), attentions, victims)
