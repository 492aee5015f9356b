"""Logical-unit state: identity (what INQUIRY reports), unit attentions per I_T nexus, the
SPC-2 RESERVE/RELEASE reservation, and the changeable mode parameters.

A `LogicalUnit` wraps one extent's `Backend`. `execute()` may run in several worker threads at
once, so every mutation of the state here happens under `_state_lock` (short, never held during
I/O); `lock` is the separate, longer lock held around commands that must be atomic: COMPARE
AND WRITE takes it for its read-compare-write (SBC-4 §5.3), so it is atomic against other
COMPARE AND WRITEs (what ATS locking needs); plain WRITEs do not take it.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

from ..storage.base import Backend
from .sense import SenseReason
from .types import Nexus

#: hex digits of an NAA 6 (IEEE Registered Extended) designator, 16 bytes (SPC-4 §7.8.6.6.4):
#: FreeNAS's "0x6589cfc000000" + 19 hex digits (6 = NAA type, 589cfc = iXsystems' OUI)
NAA_REGISTERED_EXTENDED_HEX_DIGITS = 32
#: an NAA 5/IEEE registered designator is 8 bytes (SPC-4 §7.8.6.6.3)
NAA_REGISTERED_HEX_DIGITS = 16
#: at most this many unit attentions wait per nexus; older ones are dropped first (SAM-5 §5.14:
#: the device server may report the most recent/important ones only). Unit: conditions.
MAX_PENDING_UNIT_ATTENTIONS = 16


@dataclass
class LuIdentity:
    serial: str  # VPD 0x80 UNIT SERIAL NUMBER
    naa: str  # "0x6589cfc000000" + 19 hex digits (NAA 6, 16 bytes) or 16 hex digits (8 bytes)
    vendor: str = "PYSCSI"  # T10 VENDOR IDENTIFICATION, 8 ASCII chars padded
    product: str = "iSCSI Disk"  # PRODUCT IDENTIFICATION, 16 chars padded
    revision: str = "0100"  # PRODUCT REVISION LEVEL, 4 chars
    rpm: int = 1  # VPD 0xB1 MEDIUM ROTATION RATE: 0 unknown, 1 non-rotating, else rpm
    physical_block_exponent: int = 0  # READ CAPACITY(16) LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT
    read_only: bool = False  # writes -> DATA PROTECT / WRITE PROTECTED
    thin: bool = False  # advertise thin provisioning only if backend.supports_unmap
    insecure_tpc: bool = True  # for EXTENDED COPY, which is not implemented yet
    #: FreeNAS "Xen initiator compat mode": FreeNAS writes ctl's device-id as product + serial
    #: padded to 31 characters, and skips the padding when xen is set. We do the same in the
    #: T10 vendor ID designator of VPD page 0x83 (spec Part B, ctl.conf "device-id").
    xen: bool = False
    #: thin-provisioning soft threshold (%); not acted on yet: needs free-space data from storage
    avail_threshold: int | None = None

    def naa_bytes(self) -> bytes | None:
        """The NAA designator (SPC-4 §7.8.6.6): 16 bytes from 32 hex digits (NAA 6, IEEE
        registered extended) or 8 bytes from 16 hex digits (NAA 5); None when `naa` is neither,
        and VPD page 0x83 then carries no NAA designator rather than a made-up one."""
        digits = self.naa.strip().lower().removeprefix("0x")
        if len(digits) not in (NAA_REGISTERED_EXTENDED_HEX_DIGITS, NAA_REGISTERED_HEX_DIGITS):
            return None
        try:
            return bytes.fromhex(digits)
        except ValueError:
            return None


@dataclass
class ModeState:
    """The changeable mode parameters (SPC-4 §7.5, SBC-4 §6.5)."""

    wce: bool = True  # Caching page WCE: writes may sit in the page cache until a flush
    d_sense: bool = False  # Control page D_SENSE: descriptor-format sense data
    swp: bool = False  # Control page SWP: software write protect


@dataclass
class _NexusState:
    unit_attentions: deque[SenseReason] = field(default_factory=deque)


class LogicalUnit:
    """One LU: a backend, its identity and the SCSI state the target keeps for it."""

    def __init__(self, backend: Backend, identity: LuIdentity) -> None:
        self.backend = backend
        self.identity = identity
        self.lock = threading.Lock()
        self.mode = ModeState()
        #: holder of an SPC-2 RESERVE(6/10) reservation (SPC-2 §7.21), None if not reserved
        self.reserved_by: Nexus | None = None
        #: PREVENT ALLOW MEDIUM REMOVAL state per nexus (SBC-4 §5.13); nothing is removable
        self.prevent: set[Nexus] = set()
        self._state_lock = threading.Lock()
        self._nexuses: dict[Nexus, _NexusState] = {}

    # ---- capability ---------------------------------------------------------------------

    @property
    def write_protected(self) -> bool:
        return self.identity.read_only or self.backend.read_only or self.mode.swp

    @property
    def thin(self) -> bool:
        """Thin provisioning is advertised only when configured and the backend deallocates."""
        return self.identity.thin and self.backend.supports_unmap

    # ---- unit attentions (SAM-5 §5.14) --------------------------------------------------

    def seen(self, nexus: Nexus) -> None:
        """Record that `nexus` uses this LU, so that later unit attentions reach it.

        A nexus first seen after an event starts without its UA: what it sees is already the
        state after the event.
        """
        if nexus not in self._nexuses:
            with self._state_lock:
                self._nexuses.setdefault(nexus, _NexusState())

    def add_unit_attention(self, reason: SenseReason, *, except_nexus: Nexus | None = None) -> None:
        """Queue a unit attention for every nexus that has used this LU (but `except_nexus`)."""
        with self._state_lock:
            for nexus, state in self._nexuses.items():
                if nexus == except_nexus:
                    continue
                queue = state.unit_attentions
                if reason in queue:
                    continue
                if len(queue) >= MAX_PENDING_UNIT_ATTENTIONS:
                    queue.popleft()
                queue.append(reason)

    def pop_unit_attention(self, nexus: Nexus) -> SenseReason | None:
        """Take the oldest pending unit attention of `nexus` (reporting clears it, SAM-5 §5.14)."""
        with self._state_lock:
            state = self._nexuses.get(nexus)
            if state is None or not state.unit_attentions:
                return None
            return state.unit_attentions.popleft()

    def clear_unit_attention(self, nexus: Nexus, reason: SenseReason) -> None:
        with self._state_lock:
            state = self._nexuses.get(nexus)
            if state is not None and reason in state.unit_attentions:
                state.unit_attentions.remove(reason)

    def pending_unit_attentions(self, nexus: Nexus) -> list[SenseReason]:
        with self._state_lock:
            state = self._nexuses.get(nexus)
            return list(state.unit_attentions) if state else []

    def capacity_changed(self) -> None:
        """The extent was resized: CAPACITY DATA HAS CHANGED to every nexus (SBC-4 §4.6)."""
        self.add_unit_attention(SenseReason.CAPACITY_DATA_CHANGED)

    # ---- resets and nexus loss ---------------------------------------------------------

    def reset(self, nexus: Nexus | None = None) -> None:
        """LOGICAL UNIT RESET (SAM-5 §7.7): release RESERVE reservations, forget PREVENT state,
        UA BUS DEVICE RESET FUNCTION OCCURRED (29/03) for every other nexus."""
        with self._state_lock:
            self.reserved_by = None
            self.prevent.clear()
        self.add_unit_attention(SenseReason.BUS_DEVICE_RESET, except_nexus=nexus)

    def nexus_gone(self, nexus: Nexus) -> None:
        """The I_T nexus ended: its unit attentions, its RESERVE reservation (SPC-2 §5.5.1: an
        I_T nexus loss releases it) and its PREVENT state go; PR registrations stay."""
        with self._state_lock:
            self._nexuses.pop(nexus, None)
            self.prevent.discard(nexus)
            if self.reserved_by == nexus:
                self.reserved_by = None

    def set_prevent(self, nexus: Nexus, prevent: bool) -> None:
        """PREVENT ALLOW MEDIUM REMOVAL state of one nexus (SBC-4 §5.13)."""
        with self._state_lock:
            if prevent:
                self.prevent.add(nexus)
            else:
                self.prevent.discard(nexus)

    # ---- SPC-2 reservations -------------------------------------------------------------

    def reserve(self, nexus: Nexus) -> bool:
        """RESERVE: True if `nexus` now holds the LU (re-reserving is allowed, SPC-2 §7.21.2)."""
        with self._state_lock:
            if self.reserved_by is not None and self.reserved_by != nexus:
                return False
            self.reserved_by = nexus
            return True

    def release(self, nexus: Nexus) -> None:
        """RELEASE: only the holder's release takes effect; others get GOOD (SPC-2 §7.17.1)."""
        with self._state_lock:
            if self.reserved_by == nexus:
                self.reserved_by = None

    def conflicts(self, nexus: Nexus) -> bool:
        held = self.reserved_by
        return held is not None and held != nexus
