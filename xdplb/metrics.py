"""Prometheus metrics, read from the data plane at each scrape (a custom collector: nothing is
copied between scrapes, so a scrape always sees the maps as they are), and from the VRRP speaker's
control socket when the director has an `ha` section."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from xdplb.manager import Manager
from xdplb.vrrp.control import SpeakerClient, SpeakerError

_STATS = {"conns": "connections", "in_pkts": "in_packets", "out_pkts": "out_packets",
          "in_bytes": "in_bytes", "out_bytes": "out_bytes"}


class DatapathCollector(Collector):
    def __init__(self, manager: Manager) -> None:
        self.manager = manager

    def collect(self) -> Iterator[Metric]:
        yield from self._global()
        yield from self._services()

    def _global(self) -> Iterator[Metric]:
        m = self.manager
        reasons = CounterMetricFamily("xdplb_packets", "Packets by the verdict or reason the balancer counted them",
                                      labels=["reason"])
        for name, value in m.dp.counters().items():
            reasons.add_metric([name], value)
        yield reasons
        yield GaugeMetricFamily("xdplb_state_version", "Version of the desired state", value=m.version)
        yield GaugeMetricFamily("xdplb_services", "Virtual services in the data plane", value=len(m.state.services))
        yield GaugeMetricFamily("xdplb_refused_services", "Services the data plane refused at the last pass",
                                value=len(m.applied.refused))
        evicted = CounterMetricFamily("xdplb_table_evictions", "Entries the LRU tables evicted", labels=["table"])
        for table, n in m.dp.evictions().items():
            evicted.add_metric([table], n)
        yield evicted

    def _services(self) -> Iterator[Metric]:
        svc = {k: CounterMetricFamily(f"xdplb_service_{v}", f"Service {v.replace('_', ' ')}", labels=["service"])
               for k, v in _STATS.items()}
        be = {k: CounterMetricFamily(f"xdplb_backend_{v}", f"Backend {v.replace('_', ' ')}",
                                     labels=["service", "backend"]) for k, v in _STATS.items()}
        weight = GaugeMetricFamily("xdplb_backend_weight", "Configured weight", labels=["service", "backend"])
        active = GaugeMetricFamily("xdplb_backend_active_connections", "ActiveConn", labels=["service", "backend"])
        inactive = GaugeMetricFamily("xdplb_backend_inactive_connections", "InActConn", labels=["service", "backend"])
        for s in self.manager.stats():
            sid = s.service.id
            for k, value in s.stats.items():
                svc[k].add_metric([sid], value)
            for addr, b in s.backends.items():
                labels = [sid, str(addr)]
                for k, value in b.stats.items():
                    be[k].add_metric(labels, value)
                weight.add_metric(labels, b.backend.weight)
                active.add_metric(labels, b.active)
                inactive.add_metric(labels, b.inactive)
        yield from svc.values()
        yield from be.values()
        yield from (weight, active, inactive)
        yield from self._health()

    def _health(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("xdplb_backend_up", "1 when the backend's health check says up, 0 when down",
                               labels=["service", "backend", "check"])
        for watch, h in self.manager.health_states():
            up.add_metric([watch.service, str(watch.backend), watch.check.type], 1 if h is None or h.up else 0)
        yield up


VRRP_STATES = ("init", "backup", "master", "fault")


class HaCollector(Collector):
    """The speaker's instances, asked at each scrape. A speaker that does not answer gives
    xdplb_vrrp_speaker_up 0 and nothing else (no stale states)."""

    def __init__(self, speaker: SpeakerClient) -> None:
        self.speaker = speaker

    def collect(self) -> Iterator[Metric]:
        try:
            status = self.speaker.status()
        except (SpeakerError, ValueError):  # not running, not answering, or an answer not understood
            status = None
        yield GaugeMetricFamily("xdplb_vrrp_speaker_up", "1 when the VRRP speaker answers on its control socket",
                                value=0 if status is None else 1)
        if status is not None:
            yield from self._instances(status.get("instances") or [])

    def _instances(self, instances: list[dict]) -> Iterator[Metric]:
        state = GaugeMetricFamily("xdplb_vrrp_state", "1 for the instance's VRRP state, 0 for the others",
                                  labels=["instance", "state"])
        gauges = {key: GaugeMetricFamily(f"xdplb_vrrp_{key}", text, labels=["instance"]) for key, text in (
            ("priority", "Configured priority (or the operator's)"),
            ("effective_priority", "Priority advertised: tracking and failover applied, 0 in maintenance"),
            ("maintenance", "1 when the instance is in maintenance (never master)"),
            ("faults", "What keeps the instance in fault (tracked interfaces, services, its own link)"))}
        counters = {key: CounterMetricFamily(f"xdplb_vrrp_{key}", text, labels=["instance"]) for key, text in (
            ("transitions", "State transitions"),
            ("became_master", "Transitions to master"),
            ("adverts_sent", "VRRP adverts sent"),
            ("adverts_received", "Valid VRRP adverts received from other routers"),
            ("send_errors", "VRRP adverts that could not be sent"))}
        invalid = CounterMetricFamily("xdplb_vrrp_adverts_invalid", "VRRP adverts dropped, by reason",
                                      labels=["instance", "reason"])
        for i in instances:
            name = str(i["name"])
            for s in VRRP_STATES:
                state.add_metric([name, s], 1 if i["state"] == s else 0)
            values = {"priority": i["priority"], "effective_priority": i["effective_priority"],
                      "maintenance": int(bool(i["maintenance"])), "faults": len(i.get("faults") or [])}
            for key, family in gauges.items():
                family.add_metric([name], values[key])
            seen = i.get("counters") or {}
            for key, family in counters.items():
                family.add_metric([name], seen.get(key, 0))
            for reason, n in sorted((seen.get("invalid") or {}).items()):
                invalid.add_metric([name, reason], n)
        yield state
        yield from gauges.values()
        yield from counters.values()
        yield invalid


def registry(manager: Manager, ha: SpeakerClient | None = None) -> CollectorRegistry:
    """The data plane's metrics, and the VRRP speaker's when there is one (`ha`: its control socket)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(DatapathCollector(manager))
    if ha is not None:
        reg.register(HaCollector(ha))
    return reg
