"""Every collection resource: create, list, detail, partial update, delete, with FreeNAS's keys/defaults."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from . import builders as b
from .conftest import Api, P

Make = Callable[[Api, int], Awaitable[dict[str, Any]]]


async def _prereqs(api: Api) -> None:
    """Objects the dependent resources point at: targets 1-3, portals 1-3, extents 1-3."""
    for i in range(1, 4):
        await b.target(api, f"base{i}")
        await b.portal(api, f"127.0.0.{i}:3260")
        await b.extent(api, f"base{i}")


async def _make_group(api: Api, i: int) -> dict[str, Any]:
    await _prereqs(api) if i == 1 else None
    return await b.group(api, 1, i)


async def _make_mapping(api: Api, i: int) -> dict[str, Any]:
    await _prereqs(api) if i == 1 else None
    return await b.mapping(api, 1, i)


# resource -> (make the i-th object, a partial update, the keys the object has, its defaults)
CASES: dict[str, tuple[Make, dict[str, Any], set[str], dict[str, Any]]] = {
    "portal": (
        lambda api, i: b.portal(api, f"127.0.1.{i}:3260"),
        {"iscsi_target_portal_comment": "front"},
        {"id", "iscsi_target_portal_tag", "iscsi_target_portal_comment", "iscsi_target_portal_ips",
         "iscsi_target_portal_discoveryauthmethod", "iscsi_target_portal_discoveryauthgroup"},
        {"iscsi_target_portal_comment": "", "iscsi_target_portal_discoveryauthmethod": "None",
         "iscsi_target_portal_discoveryauthgroup": None},
    ),
    "authorizedinitiator": (
        lambda api, i: b.initiator(api, iscsi_target_initiator_comment=f"c{i}"),
        {"iscsi_target_initiator_auth_network": "192.168.3.0/24"},
        {"id", "iscsi_target_initiator_tag", "iscsi_target_initiator_initiators",
         "iscsi_target_initiator_auth_network", "iscsi_target_initiator_comment"},
        {"iscsi_target_initiator_initiators": "ALL", "iscsi_target_initiator_auth_network": "ALL"},
    ),
    "authcredential": (
        lambda api, i: b.credential(api, tag=i, user=f"user{i}"),
        {"iscsi_target_auth_peeruser": "myuser", "iscsi_target_auth_peersecret": "peersecret1234"},
        {"id", "iscsi_target_auth_tag", "iscsi_target_auth_user", "iscsi_target_auth_secret",
         "iscsi_target_auth_peeruser", "iscsi_target_auth_peersecret"},
        {"iscsi_target_auth_peeruser": "", "iscsi_target_auth_peersecret": "",
         "iscsi_target_auth_secret": "secretsecret12"},
    ),
    "target": (
        lambda api, i: b.target(api, f"t{i}"),
        {"iscsi_target_alias": "test"},
        {"id", "iscsi_target_name", "iscsi_target_alias", "iscsi_target_mode"},
        {"iscsi_target_alias": None, "iscsi_target_mode": "iscsi"},
    ),
    "targetgroup": (
        _make_group,
        {"iscsi_target_initialdigest": "CHAP"},
        {"id", "iscsi_target", "iscsi_target_portalgroup", "iscsi_target_initiatorgroup",
         "iscsi_target_authtype", "iscsi_target_authgroup", "iscsi_target_initialdigest"},
        {"iscsi_target_initiatorgroup": None, "iscsi_target_authtype": "None",
         "iscsi_target_authgroup": None, "iscsi_target_initialdigest": "Auto"},
    ),
    "extent": (
        lambda api, i: b.extent(api, f"e{i}"),
        {"iscsi_target_extent_filesize": "20MB"},
        {"id", "iscsi_target_extent_name", "iscsi_target_extent_type", "iscsi_target_extent_path",
         "iscsi_target_extent_filesize", "iscsi_target_extent_blocksize", "iscsi_target_extent_pblocksize",
         "iscsi_target_extent_avail_threshold", "iscsi_target_extent_comment", "iscsi_target_extent_naa",
         "iscsi_target_extent_serial", "iscsi_target_extent_insecure_tpc", "iscsi_target_extent_xen",
         "iscsi_target_extent_rpm", "iscsi_target_extent_ro", "iscsi_target_extent_legacy",
         "iscsi_target_extent_enabled", "iscsi_target_extent_state"},
        {"iscsi_target_extent_blocksize": 512, "iscsi_target_extent_pblocksize": False,
         "iscsi_target_extent_avail_threshold": None, "iscsi_target_extent_comment": "",
         "iscsi_target_extent_insecure_tpc": True, "iscsi_target_extent_xen": False,
         "iscsi_target_extent_rpm": "SSD", "iscsi_target_extent_ro": False,
         "iscsi_target_extent_legacy": False, "iscsi_target_extent_enabled": True,
         "iscsi_target_extent_state": None},
    ),
    "targettoextent": (
        _make_mapping,
        {"iscsi_lunid": 7},
        {"id", "iscsi_target", "iscsi_extent", "iscsi_lunid"},
        {},
    ),
}


@pytest.mark.parametrize("name", list(CASES))
async def test_create_detail_update_delete(api: Api, name: str) -> None:
    make, update, keys, defaults = CASES[name]
    created = await make(api, 1)
    assert set(created) == keys
    assert {k: created[k] for k in defaults} == defaults
    url = f"{P}/{name}/{created['id']}/"

    response = await api.call("GET", url)
    assert response.status_code == 200
    assert await response.get_json() == created

    updated = await api.ok("PUT", url, update)
    assert updated == {**created, **update} | ({"iscsi_target_extent_filesize": str(20 << 20)} if name == "extent"
                                                else {})
    assert await api.ok("GET", url) == updated

    assert await api.ok("DELETE", url, status=204) is None
    assert (await api.call("GET", url)).status_code == 404
    assert (await api.call("DELETE", url)).status_code == 404
    assert (await api.call("PUT", url, update)).status_code == 404


@pytest.mark.parametrize("name", list(CASES))
async def test_create_answers_201_with_location_and_lists_it(api: Api, name: str) -> None:
    make = CASES[name][0]
    first = await make(api, 1)
    second = await make(api, 2)
    listed = await api.ok("GET", f"{P}/{name}/?limit=0")
    assert first in listed and second in listed
    response = await api.call("POST", f"{P}/{name}/", {})
    # Every resource but authorizedinitiator (all defaults: ALL/ALL) has a required field.
    assert response.status_code == (201 if name == "authorizedinitiator" else 409)


async def test_location_header_points_at_the_new_object(api: Api) -> None:
    response = await api.call("POST", f"{P}/target/", {"iscsi_target_name": "located"})
    assert response.status_code == 201
    location = response.headers["Location"]
    assert location.endswith(f"{P}/target/{(await response.get_json())['id']}/")


@pytest.mark.parametrize("name", list(CASES))
async def test_patch_is_a_partial_update_too(api: Api, name: str) -> None:
    make, update, _keys, _defaults = CASES[name]
    created = await make(api, 1)
    patched = await api.ok("PATCH", f"{P}/{name}/{created['id']}/", update)
    assert {k: patched[k] for k in update if k != "iscsi_target_extent_filesize"} == {
        k: v for k, v in update.items() if k != "iscsi_target_extent_filesize"
    }


async def test_ids_are_never_reused(api: Api) -> None:
    first = await b.target(api, "a")
    await api.ok("DELETE", f"{P}/target/{first['id']}/", status=204)
    second = await b.target(api, "b")
    assert second["id"] == first["id"] + 1
