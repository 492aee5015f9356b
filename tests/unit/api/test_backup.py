"""api/backup.py: the backup document (issue #10 item 12). A configuration built through the API
round-trips exactly (ids, tags, NAAs and secrets kept), and a document the API would refuse is
refused as a whole, with errors keyed `<resource>/<id>/<field>`."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from pyscsi_target.api.backup import FORMAT_VERSION, export_document, import_document
from pyscsi_target.model import ConfigError
from pyscsi_target.model.validation import ValidationContext

from . import builders
from .conftest import VERSION, Api, P


def context(api: Api) -> ValidationContext:
    return ValidationContext.of([str(api.roots)], str(api.devices), allow_file_devices=True)


async def every_resource(api: Api, make_zvol: Callable[..., str]) -> None:
    """One of each resource, with mutual CHAP, discovery auth, an ACL, a zvol and a deleted object
    (so that ids and tags are not simply 1..n)."""
    await api.ok("PUT", f"{P}/globalconfiguration/", {"iscsi_basename": "iqn.2024-01.org.example", "iscsi_alua": True})
    await builders.credential(api, tag=4, user="alice", iscsi_target_auth_peeruser="tgt",
                              iscsi_target_auth_peersecret="peersecret123")
    spare = await builders.portal(api, "127.0.0.1:3999")
    await builders.portal(api, "0.0.0.0:3260", "[::1]:3261", iscsi_target_portal_discoveryauthmethod="CHAP",
                          iscsi_target_portal_discoveryauthgroup=4)
    await api.ok("DELETE", f"{P}/portal/{spare['id']}/", status=204)  # the other portal keeps id 2, tag 1
    acl = await builders.initiator(api, iscsi_target_initiator_initiators="iqn.1993-08.org.debian:01:abc",
                                   iscsi_target_initiator_auth_network="10.0.0.0/8")
    first = await builders.target(api, "disk0", iscsi_target_alias="first")
    second = await builders.target(api, "disk1")
    await builders.group(api, first["id"], 2, iscsi_target_initiatorgroup=acl["id"],
                         iscsi_target_authtype="CHAP Mutual", iscsi_target_authgroup=4)
    await builders.group(api, second["id"], 2)
    ext = await builders.extent(api, "e0", iscsi_target_extent_serial="SER0")
    zvol = await api.ok("POST", f"{P}/extent/", {"iscsi_target_extent_name": "z", "iscsi_target_extent_type": "Disk",
                                                 "iscsi_target_extent_disk": make_zvol("z")}, status=201)
    await builders.mapping(api, first["id"], ext["id"], lunid=5)
    await builders.mapping(api, second["id"], zvol["id"])
    await api.ok("PUT", "/api/v1.0/services/services/iscsitarget/", {"srv_enable": False})


async def test_round_trip_is_exact(api: Api, make_zvol: Callable[..., str]) -> None:
    await every_resource(api, make_zvol)
    cfg = api.control.config
    doc = export_document(cfg, VERSION)
    assert doc["format_version"] == FORMAT_VERSION and doc["pyscsi_target_version"] == VERSION
    assert doc["service"]["srv_enable"] is False
    for name in ("extent", "portal", "target", "authcredential", "targettoextent"):  # what GET returns,
        listed = await api.ok("GET", f"{P}/{name}/")  # less the running target's facts
        assert doc[name] == [{k: v for k, v in obj.items() if k != "iscsi_target_extent_state"} for obj in listed]
    assert "iscsi_target_extent_state" not in doc["extent"][0]
    assert doc["authcredential"][0]["iscsi_target_auth_secret"] == "secretsecret12"
    text = json.dumps(doc)
    restored = import_document(json.loads(text), context(api))
    assert restored == cfg
    assert export_document(restored, VERSION) == doc


async def test_missing_tags_and_naa_are_assigned_as_on_a_post(api: Api) -> None:
    await builders.portal(api)
    await builders.extent(api)
    doc = export_document(api.control.config, VERSION)
    del doc["portal"][0]["iscsi_target_portal_tag"], doc["extent"][0]["iscsi_target_extent_naa"]
    cfg = import_document(doc, context(api))
    assert cfg.portals[1].tag == 1 and cfg.extents[1].naa.startswith("0x6589cfc000000")


def refused(doc: Any, api: Api) -> dict[str, list[str]]:
    with pytest.raises(ConfigError) as info:
        import_document(doc, context(api))
    return info.value.errors


async def test_what_the_api_refuses_is_refused(api: Api, tmp_path: Any) -> None:
    await builders.target(api, "t1")
    await builders.extent(api, "e0")
    await builders.extent(api, "e1")
    doc = export_document(api.control.config, VERSION)
    twins = json.loads(json.dumps(doc))
    twins["extent"][1]["iscsi_target_extent_name"] = "e0"
    assert refused(twins, api) == {f"extent/{i}/iscsi_target_extent_name": ["Extent name must be unique."]
                                   for i in (1, 2)}
    outside = json.loads(json.dumps(doc))
    outside["extent"][0]["iscsi_target_extent_path"] = str(tmp_path / "elsewhere.img")
    assert refused(outside, api) == {"extent/1/iscsi_target_extent_path": [
        "Your path to the extent must reside inside a volume/dataset mount point."]}
    dangling = json.loads(json.dumps(doc))
    dangling["targettoextent"] = [{"id": 1, "iscsi_target": 7, "iscsi_extent": 1, "iscsi_lunid": 0}]
    assert refused(dangling, api) == {"targettoextent/1/iscsi_target": [
        "Select a valid choice. That choice is not one of the available choices."]}
    nameless = json.loads(json.dumps(doc))
    del nameless["target"][0]["iscsi_target_name"]
    assert refused(nameless, api) == {"target/1/iscsi_target_name": ["This field is required."]}
    short = json.loads(json.dumps(doc))
    short["authcredential"] = [{"id": 1, "iscsi_target_auth_user": "u", "iscsi_target_auth_secret": "short"}]
    assert refused(short, api) == {"authcredential/1/iscsi_target_auth_secret": [
        "Secret must be between 12 and 16 characters."]}


async def test_read_only_values_are_checked(api: Api) -> None:
    await builders.portal(api, "127.0.0.1:3260")
    await builders.portal(api, "127.0.0.1:3261")
    await builders.extent(api, "e0")
    await builders.extent(api, "e1")
    doc = export_document(api.control.config, VERSION)
    doc["portal"][1]["iscsi_target_portal_tag"] = 1
    doc["extent"][0]["iscsi_target_extent_naa"] = "0xnothex"
    doc["extent"][1]["id"] = 1
    assert refused(doc, api) == {
        "extent/1/iscsi_target_extent_naa": ["Expected 16 or 32 hex digits, optionally after 0x."],
        "extent/1/id": ["This id is used twice."],
        "portal/2/iscsi_target_portal_tag": ["Tag 1 is used twice."],
    }


@pytest.mark.parametrize(("doc", "errors"), [
    ([], {"__all__": ["The file must hold one JSON object (the output of `config export`)."]}),
    ({"format": "pyscsi-target configuration", "format_version": FORMAT_VERSION + 1},
     {"format_version": [f"This program reads format versions 1 to {FORMAT_VERSION}."]}),
    ({"format": "something else", "format_version": 1}, {"format": ['Expected "pyscsi-target configuration".']}),
    ({"format": "pyscsi-target configuration", "format_version": 1, "globalconfiguration": {"iscsi_basename": "x"},
      "target": {"id": 1}}, {"target": ["Expected a JSON list."]}),
    ({"format": "pyscsi-target configuration", "format_version": 1, "globalconfiguration": {"iscsi_basename": "x"},
      "target": [7]}, {"target/0": ["Expected an object with a positive integer id."]}),
])
async def test_malformed_documents(api: Api, doc: Any, errors: dict[str, list[str]]) -> None:
    assert refused(doc, api) == errors
