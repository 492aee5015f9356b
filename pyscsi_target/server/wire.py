"""Socket I/O of the data path: non-blocking recv/send first, trio only when the kernel says EAGAIN.

trio's socket methods end every successful call with a cancel-shielded checkpoint (one pass
through the scheduler and an epoll_wait), so a READ served with `await sock.recv_into()` and
`await sock.sendmsg()` under a `trio.Lock` cost three scheduler passes and three epoll_wait
calls (strace, docs/performance.md). Here the syscall is tried first and trio is entered only
to wait (`wait_readable`/`wait_writable`, both checkpoints); `Pacer` adds an explicit checkpoint
every `WAKEUPS_PER_CHECKPOINT` reads that did not have to wait, so a connection whose peer
always has data ready cannot starve the other connections, timers and the API (trio's fairness
otherwise relies on every operation being a checkpoint). A socket that runs dry right after a
quick answer is polled for SPIN_S before the reader sleeps: that is what a synchronous (QD1)
initiator's next command does, and catching it awake saves a sleep and a wake-up per command.

The reader owns the fd's read side and a connection's sender (serialized by its send lock) the
write side; trio's own wrapper stays the owner of the socket (it closes it).
"""

from __future__ import annotations

import importlib
import os
import socket
import time
from collections.abc import Callable, Sequence

import trio

Buffer = bytes | bytearray | memoryview


def _runnable_probe() -> Callable[[], int]:
    """A function answering "how many tasks are ready to run" (trio's
    `current_statistics().tasks_runnable`), asked by `recv_into` every time a quick peer's socket
    runs dry. `current_statistics()` also walks every registered fd for its I/O statistics and
    cleans the deadline heap: ~4 % of the loop's CPU under 4 KiB QD16 reads (py-spy, issue #17),
    and it grows with the number of connections. The run queue's length is the same number
    without the walk; it is read from trio's runner, and a trio without that attribute gets the
    public call (tests/unit/server/test_wire.py checks that both agree)."""
    try:
        context: object = importlib.import_module("trio._core._run").GLOBAL_RUN_CONTEXT
    except (ImportError, AttributeError):  # pragma: no cover - a trio that moved its internals
        context = None

    def public() -> int:
        return trio.lowlevel.current_statistics().tasks_runnable

    def fast() -> int:
        runq = getattr(getattr(context, "runner", None), "runq", None)
        return len(runq) if runq is not None else public()

    return public if context is None else fast


#: tasks ready to run in this thread's trio loop (see `_runnable_probe`)
tasks_runnable = _runnable_probe()

#: at most this many buffers per writev call (Linux IOV_MAX is 1024)
SENDMSG_MAX_BUFFERS = 512
#: a send that makes no progress for this long means the peer stopped reading: close (seconds)
SEND_STALL_TIMEOUT_S = 60.0
#: seconds the reader polls a socket that just ran dry before it sleeps in epoll, when the peer
#: answered quickly last time (a synchronous initiator, QD1): going to sleep and being woken
#: costs this loop about 20 us of latency per command (docs/performance.md "QD1 latency");
#: polling costs CPU only while it lasts, and only when no other task is ready to run
SPIN_S = 40e-6
#: seconds; the peer counts as quick when its last wait for data was shorter than this (an idle
#: connection is never polled)
SPIN_IF_WAITED_BELOW_S = 200e-6
#: reads served without waiting before the reader yields to the scheduler anyway (fairness
#: between connections; 16 wake-ups of up to 512 KiB each keep a yield well under 1 ms)
WAKEUPS_PER_CHECKPOINT = 16


class SendStalled(Exception):
    """The peer has not accepted any data for SEND_STALL_TIMEOUT_S."""


async def recv_into(fd: int, buf: memoryview, pacer: Pacer) -> int:
    """Read what is there into `buf` (0: EOF); waits only when nothing is. A peer that answered
    quickly last time is polled for SPIN_S before the reader sleeps in epoll (Pacer)."""
    try:
        count = os.readv(fd, (buf,))
    except BlockingIOError:
        pacer.waited()
        if pacer.quick_peer and not tasks_runnable():
            deadline = time.perf_counter() + SPIN_S
            while time.perf_counter() < deadline:
                try:
                    count = os.readv(fd, (buf,))
                except BlockingIOError:
                    continue
                await pacer.tick()
                return count
        started = time.perf_counter()
        while True:
            await trio.lowlevel.wait_readable(fd)
            try:
                count = os.readv(fd, (buf,))
            except BlockingIOError:
                continue
            pacer.quick_peer = time.perf_counter() - started < SPIN_IF_WAITED_BELOW_S
            return count
    await pacer.tick()
    return count


async def send_all(fd: int, bufs: Sequence[Buffer]) -> None:
    """writev() every buffer, in order, coalesced into as few calls as possible; handles partial
    writes without copying and waits (at most SEND_STALL_TIMEOUT_S per stall) only when the
    socket buffer is full."""
    pending = list(bufs)
    while pending:
        batch = pending[:SENDMSG_MAX_BUFFERS]
        try:
            sent = os.writev(fd, batch)
        except BlockingIOError:
            sent = 0
        i = 0
        while i < len(batch) and sent >= len(batch[i]):
            sent -= len(batch[i])
            i += 1
        del pending[:i]
        if sent:
            pending[0] = memoryview(pending[0]).cast("B")[sent:]
        elif pending and i < len(batch):
            await _writable(fd)


async def _writable(fd: int) -> None:
    with trio.move_on_after(SEND_STALL_TIMEOUT_S) as stall:
        await trio.lowlevel.wait_writable(fd)
    if stall.cancelled_caught:
        raise SendStalled(f"peer accepted no data for {SEND_STALL_TIMEOUT_S:.0f} s")


class Pacer:
    """Counts reads that did not wait and checkpoints every WAKEUPS_PER_CHECKPOINT of them;
    remembers whether the peer's last answer came quickly (`quick_peer`: poll before sleeping)."""

    def __init__(self) -> None:
        self._left = WAKEUPS_PER_CHECKPOINT
        self.quick_peer = False

    def waited(self) -> None:
        self._left = WAKEUPS_PER_CHECKPOINT

    async def tick(self) -> None:
        self._left -= 1
        if self._left <= 0:
            self._left = WAKEUPS_PER_CHECKPOINT
            await trio.lowlevel.checkpoint()


def peer_open(fd: int) -> bool:
    """Non-blocking look at a connected socket, from any thread: False once the peer has closed or
    reset it, even if the reader has not processed that yet (a pending byte means it is open).
    The socket object only borrows `fd` (detached, never closed here)."""
    try:
        probe = socket.socket(fileno=fd)
    except (OSError, ValueError):  # closed meanwhile (trio reports its fileno() as -1 then)
        return False
    try:
        return probe.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        probe.detach()
