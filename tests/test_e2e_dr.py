"""Real clients through the XDP balancer in DR mode, end to end in the namespace lab: curl and wrk
for HTTP, a UDP echo, IPv4 and IPv6; long-lived streams across backend changes; counters against
what the clients sent."""

from __future__ import annotations

import subprocess
import time

import pytest

from xdplb.labclients import DR_WEIGHTS, address_of, dr_service, http_names, udp_names, url, wrk

pytestmark = pytest.mark.lab


@pytest.mark.parametrize("version", [4, 6])
def test_http_follows_the_weights_and_conns_match(lb, version):
    svc = dr_service(version=version)
    lb.set_service(svc)
    names = http_names(lb.lab, url(version), 60)
    assert sum(names.values()) == 60 and "FAIL" not in names
    # wrr with a cursor per CPU: each CPU follows 3:2:1 exactly, their sum within a period or two
    for name, w in DR_WEIGHTS.items():
        assert abs(names[name] - 60 * w / 6) <= 6, names
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
    assert "TIMEOUT" not in names
    assert all(abs(names[x] - n / 3) <= 2 for x in DR_WEIGHTS), names
    ip_header = 20 if version == 4 else 40
    stats = lb.dp.service_stats(svc.key)
    assert (stats["in_pkts"], stats["in_bytes"], stats["conns"]) == (n, n * (ip_header + 8 + size), n)


def test_wrk_through_the_balancer(lb):
    svc = dr_service()
    lb.set_service(svc)
    result = wrk(lb.lab, url(4), seconds=2, connections=12)
    assert result["requests"] > 200
    assert result["socket_errors"] == 0 and result["non_2xx"] == 0
    conns = {n: lb.dp.backend_stats(svc.key)[address_of(n)]["conns"] for n in DR_WEIGHTS}
    assert all(conns.values()), conns
    assert sum(conns.values()) >= 12


def test_long_streams_survive_new_backends_and_a_quiescent_one(lb):
    """Streams opened on rs1/rs2 keep going, on the same server, while rs3 is added and rs1 is made
    quiescent; new connections then avoid rs1."""
    lb.set_service(dr_service(weights={"rs1": 1, "rs2": 1}, scheduler="rr"))
    fmt = "%{size_download} %{http_code} %header{x-server}\n"
    streams = [lb.lab.popen("client", ["curl", "-s", "-m", "30", "-o", "/dev/null", "-w", fmt, url(4, "/stream")],
                            stdout=subprocess.PIPE, text=True) for _ in range(4)]
    time.sleep(1)
    lb.set_service(dr_service(weights={"rs1": 1, "rs2": 1, "rs3": 1}, scheduler="rr"))
    time.sleep(0.5)
    lb.set_service(dr_service(weights={"rs1": 0, "rs2": 1, "rs3": 1}, scheduler="rr"))
    assert "rs1" not in http_names(lb.lab, url(4), 12)
    results = [s.communicate(timeout=40)[0].split() for s in streams]
    assert all(s.returncode == 0 for s in streams)
    assert all(r[:2] == ["1048576", "200"] for r in results), results
    assert {r[2] for r in results} == {"rs1", "rs2"}  # they were on both, rs1 included
