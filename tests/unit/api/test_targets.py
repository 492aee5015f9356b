"""Targets, target groups and LUN mappings: names, links, auth groups, LUN ids and cascades."""

from __future__ import annotations

import pytest

from pyscsi_target.api import state as api_state

from . import builders as b
from .conftest import Api, P

FK = "Select a valid choice. That choice is not one of the available choices."


# ---- target (spec Part A §3.1/§3.2, Part B §B.2.9) --------------------------------------------


async def test_target_names_are_lower_cased_and_checked(api: Api) -> None:
    assert (await b.target(api, "  MyTarget "))["iscsi_target_name"] == "mytarget"
    for bad in ("has space", "under_score", "slash/no", "é"):
        assert await api.conflict("POST", f"{P}/target/", {"iscsi_target_name": bad}) == {
            "iscsi_target_name": ['Use alphanumeric characters, ".", "-" and ":".']}


async def test_duplicate_names_and_iqns(api: Api) -> None:
    await b.target(api, "disk1")
    dup = "A target with that name already exists."
    assert await api.conflict("POST", f"{P}/target/", {"iscsi_target_name": "DISK1"}) == {"iscsi_target_name": [dup]}
    same_iqn = {"iscsi_target_name": "iqn.2005-10.org.freenas.ctl:disk1"}
    assert await api.conflict("POST", f"{P}/target/", same_iqn) == {"iscsi_target_name": [dup]}


@pytest.mark.parametrize(
    "name", ["iqn.2016-04.com.example:storage.disk1", "eui.02004567a425678d", "naa.52004567ba64678d",
             "naa.52004567ba64678d52004567ba64678d"],
)
async def test_full_iscsi_names_are_kept_verbatim(api: Api, name: str) -> None:
    assert (await b.target(api, name))["iscsi_target_name"] == name
    assert api.control.config.target_iqn(api.control.config.targets[1]) == name


@pytest.mark.parametrize("name", ["iqn.2016-13.com.example", "iqn.16-04.com.example", "eui.1234", "naa.xyz",
                                  "iqn.2016-04.-bad"])
async def test_malformed_full_names_are_refused(api: Api, name: str) -> None:
    assert await api.conflict("POST", f"{P}/target/", {"iscsi_target_name": name}) == {
        "iscsi_target_name": ["Names starting with iqn., eui. or naa. must be valid iSCSI names (RFC 3720 §3.2.6.3)."]}


async def test_the_full_name_is_at_most_223_bytes(api: Api) -> None:
    await api.ok("PUT", f"{P}/globalconfiguration/", {"iscsi_basename": "iqn.2005-10.org." + "b" * 100})
    errors = await api.conflict("POST", f"{P}/target/", {"iscsi_target_name": "n" * 110})
    assert errors["iscsi_target_name"][0].endswith("is longer than 223 bytes.")
    await b.target(api, "n" * 100)


@pytest.mark.parametrize(
    ("alias", "message"),
    [('a"b', "Double quotes are not allowed."),
     ("Target", "target is a reserved word, please choose a different name for this alias."),
     ("tab\there", "Control characters are not allowed."),
     ("taken", "Alias name must be unique.")],
)
async def test_alias_rules(api: Api, alias: str, message: str) -> None:
    await b.target(api, "first", iscsi_target_alias="taken")
    assert await api.conflict("POST", f"{P}/target/", {"iscsi_target_name": "t", "iscsi_target_alias": alias}) == {
        "iscsi_target_alias": [message]}


async def test_empty_alias_is_null(api: Api) -> None:
    assert (await b.target(api, "t", iscsi_target_alias=""))["iscsi_target_alias"] is None


@pytest.mark.parametrize(
    ("mode", "message"),
    [("fc", "Fibre Channel not enabled"), ("both", "Fibre Channel not enabled"),
     ("nvme", "Select a valid choice. nvme is not one of the available choices.")],
)
async def test_target_mode(api: Api, mode: str, message: str) -> None:
    assert await api.conflict("POST", f"{P}/target/", {"iscsi_target_name": "t", "iscsi_target_mode": mode}) == {
        "iscsi_target_mode": [message]}


# ---- target group (spec Part B §B.2.11) --------------------------------------------------------


async def test_targetgroup_links_must_exist(api: Api) -> None:
    assert await api.conflict("POST", f"{P}/targetgroup/", {"iscsi_target": 9, "iscsi_target_portalgroup": 9,
                                                          "iscsi_target_initiatorgroup": 9}) == {
        "iscsi_target": [FK], "iscsi_target_portalgroup": [FK], "iscsi_target_initiatorgroup": [FK]}
    assert await api.conflict("POST", f"{P}/targetgroup/", {"iscsi_target": "x"}) == {
        "iscsi_target": [FK], "iscsi_target_portalgroup": ["This field is required."]}


async def test_a_target_and_portal_pair_is_unique(api: Api) -> None:
    await b.target(api)
    await b.portal(api)
    await b.group(api, 1, 1)
    assert await api.conflict("POST", f"{P}/targetgroup/", {"iscsi_target": 1, "iscsi_target_portalgroup": 1}) == {
        "__all__": ["iSCSI Group with this Target and Portal Group ID already exists."]}


@pytest.mark.parametrize("group", [None, -1, "absent"])
async def test_chap_needs_an_auth_group(api: Api, group: object) -> None:
    await b.target(api)
    await b.portal(api)
    body: dict[str, object] = {"iscsi_target": 1, "iscsi_target_portalgroup": 1, "iscsi_target_authtype": "CHAP"}
    if group != "absent":
        body["iscsi_target_authgroup"] = group
    assert await api.conflict("POST", f"{P}/targetgroup/", body) == {
        "iscsi_target_authgroup": ["Authentication group is required for CHAP and CHAP Mutual"]}


async def test_auth_group_is_a_tag_that_must_exist(api: Api) -> None:
    await b.target(api)
    await b.portal(api)
    await b.credential(api, tag=7)
    body = {"iscsi_target": 1, "iscsi_target_portalgroup": 1, "iscsi_target_authtype": "CHAP",
            "iscsi_target_authgroup": 3}
    assert await api.conflict("POST", f"{P}/targetgroup/", body) == {
        "iscsi_target_authgroup": ["Select a valid choice. 3 is not one of the available choices."]}
    created = await b.group(api, 1, 1, iscsi_target_authtype="CHAP", iscsi_target_authgroup=7)
    assert created["iscsi_target_authgroup"] == 7
    cleared = await api.ok("PUT", f"{P}/targetgroup/{created['id']}/",
                           {"iscsi_target_authtype": "None", "iscsi_target_authgroup": -1})
    assert cleared["iscsi_target_authgroup"] is None


async def test_chap_mutual_needs_peer_users_in_the_whole_group(api: Api) -> None:
    await b.target(api)
    await b.portal(api)
    await b.credential(api, tag=1, user="a", iscsi_target_auth_peeruser="pa",
                       iscsi_target_auth_peersecret="peersecret1234")
    await b.credential(api, tag=1, user="b")
    body = {"iscsi_target": 1, "iscsi_target_portalgroup": 1, "iscsi_target_authtype": "CHAP Mutual",
            "iscsi_target_authgroup": 1}
    assert await api.conflict("POST", f"{P}/targetgroup/", body) == {
        "iscsi_target_authgroup": ["This authentication group does not support CHAP MUTUAL"]}
    await api.ok("DELETE", f"{P}/authcredential/2/", status=204)
    await api.ok("POST", f"{P}/targetgroup/", body, status=201)
    # Now the group is used for CHAP Mutual: a credential without a peer user cannot join it.
    errors = await api.conflict("POST", f"{P}/authcredential/", {
        "iscsi_target_auth_tag": 1, "iscsi_target_auth_user": "c", "iscsi_target_auth_secret": "secretsecret12"})
    assert list(errors) == ["iscsi_target_auth_peeruser"]


async def test_authtype_choices(api: Api) -> None:
    assert (await api.conflict("POST", f"{P}/targetgroup/", {"iscsi_target": 1, "iscsi_target_portalgroup": 1,
                                                           "iscsi_target_authtype": "Auto"}))[
        "iscsi_target_authtype"] == ["Select a valid choice. Auto is not one of the available choices."]


# ---- target to extent (spec Part B §B.2.4) ----------------------------------------------------


async def _two_targets_three_extents(api: Api) -> None:
    await b.target(api, "t1")
    await b.target(api, "t2")
    for name in ("e1", "e2", "e3"):
        await b.extent(api, name)


async def test_lunid_auto_takes_the_lowest_free_and_zero_stays_zero(api: Api) -> None:
    await _two_targets_three_extents(api)
    assert (await b.mapping(api, 1, 1, lunid=0))["iscsi_lunid"] == 0
    assert (await b.mapping(api, 1, 2, lunid=2))["iscsi_lunid"] == 2
    assert (await b.mapping(api, 1, 3))["iscsi_lunid"] == 1
    explicit_null = await api.ok("POST", f"{P}/targettoextent/",
                                 {"iscsi_target": 2, "iscsi_extent": 1, "iscsi_lunid": None}, status=201)
    assert explicit_null["iscsi_lunid"] == 0


async def test_lunid_rules(api: Api) -> None:
    await _two_targets_three_extents(api)
    await b.mapping(api, 1, 1, lunid=5)
    post: dict[str, object] = {"iscsi_target": 1, "iscsi_extent": 2}
    assert await api.conflict("POST", f"{P}/targettoextent/", {**post, "iscsi_lunid": 5}) == {
        "iscsi_lunid": ["LUN ID is already being used for this target."]}
    for bad in (-1, 1024, 99999):
        assert await api.conflict("POST", f"{P}/targettoextent/", {**post, "iscsi_lunid": bad}) == {
            "iscsi_lunid": ["LUN ID must be a positive integer and lower than 1024"]}
    for bad_value in ("five", 1.5, True):
        assert await api.conflict("POST", f"{P}/targettoextent/", {**post, "iscsi_lunid": bad_value}) == {
            "iscsi_lunid": ["LUN ID must be a positive integer"]}
    assert (await b.mapping(api, 1, 2, lunid="1023"))["iscsi_lunid"] == 1023
    assert (await b.mapping(api, 2, 1, lunid=5))["iscsi_lunid"] == 5  # another target may reuse it


async def test_an_extent_is_in_a_target_once(api: Api) -> None:
    await _two_targets_three_extents(api)
    await b.mapping(api, 1, 1)
    assert await api.conflict("POST", f"{P}/targettoextent/", {"iscsi_target": 1, "iscsi_extent": 1}) == {
        "iscsi_target": ["Extent is already in this target."]}
    assert await api.conflict("POST", f"{P}/targettoextent/", {"iscsi_target": 3, "iscsi_extent": 9}) == {
        "iscsi_target": [FK], "iscsi_extent": [FK]}


async def test_updating_a_mapping(api: Api) -> None:
    await _two_targets_three_extents(api)
    await b.mapping(api, 1, 1, lunid=0)
    moved = await b.mapping(api, 1, 2, lunid=3)
    url = f"{P}/targettoextent/{moved['id']}/"
    assert (await api.ok("PUT", url, {"iscsi_extent": 3}))["iscsi_lunid"] == 3  # omitted: kept
    assert (await api.ok("PUT", url, {"iscsi_lunid": None}))["iscsi_lunid"] == 1  # null: auto again
    assert (await api.ok("PUT", url, {"iscsi_target": 2}))["iscsi_lunid"] == 1


async def test_a_full_target_has_no_free_lun(api: Api) -> None:
    from pyscsi_target.model import LunMapping

    await _two_targets_three_extents(api)
    config = api.control.config
    for lun in range(1024):  # fill target 1 directly: 1024 POSTs would only slow the test down
        config.mappings[1000 + lun] = LunMapping(1000 + lun, target=1, extent=1000 + lun, lunid=lun)
    config.indexed()  # written behind the API's back: index it as a load does
    assert await api.conflict("POST", f"{P}/targettoextent/", {"iscsi_target": 1, "iscsi_extent": 1}) == {
        "iscsi_lunid": ["No free LUN ID on this target (0-1023 are all in use)."]}


# ---- cascades (spec Part A §4.1, Part B §B.2.3) -----------------------------------------------


async def _graph(api: Api) -> None:
    await _two_targets_three_extents(api)
    await b.portal(api, "127.0.0.1:3260")
    await b.portal(api, "127.0.0.2:3260")
    await b.group(api, 1, 1)
    await b.group(api, 1, 2)
    await b.group(api, 2, 1)
    await b.mapping(api, 1, 1)
    await b.mapping(api, 1, 2)
    await b.mapping(api, 2, 2)


async def test_deleting_a_target_deletes_its_groups_and_mappings(api: Api) -> None:
    await _graph(api)
    await api.ok("DELETE", f"{P}/target/1/", status=204)
    assert [g["id"] for g in await api.ok("GET", f"{P}/targetgroup/")] == [3]
    assert [m["id"] for m in await api.ok("GET", f"{P}/targettoextent/")] == [3]
    assert len(await api.ok("GET", f"{P}/extent/")) == 3  # extents stay
    assert len(api.control.applied[-1].mappings) == 1  # one apply carried the whole cascade


async def test_deleting_an_extent_deletes_its_mappings_and_keeps_the_file(api: Api) -> None:
    await _graph(api)
    path = api.control.config.extents[2].path
    open(path, "wb").close()  # as the server would have created it
    await api.ok("DELETE", f"{P}/extent/2/", status=204)
    assert [m["id"] for m in await api.ok("GET", f"{P}/targettoextent/")] == [1]
    import os

    assert os.path.exists(path)


async def test_deleting_a_portal_deletes_its_groups_and_renumbers_tags(api: Api) -> None:
    await _graph(api)
    await b.portal(api, "127.0.0.3:3260")
    await api.ok("DELETE", f"{P}/portal/1/", status=204)
    assert [g["id"] for g in await api.ok("GET", f"{P}/targetgroup/")] == [2]
    portals = await api.ok("GET", f"{P}/portal/")
    assert [(p["id"], p["iscsi_target_portal_tag"]) for p in portals] == [(2, 1), (3, 2)]


async def test_cascaded_mapping_delete_answers_204_and_unknown_ids_404(api: Api) -> None:
    await _graph(api)
    await api.ok("DELETE", f"{P}/target/1/", status=204)  # removes mappings 1, 2 and groups 1, 2
    await api.ok("DELETE", f"{P}/targettoextent/1/", status=204)  # Proxmox's second delete
    await api.ok("DELETE", f"{P}/targetgroup/2/", status=204)
    assert (await api.call("GET", f"{P}/targettoextent/1/")).status_code == 404  # only DELETE forgives
    assert (await api.call("DELETE", f"{P}/targettoextent/99/")).status_code == 404
    await api.ok("DELETE", f"{P}/targettoextent/3/", status=204)
    assert (await api.call("DELETE", f"{P}/targettoextent/3/")).status_code == 404  # deleted directly


async def test_the_cascade_memory_fades(api: Api) -> None:
    now = [0.0]
    api.app.extensions["pyscsi_target"].cascaded.clock = lambda: now[0]
    await _graph(api)
    await api.ok("DELETE", f"{P}/extent/1/", status=204)
    now[0] += api_state.CASCADE_MEMORY_SECONDS
    assert (await api.call("DELETE", f"{P}/targettoextent/1/")).status_code == 404


async def test_either_delete_order_of_the_proxmox_plugin_works(api: Api) -> None:
    await _graph(api)
    await api.ok("DELETE", f"{P}/targettoextent/1/", status=204)  # mapping first, then extent
    await api.ok("DELETE", f"{P}/extent/1/", status=204)
    await api.ok("DELETE", f"{P}/extent/3/", status=204)
    await api.ok("DELETE", f"{P}/extent/2/", status=204)  # extent first, then its mappings
    await api.ok("DELETE", f"{P}/targettoextent/2/", status=204)
    await api.ok("DELETE", f"{P}/targettoextent/3/", status=204)
    assert await api.ok("GET", f"{P}/targettoextent/") == []
