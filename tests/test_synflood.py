"""A flood of a million spoofed SYNs through BPF_PROG_TEST_RUN: half-open entries live in their own
LRU table, so the flood recycles that table only and every established connection stays where it
is, on its backend; the evictions are counted."""

from __future__ import annotations

import pytest

from tests import packets as pk

pytestmark = pytest.mark.datapath

FLOOD = 1_000_000


def test_spoofed_syn_flood_evicts_no_established_connection(dp):
    bes = pk.backends(3)
    svc = pk.service(scheduler="wlc", backends=bes)
    dp.set_service(svc, pk.nexthops(bes))
    established = {}
    for i, frame in enumerate(pk.flows(pk.tcp(flags="S"), 2000, first_src="10.97.0.1")):
        dp.run(frame)
        ack = bytearray(frame)
        ack[47] = 0x10  # TCP flags: ACK
        established[i] = (bytes(ack), pk.backend_of(dp.run(bytes(ack)).frame))
    before = {bytes(k): bytes(v) for k, v in dp.maps["conntrack"].items_lookup_batch()}
    assert len(before) == 2000
    evicted_before = dp.evictions()  # totals since load: earlier tests may have evicted

    for frame in pk.flows(pk.tcp(flags="S"), FLOOD, first_src="172.16.0.1"):
        dp.run(frame)

    after = {bytes(k): bytes(v) for k, v in dp.maps["conntrack"].items_lookup_batch()}
    assert before.items() <= after.items()
    evicted = {k: v - evicted_before[k] for k, v in dp.evictions().items()}
    assert evicted["conntrack"] == 0
    assert evicted["conn_syn"] >= FLOOD - dp.sizes.syn_max
    for ack, backend in established.values():
        res = dp.simulate(ack)
        assert res.reason == "conn_hit"
        assert pk.backend_of(res.frame) == backend
    assert sum(a for a, _ in dp.backend_counts(svc.key).values()) == 2000
