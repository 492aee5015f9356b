"""Issue #13 items 1 and 2 end to end: `GET /metrics` after a known workload.

The real server (demo target, API on) serves a test client that sends an exactly known number of
READ(10), WRITE(10) and failing commands; the Prometheus text is parsed with
`prometheus_client.parser` and every counter must move by exactly what the client did, per LU and
per session. The LU's totals outlive the session. Without `--metrics-public` scraping needs the
API's password.
"""

from __future__ import annotations

import dataclasses
import struct
from pathlib import Path

import trio
from prometheus_client.parser import text_string_to_metric_families

from tests.support import DEMO_IQN, demo_options, start

from .apiclient import ApiClient
from .client import Client

BS = 512
READS, READ_BLOCKS = 7, 8  # 7 READ(10) of 4 KiB
WRITES, WRITE_BLOCKS = 5, 16  # 5 WRITE(10) of 8 KiB
BAD = 3  # READ(10) past the end: CHECK CONDITION, ILLEGAL REQUEST
DEMO_LABELS = {"target": DEMO_IQN, "lun": "0", "extent": "demo"}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(api: ApiClient) -> Samples:
    reply = await api.request("GET", "/metrics")
    assert reply.status == 200, reply
    assert reply.headers["content-type"].startswith("text/plain")
    return parse(reply.body.decode())


async def workload(client: Client) -> None:
    for i in range(WRITES):
        res = await client.write10(i * WRITE_BLOCKS, bytes([i + 1]) * (WRITE_BLOCKS * BS))
        assert res.status == 0
    for i in range(READS):
        res = await client.read10(i * READ_BLOCKS, READ_BLOCKS)
        assert res.status == 0 and len(res.data) == READ_BLOCKS * BS
    for _ in range(BAD):
        res = await client.command(struct.pack(">BBIBHB", 0x28, 0, 0xFFFF_FFF0, 0, 1, 0), read_len=BS)
        assert res.status == 2 and res.sense_key[0] == 5


async def test_counters_move_by_exactly_the_workload(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        running = await start(nursery, demo_options(tmp_path / "data", api=True))
        api = ApiClient.for_server(running.options)
        client = await Client.session(running.portal, DEMO_IQN)
        before = await scrape(api)
        await workload(client)
        after = await scrape(api)

        def delta(name: str, **labels: str) -> float:
            return value(after, name, **labels) - value(before, name, **labels)

        lu = DEMO_LABELS
        assert delta("pyscsi_lu_commands_total", **lu, kind="read") == READS + BAD
        assert delta("pyscsi_lu_commands_total", **lu, kind="write") == WRITES
        assert delta("pyscsi_lu_commands_total", **lu, kind="other") == 0
        assert delta("pyscsi_lu_read_bytes_total", **lu) == READS * READ_BLOCKS * BS
        assert delta("pyscsi_lu_written_bytes_total", **lu) == WRITES * WRITE_BLOCKS * BS
        assert delta("pyscsi_lu_errors_total", **lu, sense_key="ILLEGAL REQUEST") == BAD
        assert delta("pyscsi_lu_command_latency_seconds_count", **lu) == READS + WRITES + BAD
        assert delta("pyscsi_lu_command_latency_seconds_bucket", **lu, le="+Inf") == READS + WRITES + BAD
        assert delta("pyscsi_lu_command_latency_seconds_sum", **lu) > 0

        session = {"target": DEMO_IQN, "initiator": client.ini.name, "isid": f"{client.ini.isid:012x}",
                   "tsih": str(client.tsih)}
        assert delta("pyscsi_session_commands_total", **session, kind="read") == READS + BAD
        assert delta("pyscsi_session_written_bytes_total", **session) == WRITES * WRITE_BLOCKS * BS
        # one SCSI Command PDU each (immediate data: 8 KiB fits the first burst), one PDU back each
        n = READS + WRITES + BAD
        assert delta("pyscsi_session_pdus_received_total", **session) == n
        assert delta("pyscsi_session_pdus_sent_total", **session) == n
        assert value(after, "pyscsi_sessions") == 1
        assert value(after, "pyscsi_portal_logins_total", portal="1", tag="1", result="success") == 1

        # a second session on the same LU: the LU counts both, each session only its own
        other = await Client.session(running.portal, DEMO_IQN, name="iqn.2026-11.org.example:second",
                                     isid=0x80_12_34_56_00_02)
        both_before = await scrape(api)
        for i in range(2):
            assert (await other.write10(i * WRITE_BLOCKS, bytes([9]) * (WRITE_BLOCKS * BS))).status == 0
        both = await scrape(api)
        second = {"target": DEMO_IQN, "initiator": other.ini.name, "isid": f"{other.ini.isid:012x}",
                  "tsih": str(other.tsih)}
        assert (value(both, "pyscsi_lu_written_bytes_total", **lu)
                == value(both_before, "pyscsi_lu_written_bytes_total", **lu) + 2 * WRITE_BLOCKS * BS)
        assert value(both, "pyscsi_session_written_bytes_total", **second) == 2 * WRITE_BLOCKS * BS
        assert (value(both, "pyscsi_session_written_bytes_total", **session)
                == value(after, "pyscsi_session_written_bytes_total", **session))

        # the LU's totals outlive the sessions, whichever ends first
        for c in (client, other):
            handlers = [h for h in running.service.handlers if h.login and h.login.initiator_name == c.ini.name]
            await c.logout()
            await c.aclose()
            with trio.fail_after(10):
                for h in handlers:
                    await h.closed.wait()
            gone = await scrape(api)
            for name in ("pyscsi_lu_read_bytes_total", "pyscsi_lu_written_bytes_total",
                         "pyscsi_lu_command_latency_seconds_count"):
                assert value(gone, name, **lu) == value(both, name, **lu), name
        assert value(gone, "pyscsi_sessions") == 0
        assert not any(name.startswith("pyscsi_session_") for name, _ in gone)
        nursery.cancel_scope.cancel()


async def test_metrics_need_the_password_unless_public(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        options = demo_options(tmp_path / "a", api=True)
        running = await start(nursery, options)
        api = ApiClient.for_server(running.options)
        refused = await api.request("GET", "/metrics", auth=False)
        assert refused.status == 401
        public = dataclasses.replace(demo_options(tmp_path / "b", api=True), metrics_public=True)
        open_one = await start(nursery, public)
        open_api = ApiClient.for_server(open_one.options)
        reply = await open_api.request("GET", "/metrics", auth=False)
        assert reply.status == 200
        assert value(parse(reply.body.decode()), "pyscsi_api_requests_total", status="401") == 0
        # the rest of the API still wants credentials
        assert (await open_api.request("GET", "/api/v1.0/system/version/", auth=False)).status == 401
        # the 401s were counted (process statistics)
        counted = await scrape(api)
        assert value(counted, "pyscsi_api_requests_total", status="401") == 1
        nursery.cancel_scope.cancel()
