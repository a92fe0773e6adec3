"""Real clients through the balancer in TUN mode, end to end in the namespace lab: the director
encapsulates (IPIP or GUE, 4in4, 6in6, 4in6), rs1-rs3 decapsulate with xdplb's XDP decapsulator and
answer the client directly; a TCP upload finds the tunnel's smaller path MTU through the director's
fragmentation-needed / packet-too-big messages."""

from __future__ import annotations

import pytest

from xdplb.labclients import DR_WEIGHTS, http_names, tun_service, udp_names, upload, url

pytestmark = pytest.mark.lab

COMBOS = [(4, 4, "ipip"), (6, 6, "ipip"), (4, 6, "ipip"), (4, 4, "gue"), (6, 6, "gue"), (4, 6, "gue")]


@pytest.mark.parametrize(("version", "backend_version", "encap"), COMBOS)
def test_http_and_udp_through_tunnels(lb, version, backend_version, encap):
    before = lb.dp.counters()
    lb.set_service(tun_service(version=version, backend_version=backend_version, encap=encap))
    assert http_names(lb.lab, url(version), 30) == {"rs1": 15, "rs2": 10, "rs3": 5}
    lb.set_service(tun_service("udp", 9000, version, encap, backend_version, scheduler="rr"))
    assert udp_names(lb.lab, version, 30, 32) == {"rs1": 10, "rs2": 10, "rs3": 10}
    after = lb.dp.counters()
    # The servers' replies went straight to the client: none reached the director (a reply from the
    # VIP to the client would be a TCP/UDP frame for an address that is no VIP).
    assert after["pass_not_vip"] == before["pass_not_vip"]
    assert after["drop_encap"] == before["drop_encap"]


@pytest.mark.parametrize("version", [4, 6])
def test_upload_through_a_tunnel_finds_the_path_mtu(lb, version):
    lb.set_service(tun_service(port=9001, version=version))
    before = lb.dp.counters()["icmp_too_big_sent"]
    server, received = upload(lb.lab, version, 300_000)
    assert server in DR_WEIGHTS and received == 300_000
    assert lb.dp.counters()["icmp_too_big_sent"] > before
