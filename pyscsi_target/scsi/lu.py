"""Logical-unit state: identity (what INQUIRY reports), unit attentions per I_T nexus, the
SPC-2 RESERVE/RELEASE reservation, persistent reservations, the changeable mode parameters, held
EXTENDED COPY results, the sanitize state and the thin-provisioning soft thresholds.

A `LogicalUnit` wraps one extent's `Backend`. `execute()` may run in several worker threads at
once, so every mutation of the state here happens under `_state_lock` (short, never held during
I/O); `lock` is the separate, longer lock held around commands that must be atomic: COMPARE
AND WRITE (SBC-4 §5.3), ORWRITE and WRITE ATOMIC take it, so they are atomic against each other
(what ATS locking needs); plain WRITEs do not take it. A sanitize operation does not need it: while
it runs, every command that could touch the medium is refused (SANITIZE IN PROGRESS). `pr_lock`
serializes PERSISTENT RESERVE OUT (decide, persist, install); readers use the immutable `pr`
snapshot without a lock.

What the LU asks of the server goes through its `host` (`scsi.host.LuHost`, given at
construction): nexus liveness, LUs beyond the session for EXTENDED COPY, keeping persistent
reservations (APTPL), background work. What the server calls here: `pr_state()`/`load_pr_state()`
(plain JSON-able data), `check_provisioning_threshold()` (housekeeping), `pool_avail_threshold`
(the global soft threshold, provisioning.py), `clock` (monotonic seconds), `stop_sanitize()`
(before closing the backend) and `run_sanitize()` (blocking: the sanitize operation a SANITIZE
command recorded, handed to `host.run_background`; sanitize_job.py).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..storage.base import Backend, StorageError
from .host import LuHost
from .pr_state import PrState
from .provisioning import THRESHOLD_CHECK_INTERVAL_S, ThresholdMonitor, available_bytes
from .sanitize_job import SanitizeInProgress, SanitizeJob, SanitizeStopped
from .sense import SenseReason, build_sense
from .stats import IoCounters
from .types import CHECK_CONDITION, Nexus, ScsiResult

#: hex digits of an NAA 6 (IEEE Registered Extended) designator, 16 bytes (SPC-4 §7.8.6.6.4):
#: FreeNAS's "0x6589cfc000000" + 19 hex digits (6 = NAA type, 589cfc = iXsystems' OUI)
NAA_REGISTERED_EXTENDED_HEX_DIGITS = 32
#: an NAA 5/IEEE registered designator is 8 bytes (SPC-4 §7.8.6.6.3)
NAA_REGISTERED_HEX_DIGITS = 16
#: at most this many unit attentions wait per nexus; older ones are dropped first (SAM-5 §5.14:
#: the device server may report the most recent/important ones only). Unit: conditions.
MAX_PENDING_UNIT_ATTENTIONS = 16

log = logging.getLogger("pyscsi_target.scsi")


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
    #: FreeNAS "insecure_tpc" (CTL's LU option): an EXTENDED COPY that THIS LU receives may reach
    #: LUs of this server that its session cannot reach (found through `LuHost.find_lu`)
    insecure_tpc: bool = True
    #: FreeNAS "Xen initiator compat mode": FreeNAS writes ctl's device-id as product + serial
    #: padded to 31 characters, and skips the padding when xen is set. We do the same in the
    #: T10 vendor ID designator of VPD page 0x83 (spec Part B, ctl.conf "device-id").
    xen: bool = False
    #: thin-provisioning soft threshold: UA 38/07 when the space available to the LU drops below
    #: this % of its size (provisioning.py, issue #11 item 4)
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


@dataclass(frozen=True)
class CopyRecord:
    """What RECEIVE COPY RESULTS (COPY STATUS) reports for a finished EXTENDED COPY (SPC-4 §6.18.3)."""

    ok: bool
    segments: int
    transferred_bytes: int


@dataclass
class _NexusState:
    unit_attentions: deque[SenseReason] = field(default_factory=deque)
    #: held EXTENDED COPY results by LIST IDENTIFIER (LIST ID USAGE 00b), at most 256
    copies: dict[int, CopyRecord] = field(default_factory=dict)
    copies_running: set[int] = field(default_factory=set)


#: the sanitize state of an LU (SBC-4 §4.11): idle, running, or failed (until a sanitize
#: succeeds, or EXIT FAILURE MODE when the failed one allowed it with AUSE=1)
SANITIZE_IDLE, SANITIZE_RUNNING, SANITIZE_FAILED, SANITIZE_FAILED_AUSE = range(4)


class LogicalUnit:
    """One LU: a backend, its identity and the SCSI state the target keeps for it."""

    def __init__(self, backend: Backend, identity: LuIdentity, *, host: LuHost) -> None:
        self.backend = backend
        self.identity = identity
        #: the fabric serving this LU: what the core may ask of it (scsi/host.py)
        self.host = host
        self.lock = threading.Lock()
        self.mode = ModeState()
        #: holder of an SPC-2 RESERVE(6/10) reservation (SPC-2 §7.21), None if not reserved
        self.reserved_by: Nexus | None = None
        #: PREVENT ALLOW MEDIUM REMOVAL state per nexus (SBC-4 §5.13); nothing is removable
        self.prevent: set[Nexus] = set()
        self._state_lock = threading.Lock()
        self._nexuses: dict[Nexus, _NexusState] = {}
        #: persistent reservations (SPC-4 §5.13): an immutable snapshot, replaced under pr_lock
        self.pr = PrState()
        self.pr_lock = threading.Lock()
        #: why this LU cannot be served (None: it can): its storage was refused or could not be
        #: opened, or its persistent reservations could not be read. Such an LU stays in the LUN
        #: map and answers only INQUIRY, REPORT LUNS and REQUEST SENSE; everything else gets NOT
        #: READY, MANUAL INTERVENTION REQUIRED (core._ready_gate, issue #10 items 2 and 11).
        self.unavailable: str | None = None
        self.sanitize_state = SANITIZE_IDLE
        #: the sanitize operation running, or the last one (SBC-4 §4.11); see run_sanitize()
        self.sanitize_job: SanitizeJob | None = None
        self.clock: Callable[[], float] = time.monotonic
        #: the global `iscsi_pool_avail_threshold` (%), set by the server (provisioning.py)
        self.pool_avail_threshold: int | None = None
        self._avail = ThresholdMonitor(identity.avail_threshold)
        self._pool = ThresholdMonitor(None)
        self._space_lock = threading.Lock()
        #: clock() time from which the next write measures the space left (after_write)
        self._space_check_due = -math.inf
        #: tells the other servers of this LU's storage (gateways sharing an RBD image, issue #15)
        #: that it was reset; None when no other process serves it. Blocking: the fabric calls it
        #: in a worker thread after `reset()` and answers the reset once it returns. It never
        #: raises (the reset is done here whatever the others hear); they call `reset()` in turn.
        self.announce_reset: Callable[[], object] | None = None
        #: this LU's command counters (scsi/stats.py), counted by the transport that answers; they
        #: outlive the sessions that used it (the server moves them to a reopened LU of the extent)
        self.stats = IoCounters()

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

        A nexus new to the LU (a new login, or a login after the I_T nexus was lost) starts with
        POWER ON, RESET, OR BUS DEVICE RESET OCCURRED (29/00): for that nexus the LU has just
        come into existence (SAM-5 §5.14, §6.3.1), and the events before it are superseded by
        that one. libiscsi's login (iscsi_full_connect) and Linux's scan consume it with TEST UNIT
        READY; what the nexus sees afterwards is the state after those events.
        """
        if nexus not in self._nexuses:
            with self._state_lock:
                if nexus not in self._nexuses:
                    state = _NexusState()
                    state.unit_attentions.append(SenseReason.POWER_ON_RESET)
                    self._nexuses[nexus] = state

    def add_unit_attention(
        self,
        reason: SenseReason,
        *,
        except_nexus: Nexus | None = None,
        only: Callable[[Nexus], bool] | None = None,
    ) -> None:
        """Queue a unit attention for every nexus that has used this LU (but `except_nexus`),
        or only those for which `only(nexus)` is true."""
        with self._state_lock:
            for nexus, state in self._nexuses.items():
                if nexus == except_nexus or (only is not None and not only(nexus)):
                    continue
                queue = state.unit_attentions
                if reason in queue:
                    continue
                if len(queue) >= MAX_PENDING_UNIT_ATTENTIONS:
                    queue.popleft()
                queue.append(reason)

    def attend(self, nexus: Nexus, pop: bool) -> SenseReason | None:
        """`seen(nexus)`, then (with `pop`) `pop_unit_attention(nexus)`: what execute() asks of
        every command, in one dict lookup and without the lock when nothing is pending (issue
        #17: the data path's commands). Reading a deque's length is atomic under the GIL; a unit
        attention another thread adds meanwhile is reported to the next command, as it would be
        had that thread taken the lock a moment later."""
        state = self._nexuses.get(nexus)
        if state is None:
            self.seen(nexus)
        elif not state.unit_attentions:
            return None
        return self.pop_unit_attention(nexus) if pop else None

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
        """LOGICAL UNIT RESET (SAM-5 §6.3.3), also what the target resets do to each LU: release
        RESERVE reservations, forget PREVENT state, and a unit attention for every nexus, the one
        that asked for the reset (`nexus`) included (libiscsi's MultipathIO.Reset checks that each
        path sees one). The condition is POWER ON, RESET, OR BUS DEVICE RESET OCCURRED (29/00),
        the code SAM-5 allows for any reset, rather than the specific 29/03: initiators (libiscsi's
        RESERVE(6) retry among them) treat 29/00 as "a reset happened, carry on". Persistent
        reservations survive (SPC-4 §5.13.1), and so does a running sanitize operation (SBC-4
        §4.11.2). Thread-safe: another gateway's reset of a shared LU arrives on a storage thread
        (`announce_reset`)."""
        with self._state_lock:
            self.reserved_by = None
            self.prevent.clear()
        self.add_unit_attention(SenseReason.POWER_ON_RESET)

    def nexus_gone(self, nexus: Nexus) -> None:
        """The I_T nexus ended: its unit attentions, its RESERVE reservation (SPC-2 §5.5.1: an
        I_T nexus loss releases it) and its PREVENT state go; PR registrations stay."""
        with self._state_lock:
            self._nexuses.pop(nexus, None)  # with its held EXTENDED COPY results (SPC-4 §6.4.3)
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
        """True if another nexus holds an SPC-2 reservation. A holder whose connection has
        already ended (I_T nexus loss, SPC-2 §5.5.1) does not count, even when the end of its
        connection is still waiting to be processed: reservations conflict only with live
        holders."""
        held = self.reserved_by
        if held is None or held == nexus:
            return False
        if not self.host.nexus_alive(held):
            self.nexus_gone(held)
            return self.reserved_by is not None and self.reserved_by != nexus
        return True

    # ---- persistent reservations: plain data for APTPL (SPC-4 §5.13.5.4) --------------------

    def pr_state(self) -> dict[str, object]:
        """The persistent reservation state as JSON-able data (see PrState.to_json)."""
        return self.pr.to_json()

    def load_pr_state(self, data: Mapping[str, object]) -> None:
        """Install state saved through `host.save_pr_state` (at start-up); ValueError if it is
        malformed."""
        state = PrState.from_json(data)
        with self.pr_lock:
            self.pr = state

    # ---- held EXTENDED COPY results (SPC-4 §6.4.3.2, §6.18) ---------------------------------

    def copy_begin(self, nexus: Nexus, list_id: int) -> bool:
        """Mark LIST IDENTIFIER in use by `nexus`; False if a copy with it is still running."""
        with self._state_lock:
            state = self._nexuses.setdefault(nexus, _NexusState())
            if list_id in state.copies_running:
                return False
            state.copies_running.add(list_id)
            return True

    def copy_end(self, nexus: Nexus, list_id: int, record: CopyRecord | None) -> None:
        """The copy finished; hold `record` for RECEIVE COPY RESULTS unless it is None."""
        with self._state_lock:
            state = self._nexuses.get(nexus)
            if state is None:
                return
            state.copies_running.discard(list_id)
            if record is not None:
                state.copies[list_id] = record

    def copy_in_progress(self, nexus: Nexus, list_id: int) -> bool:
        with self._state_lock:
            state = self._nexuses.get(nexus)
            return state is not None and list_id in state.copies_running

    def copy_record(self, nexus: Nexus, list_id: int) -> CopyRecord | None:
        with self._state_lock:
            state = self._nexuses.get(nexus)
            return state.copies.get(list_id) if state else None

    # ---- sanitize (SBC-4 §4.11) --------------------------------------------------------------

    def start_sanitize(self, job: SanitizeJob) -> None:
        """Record `job` as the running sanitize operation: from now on SANITIZE IN PROGRESS. Two
        SANITIZE commands that passed execute()'s gate together: the second one is refused."""
        with self._state_lock:
            if self.sanitize_state == SANITIZE_RUNNING:
                raise SanitizeInProgress(self.sanitize_progress())
            self.sanitize_job = job
            self.sanitize_state = SANITIZE_RUNNING

    def run_sanitize(self, sleep: Callable[[float], None] | None = None) -> ScsiResult:
        """Blocking: run the recorded sanitize operation to its end at SANITIZE_BYTES_PER_SECOND,
        then flush (the sanitized medium is durable before the operation completes). Leaves the
        LU idle, or in sanitize failure mode when the backend failed (SBC-4 §4.11.4) or the fabric
        stopped it (`stop_sanitize`, SanitizeJob.stop), and returns what an IMMED=0 SANITIZE
        command answers. Nothing an initiator does (resets, aborts, nexus loss) stops it (SBC-4
        §4.11.2). `sleep` waits while the operation is ahead of its rate (default: the job's own
        pause, which `stop` cuts short)."""
        job = self.sanitize_job
        if job is None or job.started:
            raise RuntimeError("no sanitize operation waits to run")
        job.started = True
        try:
            job.run(self.clock, sleep or job.pause)
            self.backend.flush(0, 0)
        except BaseException as exc:  # StorageError, or worse: either way the medium is not sanitized
            self._end_sanitize(job, ok=False)
            if not isinstance(exc, (StorageError, SanitizeStopped)):
                raise
        else:
            self._end_sanitize(job, ok=True)
        self.check_provisioning_threshold()
        assert job.result is not None
        return job.result

    def stop_sanitize(self) -> None:
        """Blocking: stop the running sanitize operation at its next step and wait until it has
        ended (the server closes this LU's backend next). Bounded by one step (SANITIZE_CHUNK_BYTES
        of I/O): the host runs every recorded operation (LuHost.run_background), and a stopped one
        ends as soon as it runs."""
        job = self.sanitize_job
        if job is not None and not job.ended:
            job.stop()
            job.wait()

    def _end_sanitize(self, job: SanitizeJob, *, ok: bool) -> None:
        """Leave SANITIZE IN PROGRESS: idle, or failure mode (AUSE says which way out of it). A
        failed operation ends an IMMED=0 command with MEDIUM ERROR, SANITIZE COMMAND FAILED."""
        failed = SANITIZE_FAILED_AUSE if job.ause else SANITIZE_FAILED
        with self._state_lock:
            self.sanitize_state = SANITIZE_IDLE if ok else failed
        if ok:
            result = ScsiResult(transfer_length=job.transfer_length)
        else:
            sense = build_sense(SenseReason.SANITIZE_COMMAND_FAILED, descriptor=self.mode.d_sense)
            result = ScsiResult(status=CHECK_CONDITION, sense=sense, transfer_length=job.transfer_length)
        job.end(result)

    def sanitize_progress(self) -> int:
        """PROGRESS INDICATION of the running sanitize operation (SPC-4 §4.5.2.4.4), 0 if none."""
        job = self.sanitize_job
        return job.progress() if job is not None and self.sanitize_state == SANITIZE_RUNNING else 0

    def sanitize_sense(self, descriptor: bool) -> bytes | None:
        """What REQUEST SENSE reports about sanitize: NOT READY, SANITIZE IN PROGRESS with the
        progress while one runs (SBC-4 §4.11.2); MEDIUM ERROR, SANITIZE COMMAND FAILED in failure
        mode (§4.11.4); None otherwise."""
        if self.unavailable is not None:  # SPC-4 §6.39: the condition a command would report
            return build_sense(SenseReason.NOT_READY_MANUAL_INTERVENTION, descriptor=descriptor)
        state = self.sanitize_state
        if state == SANITIZE_RUNNING:
            return SanitizeInProgress(self.sanitize_progress()).sense(descriptor)
        if state in (SANITIZE_FAILED, SANITIZE_FAILED_AUSE):
            return build_sense(SenseReason.SANITIZE_COMMAND_FAILED, descriptor=descriptor)
        return None

    # ---- thin-provisioning soft thresholds (SBC-4 §4.7.3.7, issue #11 items 2 and 4) ----------

    def after_write(self) -> None:
        """Called by execute() after a command that changed the medium: measure the space left
        when it is due (provisioning.THRESHOLD_CHECK_INTERVAL_S). The common case is one clock
        read and one comparison."""
        if self.clock() >= self._space_check_due:
            self.check_provisioning_threshold()

    def check_provisioning_threshold(self) -> bool:
        """Measure now (unless another thread is measuring); True, and UA 38/07 to every nexus,
        when a threshold was just crossed. The thresholds are read from `identity` and
        `pool_avail_threshold` at each measurement, so a change applies without a reopen."""
        if not self._space_lock.acquire(blocking=False):
            return False
        try:
            self._space_check_due = self.clock() + THRESHOLD_CHECK_INTERVAL_S
            return self._measure_space()
        finally:
            self._space_lock.release()

    def _measure_space(self) -> bool:
        if self._avail.percent != self.identity.avail_threshold:
            self._avail = ThresholdMonitor(self.identity.avail_threshold)
        if self._pool.percent != self.pool_avail_threshold:
            self._pool = ThresholdMonitor(self.pool_avail_threshold)
        if not (self._avail.enabled or self._pool.enabled) or self.unavailable is not None:
            return False
        be = self.backend
        try:
            space = be.space()
            allocated = be.allocated_bytes() if self._avail.enabled and self.thin else None
        except StorageError:
            return False  # a failed measurement must not fail the write that triggered it
        fired = False
        if space is not None and self._pool.crossed(space.free_bytes, space.total_bytes):
            log.warning("LU %s: the file system holding it has %d of %d bytes free, below the pool "
                        "threshold of %d %%", self.identity.serial, space.free_bytes, space.total_bytes,
                        self._pool.percent)
            fired = True
        available = available_bytes(be.size_bytes, space, allocated)
        if available is not None and self._avail.crossed(available, be.size_bytes):
            log.warning("LU %s: %d of its %d bytes are available, below its threshold of %d %%",
                        self.identity.serial, available, be.size_bytes, self._avail.percent)
            fired = True
        if fired:
            self.add_unit_attention(SenseReason.THIN_PROVISIONING_SOFT_THRESHOLD_REACHED)
        return fired
