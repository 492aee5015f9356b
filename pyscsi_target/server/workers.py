"""Worker threads for the commands of one connection that must wait (cold reads, synchronous
writes, flushes, WRITE SAME ...), with a cheap hand-off to and from the trio loop.

`trio.to_thread.run_sync` per command cost about 200 us of CPU for each cold 4 KiB read (a new
task, a CapacityLimiter, thread naming, an Outcome and a wake-up per call; docs/performance.md):
a connection whose data was not in the page cache served 4k reads/s at 100 % CPU while the disk
could do 75k. Here a job is a `SimpleQueue.put`; results are collected in a deque and handed to
the loop in batches, one `run_sync_soon` (one wake-up of the loop) for however many jobs finish
while it is busy. Callbacks run in the trio thread, outside any task: they must not raise and
must not await (the connection handler only records the answer and wakes its sender).

Threads are started on demand up to `max_threads` and end when the pool is closed, after the
jobs already queued; each one's `execute()` is the same thread-safe call the loop makes.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import outcome
import trio

#: worker threads per connection for commands that wait: the disk queue depth one session can
#: drive with cold reads (tgtd's rdwr backing store uses 16 threads; 8 keep a QD16 initiator's
#: cold reads at several times a 2-thread pool's rate on the development VM's disk)
BLOCKING_THREADS_PER_CONNECTION = 8

Callback = Callable[[outcome.Outcome[Any]], None]


class WorkerPool:
    """Threads running blocking calls for one trio loop; results come back as callbacks."""

    def __init__(self, max_threads: int = BLOCKING_THREADS_PER_CONNECTION, name: str = "pyscsi-worker") -> None:
        self._max = max_threads
        self._name = name
        self._jobs: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...], Callback] | None] = (
            queue.SimpleQueue())
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._done: deque[tuple[Callback, outcome.Outcome[Any]]] = deque()
        self._delivery_scheduled = False
        self._token = trio.lowlevel.current_trio_token()
        self._closed = False

    @property
    def threads(self) -> int:
        return len(self._threads)

    def submit(self, fn: Callable[..., Any], args: tuple[Any, ...], on_done: Callback) -> None:
        """Run fn(*args) in a worker thread; `on_done(outcome)` is then called in the trio thread."""
        if self._closed:
            raise RuntimeError("worker pool is closed")
        self._jobs.put((fn, args, on_done))
        with self._lock:
            if self._idle == 0 and len(self._threads) < self._max:
                thread = threading.Thread(target=self._work, name=f"{self._name}-{len(self._threads)}",
                                          daemon=True)
                self._threads.append(thread)
                thread.start()
            elif self._idle:
                self._idle -= 1  # that one is taking this job: the next submit counts it busy

    def close(self) -> None:
        """Let the threads end once the queued jobs are done (their callbacks still come)."""
        self._closed = True
        for _ in self._threads:
            self._jobs.put(None)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, args, on_done = job
            result = outcome.capture(fn, *args)
            self._done.append((on_done, result))
            with self._lock:
                self._idle += 1
                if self._delivery_scheduled:
                    continue
                self._delivery_scheduled = True
            try:
                self._token.run_sync_soon(self._deliver)
            except trio.RunFinishedError:  # the loop is gone: nobody waits for the answers
                return

    def _deliver(self) -> None:
        # clear the flag before draining: a result appended after the drain schedules again
        with self._lock:
            self._delivery_scheduled = False
        while self._done:
            on_done, result = self._done.popleft()
            on_done(result)
