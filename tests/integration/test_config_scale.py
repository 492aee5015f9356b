"""Issue #12: the configuration plane at scale keeps its guarantees.

- in-process: a change of one volume among hundreds rebuilds the LUN map of its own target only
  (the others are the very same objects: nothing else was diffed or rebuilt), and its extent is
  the only one opened;
- against a real server subprocess holding 2,000 volumes (seeded in its database, then served:
  the restart path opens all 2,000): a change refused by validation and one refused by the live
  target leave nothing, neither in the configuration nor on disk; and a kill -9 in the middle of a
  burst of volume creations from four clients loses no acknowledged object.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
from pathlib import Path
from typing import Any

import trio

from benchmarks.config_scale_lib.bench import ISCSI, VOLUME_BYTES, Api, BenchError, Server, free_port
from pyscsi_target.model import (
    Config,
    ConfigStore,
    Extent,
    LunMapping,
    Portal,
    PortalAddress,
    Target,
    TargetGroup,
)
from pyscsi_target.model.config import EXTENT_FILE
from pyscsi_target.model.store import read_snapshot
from tests.support import demo_options, start

#: volumes of the atomicity tests (the issue: "tested again at N = 2,000")
SCALE_N = 2000
#: clients creating volumes at once in the kill -9 burst, and acknowledged volumes before the kill
BURST_CLIENTS = 4
KILL_AFTER_VOLUMES = 40


def seed(cfg: Config, n: int, portal_id: int, root: Path, first: int = 1) -> None:
    """n volumes as the provisioner makes them (target, 16 MiB File extent, group, LUN 0)."""
    for i in range(first, first + n):
        name = f"seed-{i:05d}"
        tid, eid = cfg.new_id("targets"), cfg.new_id("extents")
        cfg.targets[tid] = Target(tid, name=name)
        cfg.extents[eid] = Extent(eid, name=name, type=EXTENT_FILE, path=str(root / f"{name}.img"),
                                  filesize=str(VOLUME_BYTES), serial=f"{i:014x}", naa=f"0x6589cfc000000{i:019x}")
        gid, mid = cfg.new_id("targetgroups"), cfg.new_id("mappings")
        cfg.targetgroups[gid] = TargetGroup(gid, target=tid, portalgroup=portal_id)
        cfg.mappings[mid] = LunMapping(mid, target=tid, extent=eid, lunid=0)


async def test_a_change_of_one_volume_touches_only_its_own_target(tmp_path: Path) -> None:
    options = demo_options(tmp_path / "data")
    async with trio.open_nursery() as nursery:
        running = await start(nursery, options)
        service = running.service
        whole = service.snapshot().copy()
        seed(whole, 300, next(iter(whole.portals)), options.data_dir / "extents")
        await service.apply(whole)
        maps = {tid: service.lun_map(tid) for tid in service.snapshot().targets}
        lus = {eid: live.lu for eid, live in service.extents.items()}
        draft = service.snapshot().draft()
        seed(draft, 1, next(iter(draft.portals)), options.data_dir / "extents", first=999)
        victim = max(service.extents)
        draft.extents[victim].comment = "changed"
        await service.apply(draft)
        new_target = max(service.snapshot().targets)
        assert set(service.lun_map(new_target)) == {0}
        victim_targets = {m.target for m in service.snapshot().mappings.values() if m.extent == victim}
        assert victim_targets
        for tid, luns in maps.items():
            if tid in victim_targets:  # its extent changed: rebuilt, with the same LU
                assert service.lun_map(tid) == luns
            else:  # not rebuilt, not even compared
                assert service.lun_map(tid) is luns, tid
        assert {eid: live.lu for eid, live in service.extents.items() if eid in lus} == lus
        assert service.extents[victim].extent.comment == "changed"
        nursery.cancel_scope.cancel()


# ---- a real server at N = 2,000 -------------------------------------------------------------


def seeded_server(tmp_path: Path) -> Server:
    """A server over a data directory whose database already holds SCALE_N volumes."""
    data_dir = tmp_path / "data"
    root = data_dir / "extents"
    root.mkdir(parents=True)
    portal_port = free_port()
    cfg = Config()
    cfg.portals[1] = Portal(1, tag=1, ips=[PortalAddress("127.0.0.1", portal_port)])
    seed(cfg, SCALE_N, 1, root)
    store = ConfigStore(data_dir / "config.db")
    store.save(cfg)
    store.close()
    server = Server(data_dir, free_port(), portal_port, SCALE_N + 300)
    server.start()
    return server


def client(server: Server) -> Api:
    return Api(server.api_port, (server.data_dir / "api-password").read_text().strip())


def stored(server: Server) -> Config:
    return read_snapshot(server.data_dir / "config.db")


def files(server: Server) -> set[str]:
    return set(os.listdir(server.data_dir / "extents"))


def test_refused_changes_leave_nothing_at_2000_volumes(tmp_path: Path) -> None:
    server = seeded_server(tmp_path)
    try:
        api = client(server)
        before, on_disk = stored(server), files(server)
        assert len(before.targets) == SCALE_N and len(on_disk) == SCALE_N
        # refused by validation: a second extent on the file of the first (issue #10 item 3)
        code, body, _ = api.call("POST", f"{ISCSI}/extent/", {
            "iscsi_target_extent_name": "copy", "iscsi_target_extent_type": "File",
            "iscsi_target_extent_path": str(server.data_dir / "extents" / "seed-00001.img"),
            "iscsi_target_extent_filesize": "0"})
        assert code == 409 and "iscsi_target_extent_path" in json.loads(body)
        # refused by validation, mid-cascade input: a target group on a portal that does not exist
        code, body, _ = api.call("POST", f"{ISCSI}/targetgroup/", {"iscsi_target": 1, "iscsi_target_portalgroup": 99})
        assert code == 409 and "iscsi_target_portalgroup" in json.loads(body)
        # refused by the live target: a portal on an address something else listens on
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            taken = busy.getsockname()[1]
            code, body, _ = api.call("POST", f"{ISCSI}/portal/", {"iscsi_target_portal_ips": [f"127.0.0.1:{taken}"]})
        assert code == 409 and "iscsi_target_portal_ips" in json.loads(body), body
        # refused: a File extent whose folder cannot be made (a file is in the way)
        (server.data_dir / "extents" / "blocker").write_bytes(b"")
        code, body, _ = api.call("POST", f"{ISCSI}/extent/", {
            "iscsi_target_extent_name": "blocked", "iscsi_target_extent_type": "File",
            "iscsi_target_extent_path": str(server.data_dir / "extents" / "blocker" / "sub" / "blocked.img"),
            "iscsi_target_extent_filesize": "1MB"})
        assert code == 409 and "iscsi_target_extent_path" in json.loads(body)
        (server.data_dir / "extents" / "blocker").unlink()
        # nothing refused was stored, no id was taken, no file or folder was left
        assert stored(server) == before
        assert files(server) == on_disk
        targets = json.loads(api.call("GET", f"{ISCSI}/target/?limit=0")[1])
        assert len(targets) == SCALE_N
        api.close()
    finally:
        server.stop()


def test_kill_9_in_a_burst_of_creates_loses_no_acknowledged_change_at_2000_volumes(tmp_path: Path) -> None:
    server = seeded_server(tmp_path)
    acknowledged: list[tuple[str, int, str]] = []  # (resource, id, name) answered 201
    lock = threading.Lock()
    enough = threading.Event()
    root = server.data_dir / "extents"

    def creator(worker: int) -> None:
        api = client(server)
        try:
            for n in range(10_000):
                name = f"burst-{worker}-{n:05d}"
                recorded = RecordingApi(api, acknowledged, lock)
                create_volume_named(recorded, name, root)
                with lock:
                    if sum(1 for r in acknowledged if r[0] == "targettoextent") >= KILL_AFTER_VOLUMES:
                        enough.set()
        except (OSError, BenchError, ValueError):
            return  # the server died under us: what was acknowledged is checked below
        finally:
            api.close()

    threads = [threading.Thread(target=creator, args=(w,)) for w in range(BURST_CLIENTS)]
    try:
        for t in threads:
            t.start()
        assert enough.wait(300), server.tail()
        assert server.proc is not None
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait()
        for t in threads:
            t.join(60)
        with lock:
            acked = list(acknowledged)
        server.start()
        api = client(server)
        lists = {name: {o["id"]: o for o in json.loads(api.call("GET", f"{ISCSI}/{name}/?limit=0")[1])}
                 for name in ("target", "extent", "targetgroup", "targettoextent")}
        api.close()
        for resource, oid, name in acked:
            assert oid in lists[resource], (resource, oid, name)
            if resource == "target":
                assert lists[resource][oid]["iscsi_target_name"] == name
            if resource == "extent":
                assert lists[resource][oid]["iscsi_target_extent_name"] == name
                assert (root / f"{name}.img").stat().st_size == VOLUME_BYTES
        assert len(lists["target"]) >= SCALE_N + KILL_AFTER_VOLUMES
        for m in lists["targettoextent"].values():  # nothing half-made survived either
            assert m["iscsi_target"] in lists["target"] and m["iscsi_extent"] in lists["extent"]
    finally:
        server.stop()


class RecordingApi:
    """An `Api` that records every 201 it gets (resource, id, name)."""

    def __init__(self, api: Api, out: list[tuple[str, int, str]], lock: threading.Lock) -> None:
        self.api, self.out, self.lock = api, out, lock

    def expect(self, method: str, path: str, body: Any, status: int) -> tuple[Any, float]:
        data, seconds = self.api.expect(method, path, body, status)
        resource = path.rstrip("/").rsplit("/", 1)[-1]
        name = body.get("iscsi_target_name") or body.get("iscsi_target_extent_name") or ""
        with self.lock:
            self.out.append((resource, data["id"], name))
        return data, seconds


def create_volume_named(api: RecordingApi, name: str, root: Path) -> None:
    target, _ = api.expect("POST", f"{ISCSI}/target/", {"iscsi_target_name": name}, 201)
    extent, _ = api.expect("POST", f"{ISCSI}/extent/", {
        "iscsi_target_extent_name": name, "iscsi_target_extent_type": "File",
        "iscsi_target_extent_path": str(root / f"{name}.img"), "iscsi_target_extent_filesize": str(VOLUME_BYTES)},
        201)
    api.expect("POST", f"{ISCSI}/targetgroup/", {"iscsi_target": target["id"], "iscsi_target_portalgroup": 1}, 201)
    api.expect("POST", f"{ISCSI}/targettoextent/", {
        "iscsi_target": target["id"], "iscsi_extent": extent["id"], "iscsi_lunid": 0}, 201)

