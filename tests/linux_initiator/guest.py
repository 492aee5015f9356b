"""Host side of the Linux-initiator tests (issue #16): boot the guest under QEMU (TCG) with a
per-boot scenario, read its serial console line by line, and collect its `CHECK` and `DMESG` lines.

Network: QEMU user networking with `restrict=on` (no route out of the guest) and one `guestfwd`
rule per portal: a guest connection to 10.0.2.100:3260 (10.0.2.101:3260, ...) runs `relay.py
<port>` on the host, a relay per connection, so every login and every reconnect of the kernel
initiator reaches the target under test, and nothing else. When nothing listens on the port
(target down, portal deleted) the relay keeps the guest's connection open and retries, like a
network whose SYNs are lost, so the guest's own timeouts decide (relay.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

from .build import BuildError, Cpio, Guest, ensure_guest

QEMU = "qemu-system-x86_64"
#: the per-connection relay of a portal's guestfwd, run by this Python (standard library only)
RELAY = Path(__file__).with_name("relay.py")
RELAY_PYTHON = sys.executable
#: guest-side addresses of the portals, in order; each forwards to one host port
GUEST_PORTALS = ("10.0.2.100", "10.0.2.101")
GUEST_ISCSI_PORT = 3260
#: guest memory, MiB (the initramfs holds ~40 MiB unpacked, plus page cache for the checks)
GUEST_MEMORY_MB = 512
#: seconds from QEMU's start to the guest's first line: a TCG boot takes ~5-15 s here
BOOT_TIMEOUT_S = 120.0
#: seconds a guest whose check failed may take to print its dmesg and power off
DRAIN_TIMEOUT_S = 60.0
#: characters of console output kept for the failure message
CONSOLE_TAIL_CHARS = 60000


def need_guest() -> Guest:
    """The built guest, or: under CI a failure (the issue: CI must run these), locally a skip."""
    try:
        if shutil.which(QEMU) is None:
            raise BuildError(f"{QEMU} is missing (Debian package qemu-system-x86; `make system-deps`)")
        return ensure_guest()
    except BuildError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"the Linux-initiator guest cannot be built here: {exc}")
        pytest.skip(f"the Linux-initiator guest cannot be built here: {exc}")


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str
    seconds: float


def parse_check(line: str) -> Check | None:
    """`CHECK <name> PASS|FAIL <detail> <seconds>` -> Check; None for other lines."""
    parts = line.split()
    if len(parts) < 4 or parts[0] != "CHECK" or parts[2] not in ("PASS", "FAIL"):
        return None
    try:
        seconds = float(parts[-1])
    except ValueError:
        return None
    return Check(parts[1], parts[2] == "PASS", " ".join(parts[3:-1]), seconds)


def scenario_cpio(env: dict[str, str], files: dict[str, str] | None = None) -> bytes:
    """The second initramfs archive of a boot: /scenario.env (shell assignments), and `files`
    (guest path -> text, e.g. the README's iscsiadm blocks)."""
    def quote(v: str) -> str:
        return "'" + v.replace("'", "'\"'\"'") + "'"

    text = "".join(f"{k}={quote(v)}\n" for k, v in env.items())
    cpio = Cpio()
    cpio.file("scenario.env", text.encode())
    for path, content in (files or {}).items():
        cpio.file(path, content.encode())
    return cpio.finish()


@dataclass
class Boot:
    """One running guest: its console lines as they arrive, the checks it reported."""

    proc: trio.Process
    started: float
    lines: list[str] = field(default_factory=list)
    checks: dict[str, Check] = field(default_factory=dict)
    dmesg: list[str] = field(default_factory=list)
    #: the guest daemons' logs the scenario dumps at its end (`ISCSID ...`, `MULTIPATHD ...`)
    daemon_log: list[str] = field(default_factory=list)
    booted_at: float | None = None
    ended_at: float | None = None
    _changed: trio.Event = field(default_factory=trio.Event)
    _closed: bool = False

    def console(self) -> str:
        return "\n".join(self.lines)[-CONSOLE_TAIL_CHARS:]

    async def _read(self, stream: trio.abc.ReceiveStream) -> None:
        buf = b""
        async with stream:
            while True:
                chunk = await stream.receive_some()
                if not chunk:
                    break
                buf += chunk
                *done, buf = buf.split(b"\n")
                for raw in done:
                    self._line(raw.decode(errors="replace").rstrip("\r"))
        if buf:
            self._line(buf.decode(errors="replace"))
        self._closed = True
        self._changed.set()

    def _line(self, line: str) -> None:
        self.lines.append(line)
        if line.startswith("GUEST-BOOTED") and self.booted_at is None:
            self.booted_at = time.monotonic()
        elif line.startswith("GUEST-END"):
            self.ended_at = time.monotonic()
        elif line.startswith("DMESG "):
            self.dmesg.append(line[len("DMESG "):])
        elif line.startswith(("ISCSID ", "MULTIPATHD ")):
            self.daemon_log.append(line)
        check = parse_check(line)
        if check is not None:
            self.checks[check.name] = check
        self._changed.set()
        self._changed = trio.Event()

    async def expect(self, prefix: str, timeout: float) -> str:
        """The first console line starting with `prefix` (searching lines already read too). A
        failed check ends the wait: the guest then skips its other checks, prints its dmesg and
        powers off, which is waited for (up to DRAIN_TIMEOUT_S) so that the failure shows it."""
        seen = 0
        failed: Check | None = None
        with trio.move_on_after(timeout) as scope:
            while failed is None:
                for line in self.lines[seen:]:
                    if line.startswith(prefix):
                        return line
                    check = parse_check(line)
                    if check is not None and not check.passed:
                        failed = check
                seen = len(self.lines)
                if self._closed or failed is not None:
                    break
                await self._changed.wait()
        if failed is not None:
            with trio.move_on_after(DRAIN_TIMEOUT_S):
                while not self._closed:
                    await self._changed.wait()
            why = f"check {failed.name} failed"
        else:
            why = "timed out" if scope.cancelled_caught else "the guest stopped"
        raise AssertionError(f"{why} waiting for {prefix!r}; console:\n{self.console()}")

    async def finished(self, timeout: float) -> None:
        await self.expect("GUEST-END", timeout)
        with trio.fail_after(timeout):
            while not self._closed:
                await self._changed.wait()

    @property
    def boot_seconds(self) -> float | None:
        return None if self.booted_at is None else self.booted_at - self.started


@asynccontextmanager
async def boot(guest: Guest, tmp: Path, env: dict[str, str], forwards: list[int],
               files: dict[str, str] | None = None) -> AsyncIterator[Boot]:
    """Boot the guest with `env` as its scenario; `forwards[i]` is the host port GUEST_PORTALS[i]
    reaches. QEMU is killed on leaving (the guest powers itself off when its scenario ends)."""
    base = guest.initrd.read_bytes()
    initrd = tmp / "initrd"
    # the kernel reads an uncompressed archive after a compressed one only at a 4-byte boundary
    initrd.write_bytes(base + b"\0" * (-len(base) % 4) + scenario_cpio(env, files))
    net = "user,id=n0,restrict=on,ipv6=off"
    for addr, port in zip(GUEST_PORTALS, forwards, strict=False):
        # the relay's stdin, stdout *and stderr* are the guest's connection: nothing the host's
        # Python might print may reach the initiator as if it were a PDU
        relay = f"{guest.busybox} sh -c 'exec {RELAY_PYTHON} -I -S {RELAY} {port} 2>/dev/null'"
        net += f",guestfwd=tcp:{addr}:{GUEST_ISCSI_PORT}-cmd:{relay}"
    argv = [QEMU, "-accel", "tcg", "-m", str(GUEST_MEMORY_MB), "-smp", "1", "-nodefaults",
            "-display", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot",
            "-kernel", str(guest.kernel), "-initrd", str(initrd),
            "-append", "console=ttyS0 quiet panic=-1",
            "-netdev", net, "-device", "virtio-net-pci,netdev=n0"]
    proc = await trio.lowlevel.open_process(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                            stderr=subprocess.STDOUT)
    b = Boot(proc, time.monotonic())
    try:
        async with trio.open_nursery() as nursery:
            assert proc.stdout is not None
            nursery.start_soon(b._read, proc.stdout)
            await b.expect("GUEST-BOOTED", BOOT_TIMEOUT_S)
            yield b
            nursery.cancel_scope.cancel()
    finally:
        if proc.returncode is None:
            proc.kill()
        with trio.CancelScope(shield=True):
            await proc.wait()
