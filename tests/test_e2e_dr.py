"""Real clients through the XDP balancer in DR mode, end to end in the namespace lab: curl and wrk
for HTTP, a UDP echo, IPv4 and IPv6; long-lived streams across backend changes; counters against
what the clients sent."""

from __future__ import annotations

import time

import pytest

from xdplb.labclients import DR_WEIGHTS, address_of, dr_service, http_names, stream, udp_names, url, wrk_parallel

pytestmark = pytest.mark.lab


@pytest.mark.parametrize("version", [4, 6])
def test_http_follows_the_weights_and_conns_match(lb, version):
    svc = dr_service(version=version)
    lb.set_service(svc)
    names = http_names(lb.lab, url(version), 60)
    # the clients run on one CPU, so wrr's sequence is exact: 10 periods of 3:2:1
    assert names == {"rs1": 30, "rs2": 20, "rs3": 10}
    stats = lb.dp.backend_stats(svc.key)
    for name in DR_WEIGHTS:
        assert stats[address_of(name, version)]["conns"] == names[name]
    assert lb.dp.service_stats(svc.key)["conns"] == 60


@pytest.mark.parametrize("version", [4, 6])
def test_udp_echo_and_exact_counters(lb, version):
    svc = dr_service("udp", 9000, version, scheduler="rr")
    lb.set_service(svc)
    n, size = 90, 32
    names = udp_names(lb.lab, version, n, size)
    assert names == {"rs1": 30, "rs2": 30, "rs3": 30}
    ip_header = 20 if version == 4 else 40
    stats = lb.dp.service_stats(svc.key)
    assert (stats["in_pkts"], stats["in_bytes"], stats["conns"]) == (n, n * (ip_header + 8 + size), n)


def test_wrk_through_the_balancer(lb):
    svc = dr_service()
    lb.set_service(svc)
    result = wrk_parallel(lb.lab, [url(4)], seconds=2, connections=12, extra=("-H", "Connection: close"))
    assert result["requests"] > 500
    assert result["socket_errors"] == 0 and result["non_2xx"] == 0
    conns = {n: lb.dp.backend_stats(svc.key)[address_of(n)]["conns"] for n in DR_WEIGHTS}
    # a new connection per request: every request was a connection the balancer placed
    assert sum(conns.values()) >= result["requests"]
    total = sum(conns.values())
    for name, w in DR_WEIGHTS.items():  # wrk's threads run on both CPUs: two exact sequences
        assert abs(conns[name] / total - w / 6) < 0.05, conns


def test_long_streams_survive_new_backends_and_a_quiescent_one(lb):
    """Streams opened on rs1/rs2 keep going, on the same server, while rs3 is added and rs1 is made
    quiescent; new connections then avoid rs1."""
    lb.set_service(dr_service(weights={"rs1": 1, "rs2": 1}, scheduler="rr"))
    streams = [stream(lb.lab) for _ in range(4)]
    try:
        deadline = time.monotonic() + 5
        while sum(c.state == "ESTABLISHED" for c in lb.dp.connections()) < 4:
            assert time.monotonic() < deadline, "the streams did not start"
            time.sleep(0.05)
        lb.set_service(dr_service(weights={"rs1": 1, "rs2": 1, "rs3": 1}, scheduler="rr"))
        lb.set_service(dr_service(weights={"rs1": 0, "rs2": 1, "rs3": 1}, scheduler="rr"))
        assert http_names(lb.lab, url(4), 12) == {"rs2": 6, "rs3": 6}
        results = [s.communicate(timeout=40)[0].split() for s in streams]
    finally:
        for s in streams:
            s.kill()
            s.wait()
    assert all(s.returncode == 0 for s in streams)
    # one CPU, round robin over rs1 and rs2: two streams on each, and each finished where it started
    assert sorted(results) == [["1048576", "200", "rs1"]] * 2 + [["1048576", "200", "rs2"]] * 2
