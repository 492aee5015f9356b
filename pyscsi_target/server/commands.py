"""The SCSI commands of one connection that must wait, and their answers (docs/design.md "SCSI
execution on the event loop, blocking work in threads").

`ConnectionHandler` runs each command inline with `scsi.execute(nowait=True)`; one that would wait
(`storage.WouldBlock`) comes here and runs again in the connection's `WorkerPool`. Its result comes
back in the trio thread, outside any task, and is answered unless the command was ended meanwhile
(a Logout Request, `terminate()`, the end of the connection: ended tasks are not answered, RFC 7143
§6.5); what a command started still happens:
- `ScsiResult.preempted` (PREEMPT AND ABORT): the preempted nexuses' tasks are aborted before
  the command's status goes out (SPC-4 §5.13.11.2.5);
- `ScsiResult.final` (SANITIZE with IMMED=0): the status comes when the background operation (run
  by the service, `LuHost.run_background`) has ended; the wait for it is a job of the same pool,
  not counted as running, so that neither a logout nor the end of the connection waits for it.

A command on an asynchronous backend (Ceph RBD, issue #15) comes here too, without a thread:
`start_pending` starts its I/O, the backend's completion (on the storage's own thread) is handed
to the trio loop with `TrioToken.run_sync_soon`, and the command's result is made and answered
there, as a worker's is.

`running` / `drained()` count the commands in worker threads and those whose I/O is pending:
they cannot be interrupted, so a Logout Response and the end of the connection wait for them.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping

import outcome
import trio

from .. import scsi
from ..protocol import Connection
from ..scsi.lu import LogicalUnit
from ..scsi.types import Pending, ScsiRequest, ScsiResult
from .workers import WorkerPool

log = logging.getLogger("pyscsi_target.connection")

Preempted = tuple[tuple[str, str | None], ...]


class BlockingCommands:
    """Worker-thread commands of one connection. Every callback runs in the trio thread:
    `may_answer()` says whether answers are still wanted, `answered()` wakes the sender,
    `abort_preempted(preempted, lun)` aborts other nexuses' tasks, `failed(exc)` ends the
    connection."""

    def __init__(self, conn: Connection, name: str, *, may_answer: Callable[[], bool],
                 answered: Callable[[], None], abort_preempted: Callable[[Preempted, int], None],
                 failed: Callable[[BaseException], None],
                 count: Callable[[ScsiRequest, ScsiResult, int], None]) -> None:
        self._conn = conn
        self._name = name
        self._may_answer = may_answer
        self._answered = answered
        self._abort_preempted = abort_preempted
        self._failed = failed
        self._count = count
        #: commands running in worker threads, and an event set whenever there are none
        self.running = 0
        self._idle = trio.Event()
        self._idle.set()
        #: the connection's worker threads (started with the first command that must wait)
        self._workers: WorkerPool | None = None

    def start(self, req: ScsiRequest, luns: Mapping[int, LogicalUnit], t0: int) -> None:
        """Run the command in this connection's worker threads (workers.py: a queue put, not a
        trio.to_thread call per command); `_done` gets its result and has it counted (`count`,
        with `t0`, the `perf_counter_ns()` of its arrival)."""
        self.running += 1
        if self.running == 1:
            self._idle = trio.Event()
        if self._workers is None:
            self._workers = WorkerPool(name=self._name)
        self._workers.submit(scsi.execute, (req, luns), functools.partial(self._done, req, t0))

    def start_pending(self, req: ScsiRequest, pending: Pending, t0: int) -> None:
        """Start `req`'s asynchronous I/O; its completion comes back to the trio thread (`_done`,
        which counts it with `t0`). Called in the trio thread."""
        self.running += 1
        if self.running == 1:
            self._idle = trio.Event()
        token = trio.lowlevel.current_trio_token()

        def completed(outcome_: object) -> None:  # on the storage's thread: hand over, nothing else
            token.run_sync_soon(self._pending_done, req, pending, t0, outcome_)

        pending.start(completed)

    def _pending_done(self, req: ScsiRequest, pending: Pending, t0: int, outcome_: object) -> None:
        self._done(req, t0, outcome.capture(pending.finish, outcome_))

    async def drained(self) -> None:
        """Returns once no command runs in a worker thread."""
        await self._idle.wait()

    def close(self) -> None:
        """The connection has ended (and drained): the threads end after their queued jobs."""
        if self._workers is not None:
            self._workers.close()

    def _done(self, req: ScsiRequest, t0: int, result: outcome.Outcome[ScsiResult]) -> None:
        """A worker finished `req`. Called in the trio thread outside any task (WorkerPool), where
        an exception would be a TrioInternalError: whatever fails here ends this connection."""
        self.running -= 1
        if not self.running:
            self._idle.set()
        try:
            res = result.unwrap()
            self._count(req, res, t0)  # in the trio thread: the counters need no lock
            self._answer(req, res)
        except Exception as exc:  # what a task would have raised into the connection's nursery
            self._failed(exc)

    def _answer(self, req: ScsiRequest, res: ScsiResult) -> None:
        answer = self._may_answer()
        if res.final is not None:
            # SANITIZE with IMMED=0: the operation outlives this command, resets, aborts, logout
            # and this connection (SBC-4 §4.11.2); the status comes at its end
            if answer and self._workers is not None:
                self._workers.submit(res.final, (), functools.partial(self._final_done, req))
            return
        if res.preempted:
            self._abort_preempted(res.preempted, req.lun)
        if answer:
            self._send(req, res)

    def _final_done(self, req: ScsiRequest, result: outcome.Outcome[ScsiResult]) -> None:
        """The background operation of `req` ended: its status, unless the command was ended."""
        try:
            res = result.unwrap()
            if self._may_answer():
                self._send(req, res)
        except Exception as exc:  # called outside any task (WorkerPool): see _done
            self._failed(exc)

    def _send(self, req: ScsiRequest, res: ScsiResult) -> None:
        self._conn.send_scsi_response(req.task_tag, res.status, res.data, res.sense, res.transfer_length)
        self._answered()
