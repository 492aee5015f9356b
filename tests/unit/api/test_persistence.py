"""The seam: persistence across a restart, refusals from the live target, no half-applied change."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import trio
import trio.testing

from pyscsi_target.model import ApplyError, ConfigStore

from . import builders as b
from .conftest import Api, P, make_api

RESOURCES = ("portal", "authorizedinitiator", "authcredential", "target", "targetgroup", "extent",
             "targettoextent")


async def _everything(api: Api) -> dict[str, Any]:
    await b.portal(api, "0.0.0.0:3260", "[::]:3260")
    await b.initiator(api, iscsi_target_initiator_initiators="iqn.1993-08.org.debian:01:abc")
    await b.credential(api, tag=2, iscsi_target_auth_peeruser="peer", iscsi_target_auth_peersecret="peersecret1234")
    await b.target(api, "disk1", iscsi_target_alias="Disk One")
    await b.group(api, 1, 1, iscsi_target_initiatorgroup=1, iscsi_target_authtype="CHAP Mutual",
                  iscsi_target_authgroup=2)
    await b.extent(api, "e1", iscsi_target_extent_blocksize=4096, iscsi_target_extent_rpm="7200")
    await b.mapping(api, 1, 1, lunid=3)
    await api.ok("PUT", f"{P}/globalconfiguration/", {"iscsi_isns_servers": "10.0.0.1"})
    await api.ok("PUT", "/api/v1.0/services/services/iscsitarget/", {"srv_enable": False})
    state = {name: await api.ok("GET", f"{P}/{name}/?limit=0") for name in RESOURCES}
    state["global"] = await api.ok("GET", f"{P}/globalconfiguration/")
    state["service"] = await api.ok("GET", "/api/v1.0/services/services/iscsitarget/")
    return state


async def _state(api: Api) -> dict[str, Any]:
    state = {name: await api.ok("GET", f"{P}/{name}/?limit=0") for name in RESOURCES}
    state["global"] = await api.ok("GET", f"{P}/globalconfiguration/")
    state["service"] = await api.ok("GET", "/api/v1.0/services/services/iscsitarget/")
    return state


async def test_a_restart_serves_exactly_the_same_configuration(tmp_path: Path, api: Api) -> None:
    before = await _everything(api)
    assert api.control.store is not None
    api.control.store.close()
    restarted = make_api(tmp_path, ConfigStore(tmp_path / "config.db"))
    assert await _state(restarted) == before
    after = await b.target(restarted, "disk2")
    assert after["id"] == 2  # ids continue after a restart


async def test_a_refused_apply_is_a_409_naming_the_field_and_commits_nothing(tmp_path: Path, api: Api) -> None:
    await b.portal(api, "127.0.0.1:3260")
    before = copy.deepcopy(api.control.config)
    api.control.refuse = ApplyError("127.0.0.2:3260: address already in use", "portals", 2, "ips")
    response = await api.call("POST", f"{P}/portal/", {"iscsi_target_portal_ips": ["127.0.0.2:3260"]})
    assert response.status_code == 409
    assert await response.get_json() == {"iscsi_target_portal_ips": ["127.0.0.2:3260: address already in use"]}
    assert api.control.config == before
    assert ConfigStore(tmp_path / "config.db").load() == before
    # The next attempt, once the port is free, takes the next id as if nothing happened.
    assert (await b.portal(api, "127.0.0.2:3260"))["id"] == 2


async def test_refused_updates_and_deletes_change_nothing(api: Api) -> None:
    await b.target(api, "t")
    await b.extent(api, "e")
    await b.mapping(api, 1, 1)
    before = copy.deepcopy(api.control.config)
    api.control.refuse = ApplyError("device missing", "extents", 1, "path")
    assert await api.conflict("PUT", f"{P}/extent/1/", {"iscsi_target_extent_filesize": "2MB"}) == {
        "iscsi_target_extent_path": ["device missing"]}
    api.control.refuse = ApplyError("cannot end sessions")
    assert await api.conflict("DELETE", f"{P}/target/1/") == {"__all__": ["cannot end sessions"]}
    assert api.control.config == before
    # ... and a cascade that was refused is not remembered: its mapping still answers normally.
    await api.ok("GET", f"{P}/targettoextent/1/")


async def test_an_object_handed_out_is_never_mutated(api: Api) -> None:
    """Issue #12: the served configuration takes an applied change in place (O(change)), but a
    refused change never touches it, and an object read from it is replaced, never changed."""
    await b.target(api, "t")
    await b.extent(api, "e")
    snapshot = api.control.config
    frozen = copy.deepcopy(snapshot)
    target, extent = snapshot.targets[1], snapshot.extents[1]
    await api.conflict("PUT", f"{P}/target/1/", {"iscsi_target_name": "bad name"})
    await api.conflict("PUT", f"{P}/extent/1/", {"iscsi_target_extent_serial": 'x"'})
    assert snapshot == frozen
    await api.ok("PUT", f"{P}/target/1/", {"iscsi_target_name": "NEW"})
    await api.ok("DELETE", f"{P}/extent/1/", status=204)
    assert (target.name, extent.name) == ("t", "e")
    assert api.control.config.targets[1].name == "new" and 1 not in api.control.config.extents


async def test_concurrent_writes_are_serialised(api: Api) -> None:
    results: list[int] = []

    async def create() -> None:
        results.append((await api.call("POST", f"{P}/target/", {"iscsi_target_name": "race"})).status_code)

    api.control.gate = trio.Event()
    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(create)
        await trio.testing.wait_all_tasks_blocked()  # one apply is in progress, the others wait
        api.control.gate.set()
    assert sorted(results) == [201, 409, 409, 409]
    assert len(api.control.config.targets) == 1
