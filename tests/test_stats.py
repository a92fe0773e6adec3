"""Counters match what was sent: per service and per backend packets, bytes and connections, and
the global verdict counters."""

from __future__ import annotations

from collections import Counter

import pytest
from scapy.layers.l2 import Ether

from tests import packets as pk

pytestmark = pytest.mark.datapath
ETH_HLEN = 14


def test_service_and_backend_stats_match_traffic(dp):
    bes = pk.backends(3, weights=[2, 1, 1])
    svc = pk.service(scheduler="wrr", backends=bes)
    dp.set_service(svc, pk.nexthops(bes))
    before = dp.counters()
    sent_pkts, sent_bytes, conns = Counter(), Counter(), Counter()
    for i in range(40):
        flow = pk.tcp(sport=3000 + i)
        mac = Ether(dp.run(flow).frame).dst
        conns[mac] += 1
        for n in range(i % 4):
            data = pk.tcp(sport=3000 + i, flags="A", payload=b"x" * (10 * n))
            assert Ether(dp.run(data).frame).dst == mac
            sent_pkts[mac] += 1
            sent_bytes[mac] += len(data) - ETH_HLEN  # IPVS counts IP bytes
        sent_pkts[mac] += 1
        sent_bytes[mac] += len(flow) - ETH_HLEN
    dp.run(pk.tcp(dst="10.100.0.201"))  # not ours: counted globally only

    stats = dp.service_stats(svc.key)
    assert stats["in_pkts"] == sum(sent_pkts.values())
    assert stats["in_bytes"] == sum(sent_bytes.values())
    assert stats["conns"] == 40
    per_backend = dp.backend_stats(svc.key)
    for i, b in enumerate(bes):
        mac = pk.backend_mac(i)
        assert per_backend[b.address]["in_pkts"] == sent_pkts[mac]
        assert per_backend[b.address]["in_bytes"] == sent_bytes[mac]
        assert per_backend[b.address]["conns"] == conns[mac]
    after = dp.counters()
    delta = {k: after[k] - before[k] for k in after}
    assert delta["verdict_tx"] == sum(sent_pkts.values())
    assert delta["conn_new"] == 40
    assert delta["conn_hit"] == sum(sent_pkts.values()) - 40
    assert delta["verdict_pass"] == delta["pass_not_vip"] == 1


def test_reused_ids_start_from_zero(dp):
    bes = pk.backends(2)
    svc = pk.service(backends=bes)
    dp.set_service(svc, pk.nexthops(bes))
    for sport in range(4):
        dp.run(pk.tcp(sport=sport))
    ids = [s.id for s in dp._services[svc.key].backends.values()] + [dp._services[svc.key].id]
    dp.remove_service(svc.key)
    dp.flush_connections()
    dp.set_service(svc, pk.nexthops(bes))
    # the lowest free ids are taken first: the same ids come back, with their counters at zero
    assert [s.id for s in dp._services[svc.key].backends.values()] + [dp._services[svc.key].id] == ids
    assert dp.service_stats(svc.key)["in_pkts"] == 0
    assert all(s["in_pkts"] == 0 for s in dp.backend_stats(svc.key).values())


def test_connections_listing(dp):
    bes = pk.backends(1, 6)
    dp.set_service(pk.service(version=6, backends=bes), pk.nexthops(bes))
    dp.run(pk.tcp(version=6, sport=45000))
    dp.run(pk.tcp(version=6, sport=45000, flags="A"))
    dp.run(pk.tcp(version=6, sport=45001))
    dp.run(pk.tcp(version=6, sport=45001, flags="F"))
    rows = sorted(dp.connections(), key=lambda c: c.client[1])
    assert [(c.protocol, str(c.client[0]), c.client[1], str(c.virtual[0]), c.virtual[1], c.backend, c.state)
            for c in rows] == [
        ("TCP", pk.CLIENT6, 45000, pk.VIP6, 80, bes[0].address, "ESTABLISHED"),
        ("TCP", pk.CLIENT6, 45001, pk.VIP6, 80, bes[0].address, "CLOSING"),
    ]
    assert all(0 <= c.idle_s < 5 for c in rows)
