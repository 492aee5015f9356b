"""Fixtures for the API tests: a fake of the `TargetControl` interface and an authenticated client.

`FakeControl` keeps a `Config`, persists every applied change into a real `ConfigStore` (so a test
can "restart" by building a new app over the reloaded store), records what was applied, and can be
told to refuse the next apply with an `ApplyError`, as the live target does when a port is in use.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

from pyscsi_target.api import create_app
from pyscsi_target.model import ApplyError, Config, ConfigStore, SessionInfo, as_change, committed
from pyscsi_target.model.stats import ProcessStatistics, Statistics

PASSWORD = "correct horse battery"
VERSION = "9.9.9"
P = "/api/v1.0/services/iscsi"


class FakeControl:
    def __init__(self, store: ConfigStore | None = None) -> None:
        self.store = store
        self.config = (store.load() if store else Config()).indexed()
        self.refuse: ApplyError | None = None
        self.applied: list[Config] = []
        self.live_sessions: list[SessionInfo] = []
        #: extent id -> why it is not served, as extent_problems() reports it
        self.problems: dict[int, str] = {}
        #: when set, apply() waits for this event, as a slow live change would
        self.gate: trio.Event | None = None
        #: what statistics() returns, and the session ids end_session() was asked to end
        self.stats = Statistics(lus=[], portals=[], process=ProcessStatistics(config_applies={}, start_time=0.0))
        self.ended: list[int] = []

    def snapshot(self) -> Config:
        return self.config

    async def apply(self, new: Config) -> None:
        await trio.lowlevel.checkpoint()  # the real apply awaits: let other requests run meanwhile
        if self.gate is not None:
            await self.gate.wait()
        if self.refuse is not None:
            refusal, self.refuse = self.refuse, None
            raise refusal
        change = as_change(new, self.config)
        if self.store is not None:
            self.store.save(change)
        self.applied.append(change)
        self.config = committed(change, self.config)

    def sessions(self) -> list[SessionInfo]:
        return list(self.live_sessions)

    def extent_problems(self) -> dict[int, str]:
        return dict(self.problems)

    def statistics(self) -> Statistics:
        return self.stats

    async def end_session(self, session_id: int) -> bool:
        await trio.lowlevel.checkpoint()
        before = len(self.live_sessions)
        self.live_sessions = [s for s in self.live_sessions if s.id != session_id]
        self.ended.append(session_id)
        return len(self.live_sessions) < before


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


AUTH = basic("root", PASSWORD)


@dataclass
class Api:
    """An app over a FakeControl plus helpers that send root's credentials."""

    app: Any
    control: FakeControl
    roots: Path
    devices: Path

    async def call(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        headers = {**AUTH, **kw.pop("headers", {})}
        client = self.app.test_client()
        if body is not None and "data" not in kw:
            kw["json"] = body
        return await client.open(path, method=method, headers=headers, **kw)

    async def ok(self, method: str, path: str, body: Any = None, status: int = 200, **kw: Any) -> Any:
        response = await self.call(method, path, body, **kw)
        data = await response.get_data()
        assert response.status_code == status, (response.status_code, data)
        return await response.get_json() if data else None

    async def conflict(self, method: str, path: str, body: Any = None) -> dict[str, list[str]]:
        errors: dict[str, list[str]] = await self.ok(method, path, body, status=409)
        return errors


def make_api(tmp_path: Path, store: ConfigStore | None = None, **kw: Any) -> Api:
    roots = tmp_path / "extents"
    devices = tmp_path / "dev"
    roots.mkdir(exist_ok=True)
    (devices / "zvol" / "tank").mkdir(parents=True, exist_ok=True)
    control = FakeControl(store)
    kw.setdefault("allow_file_devices", True)  # the zvols here are regular files standing in
    app = create_app(
        control, password=PASSWORD, extent_roots=[str(roots)], device_root=str(devices), version=VERSION, **kw
    )
    return Api(app, control, roots, devices)


@pytest.fixture
def api(tmp_path: Path) -> Api:
    return make_api(tmp_path, ConfigStore(tmp_path / "config.db"))


@pytest.fixture
def make_zvol(api: Api) -> Callable[[str, int], str]:
    """A regular file standing in for /dev/zvol/tank/<name> (spec Part B §B.2.6)."""

    def make(name: str, size: int = 1 << 20) -> str:
        path = api.devices / "zvol" / "tank" / name
        with open(path, "wb") as f:
            f.truncate(size)
        return f"zvol/tank/{name}"

    return make


@pytest.fixture
def make_file(api: Api) -> Callable[[str, int], str]:
    def make(name: str, size: int = 1 << 20) -> str:
        path = api.roots / name
        os.makedirs(path.parent, exist_ok=True)
        with open(path, "wb") as f:
            f.truncate(size)
        return str(path)

    return make
