"""A Hypothesis stateful test of persistent reservations across three I_T nexuses (two share an
initiator port through two target ports, so ALL_TG_PT matters) against a small reference model
written from SPC-4 §5.13 independently of pr_state.py.

Every PERSISTENT RESERVE OUT goes through `execute()`, so unit attentions come first exactly as
for an initiator; READ(10)/WRITE(10) check the conflict table, READ KEYS / READ RESERVATION the
reported state, and after every step the LU's registrations, reservation, generation and
pending unit attentions must equal the model's.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from pyscsi_target.scsi import Nexus, ScsiResult, SenseReason
from pyscsi_target.scsi.types import CHECK_CONDITION, GOOD, RESERVATION_CONFLICT
from pyscsi_target.storage import MemoryBackend

from .prutil import (
    ALL_TG_PT,
    ALL_TYPES,
    CLEAR,
    EA,
    EA_AR,
    EA_RO,
    PREEMPT,
    REGISTER,
    REGISTER_AND_IGNORE,
    RELEASE,
    RESERVE,
    WE_AR,
    WE_RO,
    prin_cdb,
    prout,
)
from .util import NEXUS, OTHER, cdb10, connect, identity, new_lu, run, sense_of

ELSEWHERE = Nexus(NEXUS.initiator_port, "iqn.2005-10.org.freenas.ctl:t1,t,0x0002", relative_port_id=2)
NEXUSES = (NEXUS, OTHER, ELSEWHERE)
KEYS = st.sampled_from([0, 1, 2])
#: a RESERVATION KEY: None stands for "the one this nexus is registered with" (the usual case)
RKEYS = st.one_of(st.none(), st.none(), KEYS)
TYPES = st.sampled_from(ALL_TYPES)
PICK = st.sampled_from(NEXUSES)
AR = (WE_AR, EA_AR)
RO = (WE_RO, EA_RO)
EXCLUSIVE_ACCESS = (EA, EA_RO, EA_AR)
Ident = tuple[str, str | None]
CONFLICT = "conflict"
RELEASED = SenseReason.RESERVATIONS_RELEASED
PREEMPTED = SenseReason.RESERVATIONS_PREEMPTED
REG_PREEMPTED = SenseReason.REGISTRATIONS_PREEMPTED


@dataclass
class Model:
    """SPC-4 §5.13 for one LU: registrations by (initiator port, target port or None for all)."""

    regs: dict[Ident, int] = field(default_factory=dict)
    res: tuple[int, Ident] | None = None
    gen: int = 0
    ua: dict[Nexus, list[SenseReason]] = field(default_factory=lambda: {n: [] for n in NEXUSES})

    def reg_of(self, n: Nexus) -> Ident | None:
        for ident in ((n.initiator_port, n.target_port), (n.initiator_port, None)):
            if ident in self.regs:
                return ident
        return None

    def holds(self, n: Nexus) -> bool:
        mine = self.reg_of(n)
        return self.res is not None and mine is not None and (self.res[0] in AR or self.res[1] == mine)

    def conflicts(self, n: Nexus, write: bool) -> bool:
        if self.res is None or self.holds(n):
            return False
        if self.res[0] not in (1, 3) and self.reg_of(n) is not None:
            return False
        return write or self.res[0] in EXCLUSIVE_ACCESS

    def notify(self, idents: list[Ident], reason: SenseReason, issuer: Nexus) -> None:
        for ident in idents:
            for n in NEXUSES:
                covered = n.initiator_port == ident[0] and ident[1] in (None, n.target_port)
                if covered and n != issuer and reason not in self.ua[n]:
                    self.ua[n].append(reason)

    # each returns None (GOOD), CONFLICT, or the expected (key, asc, ascq)
    def register(self, n: Nexus, rk: int, sark: int, ignore: bool, all_tg: bool) -> object:
        mine = self.reg_of(n)
        if mine is None:
            if not ignore and rk != 0:
                return CONFLICT
            if sark:
                self.regs[(n.initiator_port, None if all_tg else n.target_port)] = sark
                self.gen += 1
            return None
        if not ignore and rk != self.regs[mine]:
            return CONFLICT
        self.gen += 1
        if sark:
            self.regs[mine] = sark
            return None
        del self.regs[mine]
        if self.res is not None and (not self.regs if self.res[0] in AR else self.res[1] == mine):
            if self.res[0] in RO:
                self.notify(list(self.regs), RELEASED, n)
            self.res = None
        return None

    def own(self, n: Nexus, rk: int) -> Ident | None:
        mine = self.reg_of(n)
        return mine if mine is not None and self.regs[mine] == rk else None

    def reserve(self, n: Nexus, rk: int, rtype: int) -> object:
        mine = self.own(n, rk)
        if mine is None:
            return CONFLICT
        if self.res is None:
            self.res = (rtype, mine)
            return None
        return None if self.holds(n) and self.res[0] == rtype else CONFLICT

    def release(self, n: Nexus, rk: int, rtype: int) -> object:
        mine = self.own(n, rk)
        if mine is None:
            return CONFLICT
        if self.res is None or not self.holds(n):
            return None
        if self.res[0] != rtype:
            return (0x05, 0x26, 0x04)
        if rtype not in (1, 3):
            self.notify([i for i in self.regs if i != mine], RELEASED, n)
        self.res = None
        return None

    def clear(self, n: Nexus, rk: int) -> object:
        mine = self.own(n, rk)
        if mine is None:
            return CONFLICT
        self.notify([i for i in self.regs if i != mine], PREEMPTED, n)
        self.regs, self.res = {}, None
        self.gen += 1
        return None

    def preempt(self, n: Nexus, rk: int, sark: int, rtype: int) -> object:
        mine = self.own(n, rk)
        if mine is None:
            return CONFLICT
        res = self.res
        if res is not None and res[0] in AR:
            takes = sark == 0
        else:
            takes = res is not None and sark == self.regs[res[1]]
        if not takes:
            if sark == 0:
                return (0x05, 0x26, 0x00)
            if sark not in self.regs.values():
                return CONFLICT
            victims = [i for i, k in self.regs.items() if k == sark and i != mine]
        elif res is not None and res[0] in AR:
            victims = [i for i in self.regs if i != mine]
        else:
            victims = [i for i, k in self.regs.items() if k == sark and i != mine]
        for victim in victims:
            del self.regs[victim]
        self.notify(victims, REG_PREEMPTED, n)
        if takes:
            assert res is not None
            if res[0] != rtype:
                self.notify([i for i in self.regs if i != mine], RELEASED, n)
            self.res = (rtype, mine)
        self.gen += 1
        return None


class PersistentReservations(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.lu = connect(new_lu(MemoryBackend(16), identity()), *NEXUSES)
        self.model = Model()

    @initialize(first=KEYS, second=KEYS, holder=PICK, rtype=st.one_of(st.none(), TYPES))
    def start_registered(self, first: int, second: int, holder: Nexus, rtype: int | None) -> None:
        """Start from a typical cluster state: nexuses registered, maybe one reservation."""
        self.register(NEXUS, 0, first, False, False)
        self.register(OTHER, 0, second, True, False)
        if rtype is not None:
            self.reserve(holder, None, rtype)

    def _expect(self, n: Nexus, res: ScsiResult, expected: object) -> None:
        if isinstance(expected, tuple):
            assert sense_of(res) == expected
        elif expected == CONFLICT:
            assert res.status == RESERVATION_CONFLICT
        else:
            assert res.status == GOOD, (res.status, res.sense and sense_of(res))

    def _unit_attention_first(self, n: Nexus, res: ScsiResult) -> bool:
        """A pending unit attention is what any of these commands gets first (SAM-5 §5.14)."""
        if not self.model.ua[n]:
            return False
        assert res.status == CHECK_CONDITION
        assert sense_of(res) == self.model.ua[n].pop(0).value
        return True

    def _key(self, n: Nexus, rk: int | None) -> int:
        mine = self.model.reg_of(n)
        return rk if rk is not None else (self.model.regs[mine] if mine is not None else 0)

    def _prout(self, n: Nexus, sa: int, expected_fn: Callable[[], object], **kw: int) -> None:
        res = prout(self.lu, sa, nexus=n, **kw)
        if self._unit_attention_first(n, res):
            return
        self._expect(n, res, expected_fn())

    @rule(n=PICK, key=RKEYS, sark=KEYS, ignore=st.booleans(), all_tg=st.booleans())
    def register(self, n: Nexus, key: int | None, sark: int, ignore: bool, all_tg: bool) -> None:
        rk = self._key(n, key)
        sa = REGISTER_AND_IGNORE if ignore else REGISTER
        flags = ALL_TG_PT if all_tg else 0
        self._prout(n, sa, lambda: self.model.register(n, rk, sark, ignore, all_tg), key=rk, sark=sark, flags=flags)

    @rule(n=PICK, key=RKEYS, rtype=TYPES)
    def reserve(self, n: Nexus, key: int | None, rtype: int) -> None:
        rk = self._key(n, key)
        self._prout(n, RESERVE, lambda: self.model.reserve(n, rk, rtype), key=rk, rtype=rtype)

    @rule(n=PICK, key=RKEYS, rtype=TYPES)
    def release(self, n: Nexus, key: int | None, rtype: int) -> None:
        rk = self._key(n, key)
        self._prout(n, RELEASE, lambda: self.model.release(n, rk, rtype), key=rk, rtype=rtype)

    @rule(n=PICK)
    def release_as_holder_would(self, n: Nexus) -> None:
        """RELEASE with this nexus's key and the reservation's own type (the usual RELEASE)."""
        rtype = self.model.res[0] if self.model.res is not None else 1
        self.release(n, None, rtype)

    @rule(n=PICK, key=RKEYS)
    def clear(self, n: Nexus, key: int | None) -> None:
        rk = self._key(n, key)
        self._prout(n, CLEAR, lambda: self.model.clear(n, rk), key=rk)

    @rule(n=PICK, key=RKEYS, sark=KEYS, rtype=TYPES)
    def preempt(self, n: Nexus, key: int | None, sark: int, rtype: int) -> None:
        rk = self._key(n, key)
        self._prout(n, PREEMPT, lambda: self.model.preempt(n, rk, sark, rtype), key=rk, sark=sark, rtype=rtype)

    @rule(n=PICK, write=st.booleans())
    def io(self, n: Nexus, write: bool) -> None:
        cdb = cdb10(0x2A if write else 0x28, 3, 1)
        res = run(self.lu, cdb, nexus=n, data=bytes(512) if write else None)
        if self._unit_attention_first(n, res):
            return
        expected = RESERVATION_CONFLICT if self.model.conflicts(n, write) else GOOD
        assert res.status == expected

    @rule(n=PICK)
    def read_keys_and_reservation(self, n: Nexus) -> None:
        res = run(self.lu, prin_cdb(0), nexus=n)
        if self._unit_attention_first(n, res):
            return
        keys = list(self.model.regs.values())
        assert bytes(res.data) == struct.pack(f">II{len(keys)}Q", self.model.gen, 8 * len(keys), *keys)
        data = bytes(run(self.lu, prin_cdb(1), nexus=n).data)
        if self.model.res is None:
            assert data == struct.pack(">II", self.model.gen, 0)
        else:
            rtype, holder = self.model.res
            key = 0 if rtype in AR else self.model.regs[holder]
            assert data[8:16] == struct.pack(">Q", key) and data[21] == rtype

    @invariant()
    def state_matches_the_model(self) -> None:
        pr = self.lu.pr
        assert [(r.ident, r.key) for r in pr.registrations] == list(self.model.regs.items())
        assert pr.generation == self.model.gen
        res = pr.reservation
        assert (None if res is None else (int(res.type), res.holder)) == self.model.res
        for n in NEXUSES:
            assert self.lu.pending_unit_attentions(n) == self.model.ua[n]


PersistentReservations.TestCase.settings = settings(max_examples=200, stateful_step_count=25, deadline=None)
TestPersistentReservations = PersistentReservations.TestCase
