"""Auth credentials, authorized initiators, portals, the global configuration and the service switch."""

from __future__ import annotations

from typing import Any

import pytest

from . import builders as b
from .conftest import Api, P

SECRET = "secretsecret12"


# ---- auth credential (spec Part B §B.2.8) -----------------------------------------------------


def _cred(**extra: Any) -> dict[str, Any]:
    return {"iscsi_target_auth_user": "u", "iscsi_target_auth_secret": SECRET, **extra}


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        (_cred(iscsi_target_auth_secret="short"),
         {"iscsi_target_auth_secret": ["Secret must be between 12 and 16 characters."]}),
        (_cred(iscsi_target_auth_secret="x" * 17),
         {"iscsi_target_auth_secret": ["Secret must be between 12 and 16 characters."]}),
        (_cred(iscsi_target_auth_peeruser="p"),
         {"iscsi_target_auth_peersecret": ["The peer secret is required if you set a peer user."]}),
        (_cred(iscsi_target_auth_peersecret="peersecret1234"),
         {"iscsi_target_auth_peeruser": ["The peer user is required if you set a peer secret."]}),
        (_cred(iscsi_target_auth_peeruser="p", iscsi_target_auth_peersecret=SECRET),
         {"iscsi_target_auth_peersecret": ["The peer secret cannot be the same as user secret."]}),
        (_cred(iscsi_target_auth_peeruser="p", iscsi_target_auth_peersecret="short"),
         {"iscsi_target_auth_peersecret": ["Peer Secret must be between 12 and 16 characters."]}),
        (_cred(iscsi_target_auth_user="a\nb"), {"iscsi_target_auth_user": ["Control characters are not allowed."]}),
        (_cred(iscsi_target_auth_secret="secret\x00secret1"),
         {"iscsi_target_auth_secret": ["Control characters are not allowed."]}),
        (_cred(iscsi_target_auth_tag=0),
         {"iscsi_target_auth_tag": ["Ensure this value is greater than or equal to 1."]}),
        ({"iscsi_target_auth_secret": SECRET}, {"iscsi_target_auth_user": ["This field is required."]}),
        ({"iscsi_target_auth_user": "u"}, {"iscsi_target_auth_secret": ["This field is required."]}),
    ],
)
async def test_credential_rules(api: Api, body: dict[str, Any], errors: dict[str, list[str]]) -> None:
    assert await api.conflict("POST", f"{P}/authcredential/", body) == errors


async def test_credentials_are_returned_to_root_and_share_tags(api: Api) -> None:
    one = await b.credential(api, tag=3, user="a", iscsi_target_auth_peeruser="pa",
                             iscsi_target_auth_peersecret="peersecret1234")
    two = await b.credential(api, tag=3, user="b")
    assert one["iscsi_target_auth_secret"] == SECRET and one["iscsi_target_auth_peersecret"] == "peersecret1234"
    assert one["iscsi_target_auth_tag"] == two["iscsi_target_auth_tag"] == 3
    spaced = await b.credential(api, tag=4, user="c", iscsi_target_auth_secret=" spaced secret ")
    assert spaced["iscsi_target_auth_secret"] == " spaced secret "  # secrets are not stripped


async def test_credential_delete_leaves_groups_pointing_at_the_tag(api: Api) -> None:
    await b.target(api)
    await b.portal(api)
    await b.credential(api, tag=5)
    grp = await b.group(api, 1, 1, iscsi_target_authtype="CHAP", iscsi_target_authgroup=5)
    await api.ok("DELETE", f"{P}/authcredential/1/", status=204)
    assert (await api.ok("GET", f"{P}/targetgroup/{grp['id']}/"))["iscsi_target_authgroup"] == 5


# ---- authorized initiator ---------------------------------------------------------------------


async def test_initiator_lists_are_checked_and_normalised(api: Api) -> None:
    created = await b.initiator(
        api,
        iscsi_target_initiator_initiators="iqn.1993-08.org.debian:01:abc, IQN.1991-05.com.microsoft:host",
        iscsi_target_initiator_auth_network="10.0.0.0/8 192.168.1.7\nfe80::/10 all",
    )
    assert created["iscsi_target_initiator_initiators"] == (
        "iqn.1993-08.org.debian:01:abc\nIQN.1991-05.com.microsoft:host")
    assert created["iscsi_target_initiator_auth_network"] == "10.0.0.0/8\n192.168.1.7\nfe80::/10\nALL"
    empty = await b.initiator(api, iscsi_target_initiator_initiators="", iscsi_target_initiator_auth_network=" ")
    assert empty["iscsi_target_initiator_initiators"] == "ALL"
    assert empty["iscsi_target_initiator_auth_network"] == "ALL"


async def test_bad_networks_and_names(api: Api) -> None:
    assert await api.conflict("POST", f"{P}/authorizedinitiator/",
                              {"iscsi_target_initiator_auth_network": "10.0.0.0/33"}) == {
        "iscsi_target_initiator_auth_network": [
            'The field is a not a valid IP address or network. The keyword "ALL" can be used to allow everything.']}
    errors = await api.conflict("POST", f"{P}/authorizedinitiator/", {"iscsi_target_initiator_initiators": "host1"})
    assert errors == {"iscsi_target_initiator_initiators": [
        '"host1" is not an iSCSI name (iqn., eui. or naa., RFC 3720 §3.2.6.3).']}


async def test_initiator_tags_are_assigned_and_renumbered(api: Api) -> None:
    for _ in range(3):
        await b.initiator(api)
    await b.target(api)
    await b.portal(api)
    grp = await b.group(api, 1, 1, iscsi_target_initiatorgroup=2)
    ignored = await api.ok("PUT", f"{P}/authorizedinitiator/3/", {"iscsi_target_initiator_tag": 9})
    assert ignored["iscsi_target_initiator_tag"] == 3  # read-only
    # an ACL in use is not deleted: FreeNAS's NULL would mean "everyone" (docs/api.md, issue #4)
    assert await api.conflict("DELETE", f"{P}/authorizedinitiator/2/") == {"__all__": [
        f"This authorized initiator is used by target group(s) {grp['id']}: deleting it would open their "
        "targets to every initiator. Change or delete those target groups first."]}
    assert (await api.ok("GET", f"{P}/targetgroup/{grp['id']}/"))["iscsi_target_initiatorgroup"] == 2
    await api.ok("PUT", f"{P}/targetgroup/{grp['id']}/", {"iscsi_target_initiatorgroup": 3})
    await api.ok("DELETE", f"{P}/authorizedinitiator/2/", status=204)
    tags = [(i["id"], i["iscsi_target_initiator_tag"]) for i in await api.ok("GET", f"{P}/authorizedinitiator/")]
    assert tags == [(1, 1), (3, 2)]
    assert (await api.ok("GET", f"{P}/targetgroup/{grp['id']}/"))["iscsi_target_initiatorgroup"] == 3
    assert (await b.initiator(api))["iscsi_target_initiator_tag"] == 3


# ---- portal (spec Part B §B.1.2, §B.2.10) -----------------------------------------------------


async def test_portal_addresses_are_parsed_and_normalised(api: Api) -> None:
    created = await b.portal(api, "0.0.0.0:3260", "[::1]:3260", "[0:0::1]:3261", " 127.0.0.1:860 ")
    assert created["iscsi_target_portal_ips"] == ["0.0.0.0:3260", "[::1]:3260", "[::1]:3261", "127.0.0.1:860"]
    hosts = [(a.host, a.port) for a in api.control.config.portals[1].ips]
    assert hosts == [("0.0.0.0", 3260), ("::1", 3260), ("::1", 3261), ("127.0.0.1", 860)]


@pytest.mark.parametrize(
    ("entry", "errors"),
    [
        ("0.0.0.0", {"iscsi_target_portal_ips": ['"0.0.0.0" has no port: write IP:PORT, for example 0.0.0.0:3260.']}),
        ("[::1]", {"iscsi_target_portal_ips": ['"[::1]" has no port: write IP:PORT, for example 0.0.0.0:3260.']}),
        ("::1", {"iscsi_target_portal_ips": ['"::1": write IPv6 addresses in brackets, as [addr]:port.']}),
        ("fe80::1:3260",
         {"iscsi_target_portal_ips": ['"fe80::1:3260": write IPv6 addresses in brackets, as [addr]:port.']}),
        ("300.1.1.1:3260", {"iscsi_target_portalip_ip": [
            "Select a valid choice. 300.1.1.1 is not one of the available choices."]}),
        ("host.example:3260", {"iscsi_target_portalip_ip": [
            "Select a valid choice. host.example is not one of the available choices."]}),
        ("[127.0.0.1]:3260", {"iscsi_target_portalip_ip": [
            "Select a valid choice. 127.0.0.1 is not one of the available choices."]}),
        ("0.0.0.0:0", {"iscsi_target_portalip_port": ["Ensure this value is greater than or equal to 1."]}),
        ("0.0.0.0:65536", {"iscsi_target_portalip_port": ["Ensure this value is less than or equal to 65535."]}),
        ("0.0.0.0:port", {"iscsi_target_portalip_port": ["Enter a whole number."]}),
        ("[::1]:", {"iscsi_target_portalip_port": ["Enter a whole number."]}),
    ],
)
async def test_bad_portal_addresses(api: Api, entry: str, errors: dict[str, list[str]]) -> None:
    assert await api.conflict("POST", f"{P}/portal/", {"iscsi_target_portal_ips": [entry]}) == errors


async def test_portal_address_list_shape(api: Api) -> None:
    assert await api.conflict("POST", f"{P}/portal/", {"iscsi_target_portal_ips": []}) == {
        "iscsi_target_portal_ips": ["At least one listen entry is required."]}
    assert await api.conflict("POST", f"{P}/portal/", {"iscsi_target_portal_ips": "0.0.0.0:3260"}) == {
        "iscsi_target_portal_ips": ["Enter a list of values."]}
    assert await api.conflict("POST", f"{P}/portal/", {}) == {"iscsi_target_portal_ips": ["This field is required."]}
    assert await api.conflict("POST", f"{P}/portal/", {"iscsi_target_portal_ips": [{"ip": "x"}]}) == {
        "iscsi_target_portal_ips": ["Enter a text value."]}


async def test_ip_and_port_are_unique_across_portals(api: Api) -> None:
    await b.portal(api, "0.0.0.0:3260")
    in_use = {"__all__": ["This IP and port are already in use."]}
    assert await api.conflict("POST", f"{P}/portal/", {"iscsi_target_portal_ips": ["0.0.0.0:3260"]}) == in_use
    assert await api.conflict("POST", f"{P}/portal/",
                              {"iscsi_target_portal_ips": ["127.0.0.1:3261", "127.0.0.1:3261"]}) == in_use
    second = await b.portal(api, "0.0.0.0:3261")
    await api.ok("PUT", f"{P}/portal/{second['id']}/", {"iscsi_target_portal_ips": ["0.0.0.0:3261", "[::]:3261"]})


async def test_portal_tags_are_forced(api: Api) -> None:
    first = await b.portal(api, "127.0.0.1:3260", iscsi_target_portal_tag=40)
    second = await b.portal(api, "127.0.0.2:3260")
    assert (first["iscsi_target_portal_tag"], second["iscsi_target_portal_tag"]) == (1, 2)


async def test_discovery_auth(api: Api) -> None:
    body: dict[str, Any] = {"iscsi_target_portal_ips": ["0.0.0.0:3260"],
                            "iscsi_target_portal_discoveryauthmethod": "CHAP"}
    assert await api.conflict("POST", f"{P}/portal/", body) == {"iscsi_target_portal_discoveryauthgroup": [
        "This field is required if discovery method is set to CHAP or CHAP Mutual."]}
    assert await api.conflict("POST", f"{P}/portal/", {**body, "iscsi_target_portal_discoveryauthgroup": 4}) == {
        "iscsi_target_portal_discoveryauthgroup": ["Select a valid choice. 4 is not one of the available choices."]}
    await b.credential(api, tag=4)
    created = await api.ok("POST", f"{P}/portal/", {**body, "iscsi_target_portal_discoveryauthgroup": 4}, status=201)
    mutual = {"iscsi_target_portal_discoveryauthmethod": "CHAP Mutual"}
    assert await api.conflict("PUT", f"{P}/portal/{created['id']}/", mutual) == {
        "iscsi_target_portal_discoveryauthgroup": ["This authentication group does not support CHAP MUTUAL"]}
    none = await api.ok("PUT", f"{P}/portal/{created['id']}/", {"iscsi_target_portal_discoveryauthmethod": "None",
                                                               "iscsi_target_portal_discoveryauthgroup": -1})
    assert none["iscsi_target_portal_discoveryauthgroup"] is None


# ---- global configuration (spec Part A §2.1, §3.1) --------------------------------------------


async def test_global_configuration_get_and_partial_put(api: Api) -> None:
    url = f"{P}/globalconfiguration/"
    assert await api.ok("GET", url) == {"id": 1, "iscsi_basename": "iqn.2005-10.org.freenas.ctl",
                                        "iscsi_isns_servers": "", "iscsi_pool_avail_threshold": None,
                                        "iscsi_alua": False}
    updated = await api.ok("PUT", url, {"iscsi_basename": "IQN.2011-03.org.example.istgt", "iscsi_maxconnect": 16})
    assert updated["iscsi_basename"] == "iqn.2011-03.org.example.istgt"
    assert await api.ok("PUT", f"{url}1/", {"iscsi_pool_avail_threshold": 50}) == {
        **updated, "iscsi_pool_avail_threshold": 50}
    assert await api.ok("GET", f"{url}1/") == await api.ok("GET", url)
    assert (await api.call("PUT", f"{url}2/", {})).status_code == 404
    assert (await api.call("GET", f"{url}2/")).status_code == 404


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"iscsi_basename": "not a name"}, {"iscsi_basename": ['Use alphanumeric characters, ".", "-" and ":".']}),
        ({"iscsi_basename": "eui.0123456789abcdef"},
         {"iscsi_basename": ["The base name must be an iqn. name, such as iqn.2005-10.org.freenas.ctl."]}),
        ({"iscsi_basename": None}, {"iscsi_basename": ["This field is required."]}),
        ({"iscsi_pool_avail_threshold": 100},
         {"iscsi_pool_avail_threshold": ["Ensure this value is less than or equal to 99."]}),
        ({"iscsi_isns_servers": "10.0.0.1 bad.host 10.0.0.2:99999"},
         {"iscsi_isns_servers": ["The following addresses are not valid: bad.host, 10.0.0.2:99999"]}),
    ],
)
async def test_global_rules(api: Api, body: dict[str, Any], errors: dict[str, list[str]]) -> None:
    assert await api.conflict("PUT", f"{P}/globalconfiguration/", body) == errors


async def test_isns_servers_are_normalised(api: Api) -> None:
    got = await api.ok("PUT", f"{P}/globalconfiguration/",
                       {"iscsi_isns_servers": "10.0.0.1\n  10.0.0.2:3205 [fe80::1]:3205 fe80::2 [::1]"})
    assert got["iscsi_isns_servers"] == "10.0.0.1 10.0.0.2:3205 [fe80::1]:3205 fe80::2 [::1]"


async def test_basename_change_that_would_break_a_target_name(api: Api) -> None:
    await b.target(api, "n" * 110)
    errors = await api.conflict("PUT", f"{P}/globalconfiguration/", {"iscsi_basename": "iqn.2005-10.org." + "b" * 100})
    assert errors["iscsi_basename"][0].startswith('Target "' + "n" * 110 + '": The iSCSI name')


async def test_basename_change_that_would_make_two_targets_one(api: Api) -> None:
    await b.target(api, "one")
    await b.target(api, "iqn.2005-10.org.example:one")
    errors = await api.conflict("PUT", f"{P}/globalconfiguration/", {"iscsi_basename": "iqn.2005-10.org.example"})
    assert errors == {"iscsi_basename": [
        'Target "one": A target with that name already exists.',
        'Target "iqn.2005-10.org.example:one": A target with that name already exists.',
    ]}


# ---- the service switch (spec Part B §B.1.8) --------------------------------------------------


async def test_service_switch(api: Api) -> None:
    url = "/api/v1.0/services/services/iscsitarget/"
    assert await api.ok("GET", url) == {"srv_service": "iscsitarget", "srv_enable": True, "srv_state": "RUNNING"}
    stopped = await api.ok("PUT", url, {"srv_enable": False, "srv_state": "RUNNING"})
    assert stopped == {"srv_service": "iscsitarget", "srv_enable": False, "srv_state": "STOPPED"}
    assert api.control.config.service.enabled is False
    assert await api.conflict("PUT", url, {"srv_enable": "sometimes"}) == {
        "srv_enable": ["'sometimes' value must be either True or False."]}
    assert (await api.ok("PUT", url, {"srv_enable": True}))["srv_state"] == "RUNNING"
