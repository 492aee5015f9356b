"""The live session registry: TSIH allocation, session reinstatement, and lookups for the API.

RFC 7143 §6.3.1 (ISID/TSIH table, target-rules.md §1.3): a login with TSIH 0 and the ISID of an
existing session from the same initiator to the same target reinstates it (the old session is
ended); a non-zero TSIH that we do not know is "session does not exist" (0x020a). We negotiate
MaxConnections=1, so a second connection to an existing session is "too many connections"
(0x0206).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ..protocol.authority import LoginRefused

SESSION_DOES_NOT_EXIST = LoginRefused(2, 0x0A, "session does not exist")
TOO_MANY_CONNECTIONS = LoginRefused(2, 0x06, "too many connections")
OUT_OF_RESOURCES = LoginRefused(3, 0x02, "out of resources")

#: TSIH is 16 bits and 0 is reserved (RFC 7143 §11.12.6)
MAX_TSIH = 0xFFFF


@dataclass(eq=False)
class SessionRecord:
    tsih: int
    initiator: str
    isid: int
    target: str | None  # iqn, None for discovery
    #: set when the connection handler attaches; calling it ends the session's connection
    terminate: Callable[[str], None] | None = None
    #: the handler, for statistics (duck-typed: server.connection.ConnectionHandler)
    handler: object | None = None
    #: the handler of the session this one reinstated: the new login completes only once it has
    #: ended (RFC 7143 §6.3.5)
    replaces: object | None = None
    extra: dict[str, object] = field(default_factory=dict)


class SessionRegistry:
    def __init__(self) -> None:
        self._by_tsih: dict[int, SessionRecord] = {}
        self._tsih_counter = itertools.count(1)

    def __iter__(self) -> Iterator[SessionRecord]:
        return iter(list(self._by_tsih.values()))

    def __len__(self) -> int:
        return len(self._by_tsih)

    def _allocate_tsih(self) -> int | None:
        for _ in range(MAX_TSIH):
            tsih = next(self._tsih_counter) % (MAX_TSIH + 1)
            if tsih and tsih not in self._by_tsih:
                return tsih
        return None

    def login(self, initiator: str, isid: int, target: str | None, tsih: int) -> int | LoginRefused:
        if tsih:
            return TOO_MANY_CONNECTIONS if tsih in self._by_tsih else SESSION_DOES_NOT_EXIST
        key = (initiator.lower(), isid, (target or "").lower())
        replaced: object | None = None
        for rec in list(self._by_tsih.values()):
            if (rec.initiator.lower(), rec.isid, (rec.target or "").lower()) == key:
                # session reinstatement (RFC 7143 §6.3.5): end the old session first
                self.remove(rec.tsih)
                replaced = rec.handler
                if rec.terminate is not None:
                    rec.terminate("session reinstated")
        new = self._allocate_tsih()
        if new is None:
            return OUT_OF_RESOURCES
        self._by_tsih[new] = SessionRecord(new, initiator, isid, target, replaces=replaced)
        return new

    def attach(self, tsih: int, terminate: Callable[[str], None], handler: object) -> SessionRecord | None:
        rec = self._by_tsih.get(tsih)
        if rec is not None:
            rec.terminate = terminate
            rec.handler = handler
        return rec

    def remove(self, tsih: int) -> None:
        self._by_tsih.pop(tsih, None)

    def get(self, tsih: int) -> SessionRecord | None:
        return self._by_tsih.get(tsih)
