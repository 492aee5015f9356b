"""`GET /metrics`: the statistics in the Prometheus text format (issue #13 item 2).

Rendered by `prometheus_client` from a custom collector that reads `TargetControl.statistics()`
and `sessions()` at scrape time: nothing is registered or updated per command, and each app has
its own registry (no process-global state). Names follow the Prometheus conventions (`pyscsi_`
prefix, `_total` counters, base units: bytes, seconds); docs/api.md lists them all.

Scraping needs the API's credentials unless the server runs with `--metrics-public`
(app.py `_authenticate`).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from quart import Blueprint, Response

from ..model.control import TargetControl
from ..model.stats import LATENCY_BOUNDS_S, IoSnapshot, PortalStatistics
from .state import api_state

METRICS_PATH = "/metrics"

LU_LABELS = ["target", "lun", "extent"]
SESSION_LABELS = ["target", "initiator", "isid", "tsih"]
PORTAL_LABELS = ["portal", "tag"]
KINDS = ("read", "write", "other")


class _Io:
    """The metric families of `IoSnapshot`s for one prefix (`pyscsi_lu`, `pyscsi_session`)."""

    def __init__(self, prefix: str, what: str, labels: list[str]) -> None:
        self.commands = CounterMetricFamily(f"{prefix}_commands", f"SCSI commands answered per {what}, by class",
                                            labels=[*labels, "kind"])
        self.read_bytes = CounterMetricFamily(f"{prefix}_read_bytes", f"Bytes of READ data returned per {what}",
                                              labels=labels)
        self.written_bytes = CounterMetricFamily(f"{prefix}_written_bytes",
                                                 f"Bytes of WRITE data received per {what}", labels=labels)
        self.errors = CounterMetricFamily(f"{prefix}_errors", f"CHECK CONDITION answers per {what}, by sense key",
                                          labels=[*labels, "sense_key"])
        self.other_status = CounterMetricFamily(
            f"{prefix}_other_status", f"Answers with another non-GOOD status (RESERVATION CONFLICT, BUSY) per {what}",
            labels=labels)
        self.latency = HistogramMetricFamily(
            f"{prefix}_command_latency_seconds",
            f"Time from the start of a command's execution to its answer, per {what}", labels=labels)

    def add(self, values: list[str], io: IoSnapshot) -> None:
        for kind, n in zip(KINDS, (io.read_commands, io.write_commands, io.other_commands), strict=True):
            self.commands.add_metric([*values, kind], n)
        self.read_bytes.add_metric(values, io.read_bytes)
        self.written_bytes.add_metric(values, io.written_bytes)
        for key, n in sorted(io.errors.items()):
            self.errors.add_metric([*values, key], n)
        self.other_status.add_metric(values, io.other_status)
        buckets, total = [], 0
        for bound, n in zip(LATENCY_BOUNDS_S, io.latency_buckets, strict=False):
            total += n
            buckets.append((repr(bound), total))
        buckets.append(("+Inf", sum(io.latency_buckets)))
        self.latency.add_metric(values, buckets, io.latency_seconds)

    def families(self) -> list[Metric]:
        return [self.commands, self.read_bytes, self.written_bytes, self.errors, self.other_status, self.latency]


class TargetCollector(Collector):
    """Reads the statistics when scraped (prometheus_client custom collector)."""

    def __init__(self, control: TargetControl, api_requests: dict[int, int]) -> None:
        self.control = control
        self.api_requests = api_requests

    def collect(self) -> Iterator[Metric]:
        stats = self.control.statistics()
        lus = _Io("pyscsi_lu", "logical unit", LU_LABELS)
        for lu in stats.lus:
            lus.add([lu.target, "" if lu.lun is None else str(lu.lun), lu.extent], lu.io)
        yield from lus.families()
        yield from self._sessions()
        yield from self._portals(stats.portals)
        applies = CounterMetricFamily("pyscsi_config_applies", "Configuration changes applied or refused",
                                      labels=["result"])
        for result, n in sorted(stats.process.config_applies.items()):
            applies.add_metric([result], n)
        yield applies
        requests = CounterMetricFamily("pyscsi_api_requests", "API requests answered, by HTTP status",
                                       labels=["status"])
        for status, n in sorted(self.api_requests.items()):
            requests.add_metric([str(status)], n)
        yield requests
        yield GaugeMetricFamily("pyscsi_start_time_seconds", "When the target started, seconds since the epoch",
                                value=stats.process.start_time)

    def _sessions(self) -> Iterator[Metric]:
        live = self.control.sessions()
        io = _Io("pyscsi_session", "session", SESSION_LABELS)
        transport = {
            name: CounterMetricFamily(f"pyscsi_session_{name}", doc, labels=SESSION_LABELS)
            for name, doc in (("pdus_received", "PDUs received"), ("pdus_sent", "PDUs sent"),
                              ("digest_errors", "PDUs received with a wrong header or data digest"),
                              ("r2ts", "R2Ts sent"))
        }
        for s in live:
            values = [s.target, s.initiator, s.isid, str(s.tsih)]
            io.add(values, s.io)
            for name, family in transport.items():
                family.add_metric(values, getattr(s.transport, name))
        yield GaugeMetricFamily("pyscsi_sessions", "Live iSCSI sessions", value=len(live))
        yield from io.families()
        yield from transport.values()

    def _portals(self, portals: list[PortalStatistics]) -> Iterator[Metric]:
        logins = CounterMetricFamily("pyscsi_portal_logins", "Login attempts by result",
                                     labels=[*PORTAL_LABELS, "result"])
        connections = CounterMetricFamily("pyscsi_portal_connections", "TCP connections accepted",
                                          labels=PORTAL_LABELS)
        open_now = GaugeMetricFamily("pyscsi_portal_open_connections", "TCP connections open now",
                                     labels=PORTAL_LABELS)
        for p in portals:
            values = [str(p.portal_id), str(p.tag)]
            for result, n in sorted(p.logins.items()):
                logins.add_metric([*values, result], n)
            connections.add_metric(values, p.connections)
            open_now.add_metric(values, p.open_connections)
        yield from (logins, connections, open_now)


def metrics_registry(control: TargetControl, api_requests: dict[int, int]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TargetCollector(control, api_requests))
    return registry


async def metrics() -> Response:
    registry = api_state().metrics
    assert registry is not None
    body = generate_latest(registry)
    return Response(body, status=200, headers={"Content-Type": CONTENT_TYPE_LATEST})


def metrics_blueprint() -> Blueprint:
    bp = Blueprint("metrics", __name__)
    bp.add_url_rule(METRICS_PATH, "metrics", metrics, methods=["GET"])
    return bp
