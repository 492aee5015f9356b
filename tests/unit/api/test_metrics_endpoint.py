"""`GET /metrics` over a fake `TargetControl`: rendered by prometheus_client from `statistics()`
and `sessions()`, behind the API's auth unless `metrics_public`; `DELETE` of a session."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from pyscsi_target.model import SessionInfo, SessionType
from pyscsi_target.model.stats import (
    LATENCY_BUCKETS,
    IoSnapshot,
    LuStatistics,
    PortalStatistics,
    ProcessStatistics,
    SessionCounters,
    Statistics,
)

from .conftest import Api, P, make_api

IO = IoSnapshot(read_commands=3, write_commands=2, other_commands=1, read_bytes=12288, written_bytes=8192,
                errors={"ILLEGAL REQUEST": 1},
                latency_buckets=tuple(2 if i in (5, 7) else 0 for i in range(LATENCY_BUCKETS)),
                latency_seconds=0.001)


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def _fill(api: Api) -> None:
    api.control.stats = Statistics(
        lus=[LuStatistics(extent="e1", extent_id=1, target="iqn.t", lun=0, io=IO)],
        portals=[PortalStatistics(portal_id=1, tag=1, logins={"success": 2, "authentication_failure": 1},
                                  connections=4, open_connections=1)],
        process=ProcessStatistics(config_applies={"applied": 5, "refused": 1}, start_time=1.5))
    api.control.live_sessions = [SessionInfo("iqn.i", "127.0.0.1:1", "iqn.t", "127.0.0.1:3260,1", "000000000001", 9,
                                             SessionType.NORMAL, 1, io=IO, transport=SessionCounters(7, 8, 1, 2))]


async def test_metrics_render_the_statistics(api: Api) -> None:
    _fill(api)
    response = await api.call("GET", "/metrics")
    assert response.status_code == 200
    s = _samples((await response.get_data()).decode())
    lu = (("extent", "e1"), ("lun", "0"), ("target", "iqn.t"))
    assert s[("pyscsi_lu_commands_total", tuple(sorted((*lu, ("kind", "read")))))] == 3
    assert s[("pyscsi_lu_read_bytes_total", lu)] == 12288
    assert s[("pyscsi_lu_written_bytes_total", lu)] == 8192
    assert s[("pyscsi_lu_errors_total", tuple(sorted((*lu, ("sense_key", "ILLEGAL REQUEST")))))] == 1
    # cumulative buckets: 2 below 32 us (bucket 5), 4 below 128 us (bucket 7)
    assert s[("pyscsi_lu_command_latency_seconds_bucket", tuple(sorted((*lu, ("le", "3.2e-05")))))] == 2
    assert s[("pyscsi_lu_command_latency_seconds_bucket", tuple(sorted((*lu, ("le", "0.000128")))))] == 4
    assert s[("pyscsi_lu_command_latency_seconds_count", lu)] == 4
    ses = (("initiator", "iqn.i"), ("isid", "000000000001"), ("target", "iqn.t"), ("tsih", "9"))
    assert s[("pyscsi_session_digest_errors_total", ses)] == 1
    assert s[("pyscsi_session_r2ts_total", ses)] == 2
    assert s[("pyscsi_portal_logins_total", (("portal", "1"), ("result", "success"), ("tag", "1")))] == 2
    assert s[("pyscsi_config_applies_total", (("result", "refused"),))] == 1
    assert s[("pyscsi_sessions", ())] == 1


async def test_metrics_need_credentials_unless_public(api: Api, tmp_path: Path) -> None:
    client = api.app.test_client()
    assert (await client.get("/metrics")).status_code == 401
    (tmp_path / "public").mkdir()
    public = make_api(tmp_path / "public", metrics_public=True)
    assert (await public.app.test_client().get("/metrics")).status_code == 200
    assert (await public.app.test_client().get(f"{P}/target/")).status_code == 401


async def test_delete_session(api: Api) -> None:
    _fill(api)
    await api.ok("DELETE", f"{P}/sessions/9/", status=204)
    assert api.control.ended == [9]
    await api.ok("DELETE", f"{P}/sessions/9/", status=404)
