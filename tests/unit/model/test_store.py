"""ConfigStore: a full configuration survives save/load and a reopen, a failed save leaves the old
configuration, ids are never reused, and an unusable database is a StoreError."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from pyscsi_target.model import (
    AuthCredential,
    Config,
    ConfigStore,
    Extent,
    GlobalConfig,
    InitiatorGroup,
    LunMapping,
    Portal,
    PortalAddress,
    ServiceState,
    StoreError,
    Target,
    TargetGroup,
)
from pyscsi_target.model.config import AUTH_CHAP, AUTH_CHAP_MUTUAL, EXTENT_FILE, EXTENT_ZVOL
from pyscsi_target.model.store import SCHEMA_VERSION, read_snapshot


def full_config() -> Config:
    """One of every resource, with every field away from its default where it has one."""
    cfg = Config(
        global_config=GlobalConfig(
            basename="iqn.2024-01.org.example",
            isns_servers="10.0.0.5 10.0.0.6",
            pool_avail_threshold=80,
            alua=True,
        ),
        service=ServiceState(enabled=False),
    )
    cfg.portals[1] = Portal(
        id=1,
        tag=1,
        ips=[PortalAddress("0.0.0.0"), PortalAddress("::1", 3261)],
        comment="main",
        discoveryauthmethod=AUTH_CHAP,
        discoveryauthgroup=7,
    )
    cfg.initiators[1] = InitiatorGroup(
        id=1, tag=1, initiators="iqn.1993-08.org.debian:01:abc", auth_network="10.0.0.0/8 ::1", comment="lab"
    )
    cfg.auths[1] = AuthCredential(
        id=1, tag=7, user="alice", secret="s3cretsecret1", peeruser="tgt", peersecret="peersecret12"
    )
    cfg.targets[1] = Target(id=1, name="disk0", alias="first disk")
    cfg.targets[2] = Target(id=2, name="iqn.2024-01.org.example:other", alias=None)
    cfg.targetgroups[1] = TargetGroup(
        id=1,
        target=1,
        portalgroup=1,
        initiatorgroup=1,
        authtype=AUTH_CHAP_MUTUAL,
        authgroup=7,
        initialdigest="CRC32C",
    )
    cfg.extents[1] = Extent(
        id=1,
        name="e0",
        type=EXTENT_FILE,
        path="/mnt/tank/e0.img",
        filesize="10737418240",
        blocksize=4096,
        pblocksize=True,
        avail_threshold=90,
        comment="ü nicode",
        naa="0x6589cfc000000" + "a" * 19,
        serial="10000001",
        insecure_tpc=False,
        xen=True,
        rpm="7200",
        ro=True,
        legacy=True,
        enabled=False,
        disk="zvol/tank/e0",
    )
    cfg.extents[2] = Extent(id=2, name="z", type=EXTENT_ZVOL, path="/dev/zvol/tank/z")
    cfg.mappings[1] = LunMapping(id=1, target=1, extent=1, lunid=0)
    cfg.mappings[2] = LunMapping(id=2, target=2, extent=2, lunid=3)
    cfg.next_ids = {c: 10 for c in Config.COLLECTIONS}
    return cfg


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "data" / "config.db"  # the parent directory is created by the store


def test_fresh_store_loads_the_empty_config(db: Path) -> None:
    store = ConfigStore(db)
    assert store.load() == Config()
    store.close()


def test_full_config_round_trip_and_reopen(db: Path) -> None:
    cfg = full_config()
    store = ConfigStore(db)
    store.save(cfg)
    assert store.load() == cfg
    store.close()
    reopened = ConfigStore(db)
    loaded = reopened.load()
    assert loaded == cfg
    assert loaded.portals[1].ips[1] == PortalAddress("::1", 3261)  # nested objects come back typed
    reopened.close()


def test_save_replaces_everything(db: Path) -> None:
    store = ConfigStore(db)
    store.save(full_config())
    smaller = full_config()
    del smaller.mappings[2], smaller.extents[2], smaller.targets[2]
    smaller.global_config.alua = False
    store.save(smaller)
    assert store.load() == smaller
    store.close()


def test_a_failed_save_leaves_the_old_config(db: Path) -> None:
    store = ConfigStore(db)
    old = full_config()
    store.save(old)
    broken = old.copy()
    del broken.portals[1]  # deleted rows would be gone if the transaction half-committed
    broken.extents[3] = Extent(id=3, name="bad", type=EXTENT_FILE, path="/x", comment=object())  # type: ignore[arg-type]
    with pytest.raises(TypeError):  # json cannot serialise object(): raised inside the transaction
        store.save(broken)
    assert store.load() == old
    store.close()
    reopened = ConfigStore(db)
    assert reopened.load() == old
    newer = old.copy()
    newer.targets[1].alias = "renamed"
    reopened.save(newer)  # the store is still usable after the failure
    assert reopened.load() == newer
    reopened.close()


def test_next_ids_are_preserved_and_ids_never_reused(db: Path) -> None:
    cfg = Config()
    first = cfg.new_id("targets")
    cfg.targets[first] = Target(id=first, name="a")
    second = cfg.new_id("targets")
    cfg.targets[second] = Target(id=second, name="b")
    del cfg.targets[second]  # the highest id is deleted; it must not come back
    store = ConfigStore(db)
    store.save(cfg)
    store.close()
    loaded = ConfigStore(db).load()
    assert loaded.next_ids == cfg.next_ids == {"targets": 3}
    assert loaded.new_id("targets") == 3


def test_rows_written_by_a_newer_minor_version_load(db: Path) -> None:
    store = ConfigStore(db)
    store.save(full_config())
    store.close()
    con = sqlite3.connect(db)
    row = con.execute("SELECT data FROM objects WHERE collection='targets' AND id=1").fetchone()
    data = json.loads(row[0])
    data["future_field"] = 1
    con.execute("UPDATE objects SET data=? WHERE collection='targets' AND id=1", (json.dumps(data),))
    con.execute("INSERT INTO objects VALUES ('future_collection', 1, '{}')")
    con.commit()
    con.close()
    store = ConfigStore(db)
    assert store.load() == full_config()  # unknown fields and collections are ignored
    store.close()


def test_newer_schema_is_refused(db: Path) -> None:
    ConfigStore(db).close()
    con = sqlite3.connect(db)
    con.execute("UPDATE singletons SET data=? WHERE name='schema'", (json.dumps(SCHEMA_VERSION + 1),))
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="newer"):
        ConfigStore(db)


def test_unusable_databases_raise_store_error(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="not a usable"):
        ConfigStore(garbage)
    with pytest.raises(StoreError, match="cannot open"):
        ConfigStore(tmp_path)  # a directory
    blocked = tmp_path / "file"
    blocked.write_text("")
    with pytest.raises(StoreError, match="cannot open"):
        ConfigStore(blocked / "config.db")  # the parent is a file


def test_corrupt_rows_raise_store_error(db: Path) -> None:
    store = ConfigStore(db)
    store.save(full_config())
    store.close()
    con = sqlite3.connect(db)
    con.execute("UPDATE objects SET data='{not json' WHERE collection='extents' AND id=1")
    con.commit()
    con.close()
    store = ConfigStore(db)
    with pytest.raises(StoreError, match="cannot read"):
        store.load()
    store.close()


# ---- read_snapshot: what `config export` reads (issue #10 item 12) --------------------------------


def test_read_snapshot_sees_commits_still_in_the_wal(db: Path) -> None:
    store = ConfigStore(db)  # stays open, as a running server's does: nothing is checkpointed
    store.save(full_config())
    changed = full_config()
    changed.targets[1].alias = "after"
    store.save(changed)
    assert db.with_name("config.db-wal").stat().st_size > 0
    assert read_snapshot(db) == changed
    store.close()


def test_read_snapshot_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "data" / "config.db"
    with pytest.raises(StoreError, match="no configuration database"):
        read_snapshot(missing)
    assert not missing.parent.exists()


def test_read_snapshot_refuses_a_newer_schema(db: Path) -> None:
    ConfigStore(db).close()
    con = sqlite3.connect(db)
    con.execute("UPDATE singletons SET data=? WHERE name='schema'", (json.dumps(SCHEMA_VERSION + 1),))
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="newer"):
        read_snapshot(db)
