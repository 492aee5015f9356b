"""Starting and stopping the targets under test as child processes on loopback.

`Tgtd` runs tgt's daemon in the foreground (`tgtd -f`) with its own management channel number
(`-C N`): tgtd's control socket is one per machine and number (/var/run/tgtd/socket.N as tgt
1.0.85 lays it out), so a private N keeps us clear of any other tgtd on the host. It is configured
with tgtadm: a new target, a logical unit on the backing file, bound to ALL initiators.

`PyscsiTarget` runs `pyscsi-target serve --demo` on a fresh data directory whose demo extent file
(DATA/extents/demo.img) the caller has already filled: the server keeps an existing extent file as
it is. Its LUN URL is the `demo LUN: iscsi://...` line it prints.

`Istgt` runs istgt (Debian's `istgt`, the FreeBSD/FreeNAS C target) in the foreground (`-D`) on a
generated istgt.conf: one portal group on a free loopback port, the unit-control portal on
another, an initiator group allowing ALL, one logical unit (LUN 0) on the backing file, no
authentication. istgt 0.4 refuses `InitialR2T No`, so its writes beyond the immediate data wait
for an R2T; a 4 KiB write is all immediate data on every target.

All three are context managers: leaving the block stops the process, whatever happened inside.
"""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from .tools import REPO_ROOT

#: Loopback address both targets listen on (the issue: "on loopback").
LOOPBACK = "127.0.0.1"
#: How long a target may take to come up, seconds.
STARTUP_TIMEOUT_S = 60.0
#: How long a target may take to exit after being asked to, before SIGKILL, seconds.
SHUTDOWN_TIMEOUT_S = 15.0
#: Polling interval while waiting for a target to come up, seconds.
POLL_S = 0.05
#: Where tgtd keeps its management sockets (tgt 1.0.85: socket.N and socket.N.lock).
TGTD_SOCKET_DIR = Path("/var/run/tgtd")
#: Range for our private tgtd management channel number: tgtd 1.0.85 accepts -C 0..32767 and
#: uses 0 by default; drawing from well above it avoids anyone else's tgtd.
TGTD_CONTROL_RANGE = (10000, 32768)
#: Tries at starting tgtd with a fresh channel number and iSCSI port before giving up.
TGTD_START_ATTEMPTS = 3
#: The tgtd target we create: IQN, target id (tgtadm: must not be 0) and LUN (LUN 0 is tgtd's
#: own controller LU, so the disk is LUN 1).
TGTD_IQN = "iqn.2026-11.org.pyscsi.bench:tgtd"
TGTD_TID = 1
TGTD_LUN = 1
#: The istgt target: IQN = NodeBase ":" TargetName, and its one LUN.
ISTGT_NODE_BASE = "iqn.2026-11.org.pyscsi.bench"
ISTGT_TARGET = "istgt"
ISTGT_LUN = 0
#: istgt.conf for one target (istgt 0.4, /usr/share/doc/istgt/examples/istgt.conf). The session
#: keys match what pyscsi-target offers (8 KiB-256 KiB PDUs, 64 KiB first burst, immediate data);
#: `InitialR2T No` is refused by istgt 0.4 ("not supported value No"), and its discovery and unit
#: auth methods know no "None": `Auto` with an empty auth file admits anyone.
ISTGT_CONF = """\
[Global]
  NodeBase "{node_base}"
  PidFile {work}/istgt.pid
  AuthFile {work}/istgt-auth.conf
  MediaDirectory {work}
  LogFacility "local7"
  Timeout 30
  NopInInterval 20
  DiscoveryAuthMethod Auto
  MaxSessions 16
  MaxConnections 4
  FirstBurstLength 65536
  MaxBurstLength 262144
  MaxRecvDataSegmentLength 262144
  InitialR2T Yes
  ImmediateData Yes
  DataPDUInOrder Yes
  DataSequenceInOrder Yes
  ErrorRecoveryLevel 0
[UnitControl]
  AuthMethod Auto
  Portal UC1 {address}:{control_port}
  Netmask {address}
[PortalGroup1]
  Portal DA1 {address}:{port}
[InitiatorGroup1]
  InitiatorName "ALL"
  Netmask {address}/32
[LogicalUnit1]
  TargetName {target}
  Mapping PortalGroup1 InitiatorGroup1
  AuthMethod Auto
  UseDigest Auto
  UnitType Disk
  QueueDepth 32
  LUN{lun} Storage {backing} Auto
"""
#: The demo LUN line `pyscsi-target serve --demo` prints on stdout (issue #2).
DEMO_LINE = re.compile(r"^demo LUN: (iscsi://\S+)\s*$", re.MULTILINE)
#: Where the demo extent lives below the data directory (pyscsi_target.server.demo).
DEMO_EXTENT = Path("extents") / "demo.img"


class TargetError(RuntimeError):
    """A target did not start or misbehaved; the message carries the tail of its log."""


def free_port() -> int:
    """A TCP port on loopback that was free a moment ago."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=1):
            return True
    except OSError:
        return False


def log_tail(path: Path, limit: int = 1500) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return ""


class ChildTarget:
    """A target process we started: its name, LUN URL, pid and log; stops on leaving `with`."""

    name = "target"

    def __init__(self, log_dir: Path) -> None:
        self.log_path = log_dir / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise TargetError(f"{self.name} is not running")
        return self.proc.pid

    def describe(self) -> dict[str, object]:
        """What results.json records about this target."""
        return {"url": self.url, "pid": self.pid, "log": str(self.log_path)}

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        raise NotImplementedError

    def _spawn(self, argv: list[str], stdout: Path | None = None, cwd: Path | None = None,
               env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = self.log_path.open("ab")
        out = stdout.open("ab") if stdout else log
        try:
            return subprocess.Popen(argv, stdout=out, stderr=log, stdin=subprocess.DEVNULL,
                                    start_new_session=True, cwd=cwd, env=env)
        finally:
            log.close()
            out.close()

    def _request_exit(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self._request_exit()
            try:
                self.proc.wait(SHUTDOWN_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def failed(self, what: str) -> TargetError:
        return TargetError(f"{self.name}: {what}\n--- {self.log_path} ---\n{log_tail(self.log_path)}")

    def __enter__(self) -> ChildTarget:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class Tgtd(ChildTarget):
    """tgtd in the foreground, one target with one LUN on `backing`."""

    name = "tgtd"

    def __init__(self, log_dir: Path, backing: Path, tgtd: Path, tgtadm: Path) -> None:
        super().__init__(log_dir)
        self.backing, self.tgtd, self.tgtadm = backing, tgtd, tgtadm
        self.control = 0

    def describe(self) -> dict[str, object]:
        return super().describe() | {"control": self.control, "backing": str(self.backing)}

    def admin(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([str(self.tgtadm), "-C", str(self.control), *args],
                             capture_output=True, text=True, timeout=30)
        if check and res.returncode != 0:
            raise self.failed(f"tgtadm {' '.join(args)}: {res.stderr.strip() or res.stdout.strip()}")
        return res

    def _pick_control(self) -> int:
        while True:
            n = random.randrange(*TGTD_CONTROL_RANGE)
            if not (TGTD_SOCKET_DIR / f"socket.{n}").exists():
                return n

    def _wait_ready(self, deadline: float) -> bool:
        while time.monotonic() < deadline and self.alive():
            if self.admin("--mode", "target", "--op", "show", check=False).returncode == 0:
                return True
            time.sleep(POLL_S)
        return False

    def _launch(self) -> int:
        for _ in range(TGTD_START_ATTEMPTS):
            self.control, port = self._pick_control(), free_port()
            argv = [str(self.tgtd), "-f", "-C", str(self.control), "--iscsi", f"portal={LOOPBACK}:{port}"]
            self.proc = self._spawn(argv)
            if self._wait_ready(time.monotonic() + STARTUP_TIMEOUT_S):
                return port
            self.stop()
            self._remove_sockets()
        raise self.failed(f"did not come up after {TGTD_START_ATTEMPTS} attempts")

    def start(self) -> None:
        port = self._launch()
        lld = ("--lld", "iscsi")
        self.admin(*lld, "--mode", "target", "--op", "new", "--tid", str(TGTD_TID), "--targetname", TGTD_IQN)
        self.admin(*lld, "--mode", "logicalunit", "--op", "new", "--tid", str(TGTD_TID),
                   "--lun", str(TGTD_LUN), "--backing-store", str(self.backing))
        self.admin(*lld, "--mode", "target", "--op", "bind", "--tid", str(TGTD_TID),
                   "--initiator-address", "ALL")
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not port_open(port):
            if time.monotonic() > deadline or not self.alive():
                raise self.failed(f"portal {LOOPBACK}:{port} does not accept connections")
            time.sleep(POLL_S)
        self.url = f"iscsi://{LOOPBACK}:{port}/{TGTD_IQN}/{TGTD_LUN}"

    def _request_exit(self) -> None:
        # tgtd leaves on `tgtadm --mode system --op delete` once its targets are gone.
        lld = ("--lld", "iscsi")
        self.admin(*lld, "--mode", "target", "--op", "delete", "--force", "--tid", str(TGTD_TID), check=False)
        self.admin("--mode", "system", "--op", "delete", check=False)

    def _remove_sockets(self) -> None:
        for suffix in ("", ".lock"):
            (TGTD_SOCKET_DIR / f"socket.{self.control}{suffix}").unlink(missing_ok=True)

    def stop(self) -> None:
        had = self.proc is not None
        super().stop()
        if had:
            self._remove_sockets()


class Istgt(ChildTarget):
    """istgt in the foreground on a generated istgt.conf, one target with LUN 0 on `backing`."""

    name = "istgt"

    def __init__(self, log_dir: Path, work: Path, backing: Path, istgt: Path) -> None:
        super().__init__(log_dir)
        self.work, self.backing, self.istgt = work, backing, istgt
        self.conf_path = work / "istgt.conf"

    def describe(self) -> dict[str, object]:
        return super().describe() | {"backing": str(self.backing), "config": str(self.conf_path)}

    def write_config(self, port: int, control_port: int) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        (self.work / "istgt-auth.conf").write_text("")
        self.conf_path.write_text(ISTGT_CONF.format(
            node_base=ISTGT_NODE_BASE, work=self.work, address=LOOPBACK, port=port,
            control_port=control_port, target=ISTGT_TARGET, lun=ISTGT_LUN, backing=self.backing))

    def start(self) -> None:
        port, control_port = free_port(), free_port()
        while control_port == port:
            control_port = free_port()
        self.write_config(port, control_port)
        self.proc = self._spawn([str(self.istgt), "-c", str(self.conf_path), "-D", "-q"])
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not port_open(port):
            if time.monotonic() > deadline or not self.alive():
                raise self.failed(f"portal {LOOPBACK}:{port} does not accept connections")
            time.sleep(POLL_S)
        self.url = f"iscsi://{LOOPBACK}:{port}/{ISTGT_NODE_BASE}:{ISTGT_TARGET}/{ISTGT_LUN}"


def pyscsi_command() -> list[str]:
    """How to run pyscsi-target: the repo's venv script, else this interpreter's module."""
    script = REPO_ROOT / ".venv" / "bin" / "pyscsi-target"
    return [str(script)] if script.exists() else [sys.executable, "-m", "pyscsi_target"]


class PyscsiTarget(ChildTarget):
    """`pyscsi-target serve --demo` on `data_dir`, with `extra` appended to its command line."""

    name = "pyscsi"

    def __init__(self, log_dir: Path, data_dir: Path, extra: list[str] | None = None) -> None:
        super().__init__(log_dir)
        self.data_dir = data_dir
        self.extra = list(extra or [])
        self.stdout_path = log_dir / "pyscsi.stdout"

    def describe(self) -> dict[str, object]:
        return super().describe() | {"backing": str(self.extent_path(self.data_dir)), "extra_args": self.extra}

    @staticmethod
    def extent_path(data_dir: Path) -> Path:
        return data_dir / DEMO_EXTENT

    def command(self) -> list[str]:
        return pyscsi_command()

    def spawn_options(self) -> dict[str, Any]:
        return {}


    def start(self) -> None:
        portal = f"{LOOPBACK}:{free_port()}"
        argv = [*self.command(), "serve", "--data-dir", str(self.data_dir), "--demo",
                "--demo-portal", portal, "--no-api", "--log-level", "WARNING", *self.extra]
        self.stdout_path.unlink(missing_ok=True)
        self.proc = self._spawn(argv, stdout=self.stdout_path, **self.spawn_options())
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            m = DEMO_LINE.search(log_tail(self.stdout_path, 10_000))
            if m:
                self.url = m.group(1)
                return
            if not self.alive():
                raise self.failed(f"exited with status {self.proc.returncode} before serving the demo LUN")
            time.sleep(POLL_S)
        raise self.failed(f"printed no 'demo LUN:' line within {STARTUP_TIMEOUT_S:.0f} s")


class BaselinePyscsi(PyscsiTarget):
    """pyscsi-target from another checkout (`--baseline DIR`, DIR holding `pyscsi_target/`), run
    beside this one in the same interleaved rounds: a before/after comparison that the machine's
    drift between two runs cannot blur. `python -m pyscsi_target` with DIR as its working
    directory and PYTHONPATH, so that DIR's package is the one imported."""

    name = "pyscsi-base"

    def __init__(self, log_dir: Path, data_dir: Path, code_dir: Path, extra: list[str] | None = None) -> None:
        super().__init__(log_dir, data_dir, extra)
        self.code_dir = code_dir
        self.stdout_path = log_dir / "pyscsi-base.stdout"

    def describe(self) -> dict[str, object]:
        return super().describe() | {"code": str(self.code_dir)}

    def command(self) -> list[str]:
        return [sys.executable, "-m", "pyscsi_target"]

    def spawn_options(self) -> dict[str, Any]:
        return {"cwd": self.code_dir, "env": dict(os.environ, PYTHONPATH=str(self.code_dir))}


#: iscsi-readcapacity16's answer lines (libiscsi-bin 1.19): block length and total size.
_BLOCK_LENGTH = re.compile(r"LOGICAL BLOCK LENGTH IN BYTES:\s*(\d+)", re.IGNORECASE)
_TOTAL_SIZE = re.compile(r"Total size:\s*(\d+)", re.IGNORECASE)


def lun_geometry(readcapacity16: Path, url: str) -> tuple[int, int]:
    """(logical block size, capacity in bytes) of the LUN at `url`, by READ CAPACITY (16)."""
    res = subprocess.run([str(readcapacity16), url], capture_output=True, text=True, timeout=60)
    block, total = _BLOCK_LENGTH.search(res.stdout), _TOTAL_SIZE.search(res.stdout)
    if res.returncode != 0 or not block or not total:
        raise TargetError(f"READ CAPACITY (16) of {url} failed: {(res.stderr or res.stdout).strip()[-300:]}")
    return int(block.group(1)), int(total.group(1))
