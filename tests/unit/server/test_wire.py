"""Socket I/O of the data path (server/wire.py): writev of many buffers with partial writes and a
full socket, the stall timeout, reads that wait only when nothing is there (polling a quick peer
briefly first), the Pacer that keeps a connection whose peer always has data from starving
everything else, and the peek that tells whether the peer has closed."""

from __future__ import annotations

import socket

import pytest
import trio
import trio.testing

from pyscsi_target.server.wire import (
    SEND_STALL_TIMEOUT_S,
    SENDMSG_MAX_BUFFERS,
    WAKEUPS_PER_CHECKPOINT,
    Pacer,
    SendStalled,
    peer_open,
    recv_into,
    send_all,
    tasks_runnable,
)


def pair(buffer_bytes: int = 4096) -> tuple[trio.socket.SocketType, trio.socket.SocketType]:
    a, b = trio.socket.socketpair()
    for s in (a, b):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, buffer_bytes)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer_bytes)
    return a, b


async def read_exactly(sock: trio.socket.SocketType, count: int) -> bytes:
    got = bytearray()
    while len(got) < count:
        chunk = await sock.recv(65536)
        assert chunk, "EOF before everything arrived"
        got += chunk
    return bytes(got)


async def test_send_all_delivers_every_buffer_in_order_through_a_small_socket() -> None:
    a, b = pair()
    bufs: list[bytes | bytearray | memoryview] = []
    for i in range(SENDMSG_MAX_BUFFERS * 2 + 17):  # more buffers than one writev takes
        piece = bytes([i % 251]) * (i % 300)  # empty ones included
        bufs.append(memoryview(piece) if i % 3 == 0 else bytearray(piece) if i % 3 == 1 else piece)
    bufs.append(bytes(range(256)) * 2048)  # 512 KiB: many partial writes into a 4 KiB buffer
    expected = b"".join(bytes(x) for x in bufs)
    async with trio.open_nursery() as nursery:
        received: list[bytes] = []

        async def reader() -> None:
            received.append(await read_exactly(b, len(expected)))

        nursery.start_soon(reader)
        await send_all(a.fileno(), bufs)
    assert received == [expected]
    a.close()
    b.close()


async def test_a_peer_that_stops_reading_stalls_the_sender(autojump_clock: trio.testing.MockClock) -> None:
    a, b = pair()
    start = trio.current_time()
    with pytest.raises(SendStalled):
        await send_all(a.fileno(), [bytes(1 << 20)])
    assert trio.current_time() - start == pytest.approx(SEND_STALL_TIMEOUT_S)
    a.close()
    b.close()


async def test_recv_into_waits_only_when_nothing_is_there() -> None:
    a, b = pair()
    buf = memoryview(bytearray(100))
    pacer = Pacer()
    await b.send(b"ready")
    assert await recv_into(a.fileno(), buf, pacer) == 5 and bytes(buf[:5]) == b"ready"
    async with trio.open_nursery() as nursery:
        got: list[int] = []

        async def late_reader() -> None:
            got.append(await recv_into(a.fileno(), buf, pacer))

        nursery.start_soon(late_reader)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []  # it is waiting, not spinning
        await b.send(b"later")
    assert got == [5] and bytes(buf[:5]) == b"later"
    assert pacer.quick_peer  # it answered at once: the next time the socket runs dry is polled first
    got.clear()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(late_reader)
        await trio.testing.wait_all_tasks_blocked()  # polled for SPIN_S, then asleep in epoll
        await b.send(b"again")
    assert got == [5] and bytes(buf[:5]) == b"again"
    b.close()
    assert await recv_into(a.fileno(), buf, pacer) == 0  # EOF
    a.close()


async def test_a_reader_that_never_waits_still_lets_others_run() -> None:
    a, b = pair(1 << 20)
    buf = memoryview(bytearray(1))
    pacer = Pacer()
    reads = 0
    other_ran_after: list[int] = []

    async def other() -> None:
        other_ran_after.append(reads)

    await b.send(bytes(4 * WAKEUPS_PER_CHECKPOINT))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(other)
        for _ in range(4 * WAKEUPS_PER_CHECKPOINT):  # data is always there: no wait, no checkpoint
            assert await recv_into(a.fileno(), buf, pacer) == 1
            reads += 1
    # a checkpoint puts the reader behind the tasks already runnable in trio's next batch, whose
    # order trio randomizes: the other task runs after at most two checkpoints' worth of reads
    assert other_ran_after and other_ran_after[0] < 2 * WAKEUPS_PER_CHECKPOINT
    a.close()
    b.close()


def test_peer_open_peeks_without_taking_data_or_the_socket() -> None:
    """Open while the peer is there, also with data pending (a peek consumes nothing); closed once
    only its end-of-stream is left; the socket stays ours and usable (nothing dup'ed or closed)."""
    a, b = socket.socketpair()
    with a, b:
        assert peer_open(a.fileno())
        b.send(b"x")
        b.close()
        assert peer_open(a.fileno())  # a byte is pending before the end of the stream
        assert a.recv(1) == b"x"
        assert not peer_open(a.fileno())
        assert a.recv(1) == b""
    assert not peer_open(a.fileno())  # closed: -1, or a descriptor that is no socket of ours


async def test_tasks_runnable_agrees_with_trios_statistics() -> None:
    """The run queue length read from trio's runner is what `current_statistics()` reports, with
    no task, one and several tasks ready: a trio that renames its internals fails here, not in
    production by spinning while other connections wait."""
    assert tasks_runnable() == trio.lowlevel.current_statistics().tasks_runnable == 0
    async with trio.open_nursery() as nursery:
        for n in range(1, 4):
            nursery.start_soon(trio.sleep, 0)
            assert tasks_runnable() == trio.lowlevel.current_statistics().tasks_runnable == n
