"""The persistent configuration: one SQLite database, `<data-dir>/config.db`.

Each resource row is stored as JSON in `objects(collection, id, data)`; the global configuration,
service state and id counters live in `singletons(name, data)`. `save()` writes a change in one
transaction: for a `Draft` (model/draft.py) only the rows it changes (UPSERT or DELETE by id, and
the three singletons), so an API call costs its change, not the configuration (issue #12); a whole
`Config` replaces everything. A crash leaves either the old or the new configuration, never half
of a change. The database runs in
WAL mode with `synchronous=FULL`: a committed change survives power loss (SQLite docs, "WAL mode").

Every load reads inside one read transaction, so it sees one committed state even while another
process writes. `read_snapshot(path)` is that load from a read-only connection: `config export`
uses it while the server runs, and it sees changes still in the WAL (a copy of config.db alone
would not, issue #10 item 12). The schema version is checked on open: a database written by a newer
program is refused; there has been one schema so far, so there is nothing to migrate yet.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

from .config import (
    AuthCredential,
    Config,
    Extent,
    GlobalConfig,
    InitiatorGroup,
    LunMapping,
    Portal,
    PortalAddress,
    ServiceState,
    Target,
    TargetGroup,
)
from .draft import Draft

SCHEMA_VERSION = 1

_ROW_TYPES: dict[str, type] = {
    "portals": Portal,
    "initiators": InitiatorGroup,
    "auths": AuthCredential,
    "targets": Target,
    "targetgroups": TargetGroup,
    "extents": Extent,
    "mappings": LunMapping,
}


class StoreError(Exception):
    """The configuration database cannot be read or written."""


def _to_json(obj: Any) -> str:
    return json.dumps(dataclasses.asdict(obj), sort_keys=True)


@functools.cache
def _field_names(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(cls))


def _row(cls: type, data: dict[str, Any]) -> Any:
    names = _field_names(cls)
    kwargs = {k: v for k, v in data.items() if k in names}
    if cls is Portal:
        kwargs["ips"] = [PortalAddress(**a) for a in kwargs.get("ips", [])]
    return cls(**kwargs)


def _read_config(db: sqlite3.Connection) -> Config:
    """The stored configuration, read in one transaction (one committed state, WAL snapshot)."""
    db.execute("BEGIN")
    try:
        cfg = Config()
        singles = dict(db.execute("SELECT name, data FROM singletons").fetchall())
        _check_schema(singles.get("schema"))
        if "global" in singles:
            cfg.global_config = _row(GlobalConfig, json.loads(singles["global"]))
        if "service" in singles:
            cfg.service = _row(ServiceState, json.loads(singles["service"]))
        if "next_ids" in singles:
            cfg.next_ids = {k: int(v) for k, v in json.loads(singles["next_ids"]).items()}
        for collection, oid, data in db.execute("SELECT collection, id, data FROM objects ORDER BY collection, id"):
            cls = _ROW_TYPES.get(collection)
            if cls is None:
                continue
            getattr(cfg, collection)[oid] = _row(cls, json.loads(data))
        return cfg
    finally:
        db.execute("COMMIT")


def _check_schema(stored: str | None) -> None:
    if stored is not None and json.loads(stored) > SCHEMA_VERSION:
        raise ValueError(f"schema {stored} is newer than this program ({SCHEMA_VERSION})")


def read_snapshot(path: str | os.PathLike[str]) -> Config:
    """The configuration stored at `path`, read through a read-only connection in one read
    transaction: consistent, and including commits still in the WAL, also while a server has the
    database open. Never creates or changes the database. Raises StoreError."""
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"{path}: no configuration database here")
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error as err:
        raise StoreError(f"{path}: cannot open the configuration database: {err}") from err
    try:
        return _read_config(db)
    except (sqlite3.Error, ValueError, TypeError) as err:
        raise StoreError(f"{path}: cannot read the configuration: {err}") from err
    finally:
        db.close()


class ConfigStore:
    """Load and atomically save a `Config`. Thread-safe; blocking (call it off the event loop)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        except (OSError, sqlite3.Error) as err:
            raise StoreError(f"{self.path}: cannot open the configuration database: {err}") from err
        try:
            self._prepare()
        except BaseException:
            self._db.close()
            raise

    def _prepare(self) -> None:
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS objects (collection TEXT NOT NULL, id INTEGER NOT NULL,"
                " data TEXT NOT NULL, PRIMARY KEY (collection, id))"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS singletons (name TEXT PRIMARY KEY, data TEXT NOT NULL)"
            )
            row = self._db.execute("SELECT data FROM singletons WHERE name='schema'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO singletons VALUES ('schema', ?)", (json.dumps(SCHEMA_VERSION),))
        except sqlite3.Error as err:
            raise StoreError(f"{self.path}: not a usable configuration database: {err}") from err
        try:
            _check_schema(row[0] if row is not None else None)
        except ValueError as err:
            raise StoreError(f"{self.path}: {err}") from err

    def load(self) -> Config:
        with self._lock:
            try:
                return self._load()
            except (sqlite3.Error, ValueError, TypeError) as err:  # ValueError: bad JSON
                raise StoreError(f"{self.path}: cannot read the configuration: {err}") from err

    def _load(self) -> Config:
        return _read_config(self._db)

    def save(self, cfg: Config) -> None:
        """Store `cfg` in a single transaction: a `Draft`'s changed rows only (its base must be
        what is stored), else the whole configuration."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                if isinstance(cfg, Draft):
                    self._write_changes(cfg)
                else:
                    self._db.execute("DELETE FROM objects")
                    rows = [
                        (collection, oid, _to_json(obj))
                        for collection in _ROW_TYPES
                        for oid, obj in getattr(cfg, collection).items()
                    ]
                    self._db.executemany("INSERT INTO objects VALUES (?, ?, ?)", rows)
                singles = [
                    ("global", _to_json(cfg.global_config)),
                    ("service", _to_json(cfg.service)),
                    ("next_ids", json.dumps(cfg.next_ids, sort_keys=True)),
                ]
                self._db.executemany("INSERT OR REPLACE INTO singletons VALUES (?, ?)", singles)
                self._db.execute("COMMIT")
            except BaseException as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"{self.path}: cannot write the configuration: {exc}") from exc
                raise

    def _write_changes(self, draft: Draft) -> None:
        upserts, deletes = [], []
        for collection in _ROW_TYPES:
            for oid, obj in draft.changes(collection).items():
                if obj is None:
                    deletes.append((collection, oid))
                else:
                    upserts.append((collection, oid, _to_json(obj)))
        self._db.executemany("DELETE FROM objects WHERE collection = ? AND id = ?", deletes)
        self._db.executemany("INSERT OR REPLACE INTO objects VALUES (?, ?, ?)", upserts)

    def close(self) -> None:
        with self._lock:
            self._db.close()
