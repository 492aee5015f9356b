"""Helpers shared by the reliability tests (issue #7) and `benchmarks/soak`: self-describing blocks
and sessions that are ready for I/O.

A self-describing block (target-rules.md §4.3 "checksummed pattern", the idea of fio's
`verify=crc32c` header) carries its LBA, the write's sequence number, a generation id (one per test
run, so data of an earlier run never passes) and a CRC32C over everything before the CRC. Reading
one back tells a never-written block (all zeroes), an intact block (and which write it holds), and a
torn, misdirected, stale or garbage block apart.
"""

from __future__ import annotations

import errno
import random
import signal
import struct
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import crc32c
import trio

from pyscsi_target.model import ConfigStore, Extent
from pyscsi_target.model.config import EXTENT_FILE
from pyscsi_target.model.extents import parse_filesize
from pyscsi_target.scsi.host import LuHost
from pyscsi_target.scsi.lu import LogicalUnit
from pyscsi_target.server.connection import ConnectionHandler
from pyscsi_target.server.demo import demo_config
from pyscsi_target.server.extents import LiveExtent, identity_of
from pyscsi_target.server.service import TargetService
from pyscsi_target.storage._mapping import Mapping
from pyscsi_target.storage.file import FileBackend, msync_range
from tests.initiator import Initiator
from tests.support import Running, demo_options

from .client import Client

#: logical block size of the demo LUN, bytes
BS = 512
MAGIC = b"RELBLK01"
#: magic, LBA, sequence number, generation
HEADER = struct.Struct(">8sQQI")
CRC = struct.Struct(">I")
PAYLOAD_BYTES = BS - HEADER.size - CRC.size
GOOD = 0x00
CHECK_CONDITION = 0x02
UNIT_ATTENTION = 0x06
#: TEST UNIT READYs a fresh nexus may need to consume its unit attentions (POWER ON, MODE
#: PARAMETERS CHANGED, ...; scsi/lu.py queues at most 16)
MAX_READY_COMMANDS = 17


def make_block(lba: int, seq: int, gen: int) -> bytes:
    header = HEADER.pack(MAGIC, lba, seq, gen)
    payload = random.Random((gen << 96) | (lba << 48) | seq).randbytes(PAYLOAD_BYTES)
    body = header + payload
    return body + CRC.pack(crc32c.crc32c(body))


def make_blocks(lba: int, nblocks: int, seq: int, gen: int) -> bytes:
    """`nblocks` blocks starting at `lba`, all written by write number `seq`."""
    return b"".join(make_block(lba + i, seq, gen) for i in range(nblocks))


class BadBlock(AssertionError):
    """A block that is neither all zeroes nor an intact block of this run at this LBA."""


@dataclass(frozen=True)
class Found:
    """What one block holds: `seq` of the write that wrote it, None if never written (zeroes)."""

    lba: int
    seq: int | None


def decode_block(raw: bytes | memoryview, lba: int, gen: int) -> Found:
    """Classify one block read at `lba`; raises BadBlock for torn / misdirected / foreign data."""
    raw = bytes(raw)
    if len(raw) != BS:
        raise BadBlock(f"LBA {lba}: {len(raw)} bytes, not one block")
    if raw == bytes(BS):
        return Found(lba, None)
    magic, got_lba, seq, got_gen = HEADER.unpack_from(raw)
    (crc,) = CRC.unpack_from(raw, BS - CRC.size)
    if magic != MAGIC or crc != crc32c.crc32c(raw[: BS - CRC.size]):
        raise BadBlock(f"LBA {lba}: torn or garbage block (magic {magic!r}, CRC mismatch or bad header)")
    if got_lba != lba:
        raise BadBlock(f"LBA {lba}: holds the block of LBA {got_lba} (misdirected write)")
    if got_gen != gen:
        raise BadBlock(f"LBA {lba}: generation {got_gen:#x}, expected {gen:#x} (stale data)")
    return Found(lba, seq)


def decode_blocks(data: bytes, lba: int, gen: int) -> list[Found]:
    return [decode_block(data[i * BS : (i + 1) * BS], lba + i, gen) for i in range(len(data) // BS)]


async def write_and_verify(c: Client, lba: int, seq: int, gen: int, nblocks: int = 8) -> None:
    """WRITE `nblocks` self-describing blocks and READ them back identical."""
    data = make_blocks(lba, nblocks, seq, gen)
    res = await c.write10(lba, data)
    assert res.status == GOOD, res.sense_key
    res = await c.read10(lba, nblocks)
    assert res.status == GOOD and res.data == data


def host_port(portal: str) -> tuple[str, int]:
    host, _, port = portal.rpartition(":")
    return host, int(port)


async def open_session(portal: str, target: str, *, name: str, isid: int, local_ip: str | None = None,
                       extra: dict[str, str] | None = None) -> Client:
    """Connect (from `local_ip` if given: 127/8 gives every test initiator its own source address),
    log in, and consume the new nexus' unit attentions."""
    host, port = host_port(portal)
    sock = await trio.open_tcp_stream(host, port, local_address=local_ip)
    c = Client(sock, Initiator(name=name, isid=isid))
    try:
        await c.login(target, extra)
        await c.ready(attempts=MAX_READY_COMMANDS)
    except BaseException:
        await c.aclose()
        raise
    return c


# ---- the server as a subprocess -----------------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]
#: seconds the server subprocess may take to start and print its marker line
STARTUP_TIMEOUT_S = 30.0
#: stdout line of a first start with --demo (serve.py), and the log line (stderr) of every start
DEMO_MARKER = "demo LUN:"
READY_MARKER = " ready: iSCSI portals"
#: characters of each output stream kept (the tail), and problem lines kept
MAX_OUTPUT_CHARS = 1 << 20
MAX_PROBLEMS_KEPT = 100


class ServerProcess:
    """`python -m pyscsi_target serve --demo` in a subprocess; its output is drained continuously
    (a full pipe would block the server) and searched for marker lines."""

    def __init__(self, data_dir: Path, portal: str, *, log_level: str = "INFO") -> None:
        self.data_dir = data_dir
        self.portal = portal
        self.log_level = log_level
        self.output = {"stdout": "", "stderr": ""}
        #: ERROR log lines and tracebacks the server printed (the first MAX_PROBLEMS_KEPT)
        self.problems: list[str] = []
        self._changed = trio.Event()
        self.proc: trio.Process | None = None

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "pyscsi_target", "serve", "--data-dir", str(self.data_dir),
                "--demo", "--demo-portal", self.portal, "--no-api", "--log-level", self.log_level]

    async def start(self, nursery: trio.Nursery, stream: str, marker: str, *,
                    preexec_fn: Callable[[], None] | None = None) -> None:
        self.output = {"stdout": "", "stderr": ""}
        self.proc = await trio.lowlevel.open_process(self.argv(), cwd=REPO, stdout=subprocess.PIPE,
                                                     stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                                     preexec_fn=preexec_fn)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        nursery.start_soon(self._drain, "stdout", self.proc.stdout)
        nursery.start_soon(self._drain, "stderr", self.proc.stderr)
        with trio.fail_after(STARTUP_TIMEOUT_S):
            while marker not in self.output[stream]:
                assert self.proc.returncode is None, f"server exited: {self.output['stderr'][-2000:]}"
                await self._changed.wait()

    async def _drain(self, name: str, stream: trio.abc.ReceiveStream) -> None:
        async with stream:
            while True:
                try:
                    chunk = await stream.receive_some()
                except trio.ClosedResourceError:
                    chunk = b""
                text = self.output[name] + chunk.decode(errors="replace")
                self._note_problems(self.output[name], text)
                self.output[name] = text[-MAX_OUTPUT_CHARS:]
                self._changed.set()
                self._changed = trio.Event()
                if not chunk:
                    return

    def _note_problems(self, before: str, after: str) -> None:
        """Log lines at ERROR level and tracebacks, among the lines this chunk completed."""
        start = before.rfind("\n") + 1
        for line in after[start:].split("\n")[:-1]:
            if (" ERROR " in line or "Traceback" in line) and len(self.problems) < MAX_PROBLEMS_KEPT:
                self.problems.append(line)

    async def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()
        assert self.proc.returncode == -signal.SIGKILL

    async def stop(self, timeout: float = STARTUP_TIMEOUT_S) -> int:
        """SIGTERM (a planned shutdown) and its exit status."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        with trio.fail_after(timeout):
            return await self.proc.wait()

    def kill_quietly(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()


# ---- an in-process server whose file backends have a controllable flush ------------------------


class FlushHook:
    """A FileBackend `flush_fn` (the storage layer's fault-injection hook) that records every sync,
    can fail on demand like a disk that lost a write-back (EIO), and can hold syncs at a gate.

    Runs in the server's worker threads, so its state is guarded by a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: (byte offset, length, ran on the event loop's thread) of every sync that succeeded
        self.synced: list[tuple[int, int, bool]] = []
        self.fail = False
        self.failures = 0
        #: cleared: syncs wait at the gate until `open_gate()`; `waiting` is set while one waits
        self.gate = threading.Event()
        self.gate.set()
        self.waiting = threading.Event()

    def __call__(self, mapping: Mapping, offset: int, length: int) -> None:
        if not self.gate.is_set():
            self.waiting.set()
            if not self.gate.wait(GATE_TIMEOUT_S):
                raise OSError(errno.ETIMEDOUT, "test gate never opened")
        with self._lock:
            if self.fail:
                self.failures += 1
                raise OSError(errno.EIO, "injected write-back error")
        msync_range(mapping, offset, length)
        with self._lock:
            self.synced.append((offset, length, threading.current_thread() is threading.main_thread()))

    def mark(self) -> int:
        """A point in the sync record, for `covers(..., since=)`."""
        with self._lock:
            return len(self.synced)

    def covers(self, lba: int, nblocks: int, since: int = 0) -> bool:
        """True if one sync recorded after `since` covered the blocks' whole byte range."""
        start, end = lba * BS, (lba + nblocks) * BS
        with self._lock:
            return any(off <= start and end <= off + length for off, length, _ in self.synced[since:])

    def close_gate(self) -> None:
        self.waiting.clear()
        self.gate.clear()

    def open_gate(self) -> None:
        self.gate.set()


#: a sync held at a FlushHook gate gives up after this long, seconds (a test bug, not a hang)
GATE_TIMEOUT_S = 30.0


def hooked_opener(hook: FlushHook) -> Callable[[Extent, LuHost], LiveExtent]:
    """An extent opener for `TargetService` that builds the real FileBackend with `hook` as its
    flush function (the same backend and LU as `server.kinds.open_extent`)."""

    def open_hooked(ext: Extent, host: LuHost) -> LiveExtent:
        assert ext.type == EXTENT_FILE
        backend = FileBackend(ext.path, block_size=ext.blocksize, read_only=ext.ro,
                              size_bytes=parse_filesize(ext.filesize) or None, create=True, flush_fn=hook)
        return LiveExtent(ext, backend, LogicalUnit(backend, identity_of(ext), host=host))

    return open_hooked


@asynccontextmanager
async def hooked_server(data_dir: Path, hook: FlushHook) -> AsyncIterator[Running]:
    """The demo configuration served by a `TargetService` whose file extents sync through `hook`
    (what `serve()` does, minus the API)."""
    options = demo_options(data_dir)
    extent_root = options.resolved_extent_roots()[0]
    extent_root.mkdir(parents=True, exist_ok=True)
    store = ConfigStore(options.config_db)
    try:
        async with trio.open_nursery() as nursery:
            service = TargetService(store, extent_opener=hooked_opener(hook))
            await nursery.start(service.run)
            await service.apply(demo_config(service.config, options.demo_portal, extent_root))
            yield Running(service, options, options.demo_portal)
            nursery.cancel_scope.cancel()
    finally:
        store.close()


def handler_of(service: TargetService, initiator: str, isid: int) -> ConnectionHandler:
    """The live connection handler of one logged-in session."""
    for h in service.handlers:
        if h.login is not None and h.login.initiator_name == initiator and h.login.isid == isid:
            return h
    raise AssertionError(f"no session of {initiator} ISID {isid:#x}")
