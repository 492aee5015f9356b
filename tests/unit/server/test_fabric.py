"""The server's host for the SCSI core (server/fabric.py): background work belongs to the nursery
it was bound to, from whichever thread it is started, and a cancelled nursery stops it and joins
its thread before it exits; with no nursery to run in, the work is stopped, then run."""

from __future__ import annotations

import threading

import trio

from pyscsi_target.server.fabric import ServerHost

#: seconds a test thread waits at most for an event that should come at once (a test bug otherwise)
WAIT_S = 30.0


class Work:
    """Background work that runs until stopped, as a sanitize operation does."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.stopped = threading.Event()
        self.finished = threading.Event()
        self.stopped_before_start = False

    def run(self) -> None:
        self.stopped_before_start = self.stopped.is_set()
        self.started.set()
        self.stopped.wait(WAIT_S)
        self.finished.set()

    def stop(self) -> None:
        self.stopped.set()


async def test_cancelled_nursery_stops_and_joins_the_work() -> None:
    host = ServerHost(set(), {}, None)
    work = Work()
    async with trio.open_nursery() as nursery:
        host.bind(nursery)
        # started from a worker thread, as scsi.execute() does for a SANITIZE
        await trio.to_thread.run_sync(host.run_background, work.run, work.stop)
        assert await trio.to_thread.run_sync(work.started.wait, WAIT_S)
        assert not work.finished.is_set()
        nursery.cancel_scope.cancel()
    assert work.stopped.is_set() and work.finished.is_set()  # joined before the nursery ended
    assert not work.stopped_before_start


async def test_without_a_nursery_the_work_is_stopped_then_run() -> None:
    work = Work()
    async with trio.open_nursery() as nursery:
        host = ServerHost(set(), {}, None)
        host.bind(nursery)
    host.run_background(work.run, work.stop)  # the nursery has closed: the service has ended
    await trio.testing.wait_all_tasks_blocked()
    assert work.finished.is_set() and work.stopped_before_start
