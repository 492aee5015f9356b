"""A private single-node Ceph cluster on this machine, for the RBD tests (issue #15 item 3).

One monitor on a free loopback port (msgr2 only), one OSD on memstore (objects in the OSD's RAM,
no disk, nothing to clean up but a folder), no manager (nothing here needs one: pools, images and
I/O are monitor and OSD work), authentication `none` (loopback only, a throw-away cluster: there is
no secret to keep), or with `cephx=True` cephx as a production cluster has it: keys for `mon.`,
`client.admin` and `osd.0` made with ceph-authtool, and `add_client` for a gateway's own user; each
entity's keyring is `keyring.<entity>` beside the conf, which names them (`keyring =`), so a client
finds its key through the conf as librados does in production. Everything lives under one folder:
the configuration, the monitor's store, the OSD's folder, logs, admin sockets and pid files.
Daemons run in the foreground as our children and are killed at `stop()`; nothing is installed
system-wide and no port outside loopback is bound.

The steps are those of a manual deployment (docs.ceph.com "Manual Deployment", and what Ceph's
own vstart.sh does for a developer cluster): a monmap with a fresh fsid, `ceph-mon --mkfs`, start
it, `ceph osd new`, `ceph-osd --mkfs`, start it, wait until it is up and in, then a pool with size 1
initialised for RBD. Start-up cost is measured by `python -m tests.rbd.cluster` (docs/rbd.md).

    python -m tests.rbd.cluster DIR      # start, print the conf path, run until Ctrl-C
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

#: Debian packages the cluster needs (and the Python bindings the RBD backend uses)
PACKAGES = ("ceph-mon", "ceph-osd", "ceph-common", "python3-rados", "python3-rbd")
#: the pool the tests' images live in
POOL = "rbd"
#: RAM the memstore OSD may hold, bytes (the tests' images are thin: only written data counts)
MEMSTORE_BYTES = 2 << 30
#: how long start-up may take before it counts as failed, seconds (measured: about 8 s)
START_TIMEOUT = 120.0


def missing_tools() -> list[str]:
    """The programs the cluster needs that are not installed."""
    return [t for t in ("ceph-mon", "ceph-osd", "monmaptool", "ceph", "ceph-authtool") if shutil.which(t) is None]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class CephCluster:
    """`start()` it, use `conf` (a ceph.conf path) as a client, `stop()` it."""

    root: Path
    port: int = 0
    fsid: str = field(default_factory=lambda: str(uuid.uuid4()))
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    #: seconds `start()` took
    start_seconds: float = 0.0
    #: cephx authentication (keys for every daemon and client) instead of `auth none`
    cephx: bool = False

    @property
    def conf(self) -> Path:
        return self.root / "ceph.conf"

    def keyring(self, entity: str) -> Path:
        """Where the conf says `entity`'s (client.admin, osd.0, client.gw) keyring is."""
        return self.root / f"keyring.{entity}"

    def _write_conf(self) -> None:
        r = self.root
        auth = "cephx" if self.cephx else "none"
        keyring = f"keyring = {r}/keyring.$name\n" if self.cephx else ""
        self.conf.write_text(f"""[global]
fsid = {self.fsid}
mon host = v2:127.0.0.1:{self.port}
mon initial members = a
public addr = 127.0.0.1
ms bind ipv4 = true
ms bind ipv6 = false
ms bind msgr1 = false
auth cluster required = {auth}
auth service required = {auth}
auth client required = {auth}
{keyring}run dir = {r}/run
admin socket = {r}/run/$name.asok
pid file = {r}/run/$name.pid
log file = {r}/log/$name.log
crash dir = {r}/crash
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
[mon]
mon data = {r}/mon/$id
mon cluster log file = {r}/log/cluster.log
[osd]
osd data = {r}/osd/$id
osd objectstore = memstore
memstore device bytes = {MEMSTORE_BYTES}
osd op num shards = 1
osd op num threads per shard = 2
""")

    def ceph(self, *args: str, timeout: float = 30) -> str:
        """Run the `ceph` command-line tool against this cluster; its stdout."""
        out = subprocess.run(["ceph", "-c", str(self.conf), "--connect-timeout", "10", *args],
                             capture_output=True, timeout=timeout, check=False)
        if out.returncode:
            raise RuntimeError(f"ceph {' '.join(args)}: {out.stderr.decode(errors='replace').strip()}")
        return out.stdout.decode()

    def _run(self, *argv: str) -> None:
        out = subprocess.run(argv, capture_output=True, timeout=60, check=False)
        if out.returncode:
            raise RuntimeError(f"{' '.join(argv)}: {out.stderr.decode(errors='replace').strip()}")

    def _daemon(self, *argv: str) -> None:
        log = open(self.root / "log" / f"{argv[0]}.out", "ab")  # noqa: SIM115 - the child owns it
        with log:
            self.procs.append(subprocess.Popen([*argv, "-f", "-c", str(self.conf)], stdout=log,
                                               stderr=subprocess.STDOUT, start_new_session=True))

    def start(self) -> CephCluster:
        """Create and start the cluster; raises RuntimeError (after stopping what started) if it
        does not come up within START_TIMEOUT."""
        t0 = time.monotonic()
        missing = missing_tools()
        if missing:
            raise RuntimeError(f"Ceph is not installed (missing {', '.join(missing)}): make ceph-deps")
        for d in ("run", "log", "crash", "mon/a", "osd/0"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        self._write_conf()
        try:
            if self.cephx:
                self._make_keys()
            monmap = str(self.root / "monmap")
            self._run("monmaptool", "--create", "--fsid", self.fsid, "--addv", "a",
                      f"[v2:127.0.0.1:{self.port}]", monmap)
            self._run("ceph-mon", "-c", str(self.conf), "--mkfs", "-i", "a", "--monmap", monmap)
            self._daemon("ceph-mon", "-i", "a")
            osd_uuid = str(uuid.uuid4())
            osd_id = self._until(lambda: self.ceph("osd", "new", osd_uuid).strip())
            if self.cephx:  # the OSD's key, known to the monitor before its mkfs asks it for config
                osd_keyring = str(self.keyring(f"osd.{osd_id}"))
                self._run("ceph-authtool", "--create-keyring", osd_keyring, "--gen-key", "-n", f"osd.{osd_id}")
                self.ceph("auth", "add", f"osd.{osd_id}", "osd", "allow *", "mon", "allow profile osd",
                          "-i", osd_keyring)
            self._run("ceph-osd", "-c", str(self.conf), "-i", osd_id, "--mkfs", "--osd-uuid", osd_uuid)
            self._daemon("ceph-osd", "-i", osd_id)
            self._until(self._osd_up)
            self.ceph("osd", "pool", "create", POOL, "8")
            self._run("rbd", "-c", str(self.conf), "pool", "init", POOL)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - t0
        return self

    def _make_keys(self) -> None:
        """The monitor's key, and client.admin's imported into the monitor's keyring (Manual
        Deployment's steps)."""
        mon, admin = str(self.keyring("mon.a")), str(self.keyring("client.admin"))
        self._run("ceph-authtool", "--create-keyring", mon, "--gen-key", "-n", "mon.", "--cap", "mon", "allow *")
        self._run("ceph-authtool", "--create-keyring", admin, "--gen-key", "-n", "client.admin",
                  "--cap", "mon", "allow *", "--cap", "osd", "allow *", "--cap", "mgr", "allow *")
        self._run("ceph-authtool", mon, "--import-keyring", admin)

    def add_client(self, name: str, *caps: str) -> str:
        """Create client.`name` with `caps` (pairs: "mon", "profile rbd", ...) and write its keyring
        where the conf looks for it; its key (base64)."""
        entity = f"client.{name}"
        self.ceph("auth", "get-or-create", entity, *caps, "-o", str(self.keyring(entity)))
        return self.ceph("auth", "get-key", entity).strip()

    def _osd_up(self) -> str:
        stat = json.loads(self.ceph("osd", "stat", "-f", "json"))
        if stat.get("num_up_osds", 0) < 1 or stat.get("num_in_osds", 0) < 1:
            raise RuntimeError(f"OSD not up yet: {stat}")
        return "up"

    def _until(self, probe: object) -> str:
        """Call `probe` until it returns without RuntimeError (a daemon still starting)."""
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"{p.args[0]} exited with {p.returncode}; see {self.root}/log")
            try:
                return probe()  # type: ignore[operator,no-any-return]
            except (RuntimeError, subprocess.TimeoutExpired):
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.2)  # polling a daemon's readiness, not synchronising our own code

    def rss_bytes(self) -> int:
        """Resident memory of the cluster's daemons now."""
        total = 0
        for p in self.procs:
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{p.pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        return total

    def stop(self) -> None:
        """Kill the daemons (memstore: the data goes with them); the folder stays for its logs."""
        for p in reversed(self.procs):
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGTERM)
        for p in reversed(self.procs):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        self.procs.clear()


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "ceph-cluster").resolve()
    cluster = CephCluster(root).start()
    print(f"cluster up in {cluster.start_seconds:.1f} s, daemons' RSS {cluster.rss_bytes() >> 20} MiB")
    print(f"conf: {cluster.conf}   (ceph -c {cluster.conf} -s; Ctrl-C stops it)", flush=True)
    try:
        # sigwait only receives blocked signals: unblocked, SIGTERM's default action ended the
        # process at once and left the daemons running
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
