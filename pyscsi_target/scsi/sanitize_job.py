"""A sanitize operation in the background (SBC-4 §4.11.2): the job that the SANITIZE handler
(scsi/sanitize.py) records on its logical unit, the rate it runs at, its progress indication, and
the NOT READY / SANITIZE IN PROGRESS condition that carries that progress (SPC-4 §4.5.2.4.4).

The SCSI core has no threads: the handler validates the command, records a `SanitizeJob` with
`LogicalUnit.start_sanitize()` and hands the operation to its host,
`host.run_background(lu.run_sanitize, job.stop)` (scsi/host.py): the fabric runs it in a thread it
owns, one that outlives the command, resets, aborts, logout and the connection (SBC-4 §4.11.2: a
sanitize operation continues after all of them). An IMMED=0 command's result carries
`final=SanitizeJob.wait`, blocking: the SANITIZE command's status once the operation ended (SBC-4
§5.30.1); with IMMED=1 the result itself is the status, sent at once.

`stop()` is the fabric's, not the initiator's: it ends the operation at its next step when the
server shuts down or closes the LU, leaving the LU in sanitize failure mode (the medium is not
sanitized).
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable, Iterator

from .sense import CheckCondition, SenseReason, build_sense
from .types import ScsiResult

#: bytes per second a sanitize operation writes (OVERWRITE) or deallocates (BLOCK ERASE) at most:
#: 32 MiB/s, so that a sanitize does not starve the other LUs that share the disk, nor the event
#: loop, of I/O; a 256 MiB LU takes 8 s and 1 GiB 32 s, as real media take their time (the
#: operation runs in the background, SBC-4 §4.11.2, and REQUEST SENSE reports its progress)
SANITIZE_BYTES_PER_SECOND = 32 << 20
#: bytes a sanitize operation writes or deallocates per step: the granularity of its progress
#: indication and of its rate limit (1 MiB: one backend call, bounded memory for a pattern fill)
SANITIZE_CHUNK_BYTES = 1 << 20
#: the whole operation in PROGRESS INDICATION units: the field is the numerator of a fraction of
#: 65536 (SPC-4 §4.5.2.4.4)
PROGRESS_ONE = 1 << 16
#: sense-key-specific byte 15: SKSV, the field is valid (SPC-4 §4.5.2.4.1)
SKSV = 0x80

#: the operation's I/O, one chunk per step: each `next()` writes or deallocates a chunk and
#: returns its size in bytes
Steps = Iterator[int]


class SanitizeStopped(Exception):
    """The fabric stopped the operation before its end (`SanitizeJob.stop`)."""


class SanitizeJob:
    """One sanitize operation: its remaining I/O, how much of it is done, and its outcome."""

    def __init__(self, steps: Steps, total_bytes: int, *, ause: bool, immed: bool,
                 transfer_length: int | None) -> None:
        self._steps = steps
        self.total_bytes = total_bytes
        #: AUSE: a failure may be left with EXIT FAILURE MODE (SBC-4 §5.30.1)
        self.ause = ause
        #: IMMED: status was returned when the command was validated (SBC-4 §5.30.1)
        self.immed = immed
        #: the SANITIZE command's parameter list length, for the transport's residuals
        self.transfer_length = transfer_length
        self.done_bytes = 0
        self.started = False
        self.result: ScsiResult | None = None
        self._ended = threading.Event()
        self._stopped = threading.Event()

    def progress(self) -> int:
        """PROGRESS INDICATION (SPC-4 §4.5.2.4.4): the fraction done, in 65536ths; 65535 at most
        while the operation runs (65536 would not fit the field, and it is not done yet)."""
        if self.total_bytes <= 0:
            return 0
        return min(self.done_bytes * PROGRESS_ONE // self.total_bytes, PROGRESS_ONE - 1)

    def run(self, clock: Callable[[], float], sleep: Callable[[float], None],
            rate: float = SANITIZE_BYTES_PER_SECOND) -> None:
        """Do every step, no faster than `rate` bytes/s: after each step wait until the bytes done
        so far are due. Raises what the backend raises (StorageError), or SanitizeStopped when
        `stop()` was called before a step."""
        start = clock()
        for nbytes in self._steps:
            if self._stopped.is_set():
                raise SanitizeStopped
            self.done_bytes += nbytes
            ahead = start + self.done_bytes / rate - clock()
            if ahead > 0:
                sleep(ahead)

    def pause(self, seconds: float) -> None:
        """Wait `seconds` while the operation is ahead of its rate; `stop()` ends the wait."""
        self._stopped.wait(seconds)

    def stop(self) -> None:
        """Thread-safe: end the operation at its next step (the server shuts down or closes the
        LU); a job not started yet ends as soon as it starts."""
        self._stopped.set()

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    def end(self, result: ScsiResult) -> None:
        """The operation ended: `result` is what an IMMED=0 SANITIZE command answers."""
        self.result = result
        self._ended.set()

    def wait(self) -> ScsiResult:
        """Block until the operation ended; the SANITIZE command's final status (IMMED=0)."""
        self._ended.wait()
        assert self.result is not None
        return self.result


def progress_sks(progress: int) -> bytes:
    """Sense-key-specific bytes 15-17 with a PROGRESS INDICATION (SPC-4 §4.5.2.4.4)."""
    return struct.pack(">BH", SKSV, progress & 0xFFFF)


class SanitizeInProgress(CheckCondition):
    """NOT READY, SANITIZE IN PROGRESS (02/04/1B) with the progress indication in the
    sense-key-specific field (SBC-4 §4.11.2, SPC-4 §4.5.2.4.4)."""

    def __init__(self, progress: int) -> None:
        super().__init__(SenseReason.SANITIZE_IN_PROGRESS)
        self.progress = progress

    def sense(self, descriptor: bool = False) -> bytes:
        return build_sense(self.reason, descriptor=descriptor, sks=progress_sks(self.progress))
