"""Issue #13 item 3 end to end: the sessions list shows how a session logged in and its counters,
and `DELETE /api/v1.0/services/iscsi/sessions/<id>/` ends it (AsyncEvent logout request, then
close)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio

from tests.initiator import ASYNC
from tests.support import DEMO_IQN, demo_options, start

from .apiclient import ISCSI, ApiClient
from .client import Client, LoginError

ASYNC_EVENT_LOGOUT_REQUEST = 1
SESSIONS = f"{ISCSI}/sessions/"


async def test_sessions_list_their_login_and_counters(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        running = await start(nursery, demo_options(tmp_path / "data", api=True))
        api = ApiClient.for_server(running.options)
        client = await Client.session(running.portal, DEMO_IQN)
        assert (await client.read10(0, 8)).status == 0
        [row] = (await api.get(SESSIONS)).json()
        assert row["id"] == row["tsih"] == client.tsih
        assert row["auth_method"] == "None"
        assert row["header_digest"] == row["data_digest"] == "None"
        assert row["read_commands"] == 1 and row["read_bytes"] == 4096
        assert row["other_commands"] >= 1 and row["errors"].get("UNIT ATTENTION", 0) >= 1  # ready()
        assert row["commands"] == row["read_commands"] + row["write_commands"] + row["other_commands"]
        assert row["pdus_received"] == row["pdus_sent"] >= 2 + row["commands"]  # 2 login PDUs each
        assert row["latency"]["count"] == row["commands"]
        await client.aclose()
        nursery.cancel_scope.cancel()


async def test_delete_asks_for_a_logout_then_the_session_is_gone(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pyscsi_target.connection")
    async with trio.open_nursery() as nursery:
        running = await start(nursery, demo_options(tmp_path / "data", api=True))
        api = ApiClient.for_server(running.options)
        host, port = running.portal.rsplit(":", 1)
        client = await Client.connect(host, int(port))
        await client.login(DEMO_IQN)
        assert (await api.delete(f"{SESSIONS}{client.tsih + 1000}/")).status == 404
        seen: list[int] = []

        async def initiator_side() -> None:
            pdu = await client.recv_pdu()
            seen.append(pdu.opcode)
            assert (pdu.opcode, pdu.bhs[36]) == (ASYNC, ASYNC_EVENT_LOGOUT_REQUEST)
            # this initiator does not log out: the target closes the connection after the grace
            with trio.fail_after(10):
                while await client.sock.receive_some(4096):
                    pass
            seen.append(0)

        async with trio.open_nursery() as inner:
            inner.start_soon(initiator_side)
            reply = await api.delete(f"{SESSIONS}{client.tsih}/")
        assert reply.status == 204 and seen == [ASYNC, 0]
        assert (await api.get(SESSIONS)).json() == []
        # the audit line says why the session ended (issue #13 item 5)
        assert any(r.getMessage().startswith(f"logout: {client.ini.name} (")
                   and r.getMessage().endswith(f"TSIH {client.tsih}: ended through the API") for r in caplog.records), \
            caplog.text
        await client.aclose()
        nursery.cancel_scope.cancel()


async def test_keeping_a_host_out_takes_the_acl_then_the_drop(tmp_path: Path) -> None:
    """The procedure docs/api.md gives an administrator: a host whose name leaves the target's
    initiator group keeps its session (the ACL is checked at login), the drop ends it, and the host's
    next login is refused (0x0202), while a host still in the group logs in."""
    keeper, leaver = "iqn.2026-12.org.example:keeper", "iqn.2026-12.org.example:leaver"
    async with trio.open_nursery() as nursery:
        running = await start(nursery, demo_options(tmp_path / "data", api=True))
        api = ApiClient.for_server(running.options)
        acl = await api.create("authorizedinitiator", {"iscsi_target_initiator_initiators": f"{keeper}\n{leaver}",
                                                       "iscsi_target_initiator_auth_network": "ALL"})
        [group] = (await api.get(f"{ISCSI}/targetgroup/")).json()
        reply = await api.put(f"{ISCSI}/targetgroup/{group['id']}/", {"iscsi_target_initiatorgroup": acl["id"]})
        assert reply.status == 200, reply.body
        client = await Client.session(running.portal, DEMO_IQN, name=leaver)

        reply = await api.put(f"{ISCSI}/authorizedinitiator/{acl['id']}/",
                              {"iscsi_target_initiator_initiators": keeper})
        assert reply.status == 200, reply.body
        assert (await client.read10(0, 8)).status == 0  # the session lives on

        async def log_out_when_asked() -> None:
            pdu = await client.recv_pdu()
            assert (pdu.opcode, pdu.bhs[36]) == (ASYNC, ASYNC_EVENT_LOGOUT_REQUEST)
            await client.logout()

        async with trio.open_nursery() as inner:
            inner.start_soon(log_out_when_asked)
            assert (await api.delete(f"{SESSIONS}{client.tsih}/")).status == 204
        await client.aclose()

        host, port = running.portal.rsplit(":", 1)
        again = await Client.connect(host, int(port), name=leaver)
        with pytest.raises(LoginError) as refused:
            await again.login(DEMO_IQN)
        assert (refused.value.status_class, refused.value.status_detail) == (2, 2)
        await again.aclose()
        kept = await Client.session(running.portal, DEMO_IQN, name=keeper)
        assert (await api.get(SESSIONS)).json()[0]["initiator"] == keeper
        await kept.aclose()
        nursery.cancel_scope.cancel()
