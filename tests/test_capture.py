"""Packet capture through BPF_PROG_TEST_RUN: a capture of a service or a flow gets each matching
frame as received (with its verdict and reason) and, when forwarded, as sent, byte for byte; other
frames, simulations and a closed capture give nothing; the rate holds; the pcap reads back."""

from __future__ import annotations

import io
import time

import pytest
from scapy.layers.inet import ICMP, IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import rdpcap

from tests import packets as pk
from xdplb.capture import CaptureBusy, CaptureFilter, write_pcap
from xdplb.net import Nexthop

pytestmark = [pytest.mark.api, pytest.mark.datapath]

TUN_PORT = 8080


def two_services(dp, mtu: int = 0) -> tuple[int, int]:
    """A DR service on port 80 and a TUN (IPIP) one on 8080, over the same three backends."""
    bes = pk.backends(3)
    dr = pk.service(port=80, scheduler="mh", backends=bes)
    tun = pk.service(port=TUN_PORT, scheduler="mh", method="tun", backends=bes, tunnel={"encap": "ipip"})
    dp.set_service(dr, pk.nexthops(bes))
    dp.set_service(tun, pk.nexthops(bes, mtu=mtu))
    return dp.service_id(dr.key), dp.service_id(tun.key)


def by_direction(records) -> tuple[list, list]:
    return [r for r in records if r.direction == "received"], [r for r in records if r.direction == "sent"]


def test_a_service_capture_has_its_frames_as_received_and_as_sent(dp):
    dr_id, _ = two_services(dp)
    frames = [pk.tcp(sport=40000 + i, payload=b"GET / HTTP/1.0\r\n\r\n") for i in range(3)]
    with dp.capture(CaptureFilter(service_id=dr_id)) as cap:
        outs = []
        for f in frames:
            outs.append(dp.run(f, ingress_ifindex=pk.LO_IFINDEX))
            dp.run(pk.tcp(sport=41000, dport=TUN_PORT), ingress_ifindex=pk.LO_IFINDEX)  # the other service
        records = cap.poll(100)
        stats = cap.stats()
    received, sent = by_direction(records)
    assert [r.frame for r in received] == frames
    assert [r.frame for r in sent] == [o.frame for o in outs]
    for r, s, out in zip(received, sent, outs, strict=True):
        assert (r.verdict, r.reason, s.verdict, s.reason) == ("TX", "conn_new", "TX", "conn_new")
        assert r.service_id == s.service_id == dr_id
        assert r.backend_id == s.backend_id >= 0
        assert (r.ingress_ifindex, r.egress_ifindex) == (pk.LO_IFINDEX, 0)
        assert (s.ingress_ifindex, s.egress_ifindex) == (pk.LO_IFINDEX, pk.LO_IFINDEX)  # XDP_TX: back out
        assert r.length == len(r.frame) and s.length == len(out.frame)
        assert Ether(s.frame).dst == pk.backend_of(out.frame) and Ether(s.frame).src == pk.LB_MAC
        assert r.timestamp_ns <= s.timestamp_ns
        assert abs(r.timestamp_ns - time.time_ns()) < 60e9  # wall clock, not boot time
    assert [r.direction for r in records] == ["received", "sent"] * 3  # in the order taken
    assert stats == {"matched": 3, "emitted": 6, "over_rate": 0, "lost": 0}


def test_a_redirected_frame_shows_the_interface_it_left_on(dp, netns_veth, one_cpu):
    a, b = netns_veth
    bes = pk.backends(2)
    hops = {bes[0].address: Nexthop(a.ifindex, a.mac, pk.backend_mac(0)),
            bes[1].address: Nexthop(b.ifindex, b.mac, pk.backend_mac(1))}
    svc = pk.service(backends=bes, scheduler="rr")
    dp.set_service(svc, hops)
    with dp.capture(CaptureFilter(service_id=dp.service_id(svc.key))) as cap:
        outs = [dp.run(pk.tcp(sport=sport), ingress_ifindex=a.ifindex) for sport in (1000, 1001)]
        _, sent = by_direction(cap.poll(100))
    assert sorted((o.verdict, o.frame) for o in outs) == sorted((s.verdict, s.frame) for s in sent)
    assert {(s.verdict, s.ingress_ifindex, s.egress_ifindex) for s in sent} == {
        ("TX", a.ifindex, a.ifindex), ("REDIRECT", a.ifindex, b.ifindex)}


def test_a_tun_capture_shows_the_encapsulation(dp):
    _, tun_id = two_services(dp)
    frame = pk.tcp(sport=40100, dport=TUN_PORT)
    with dp.capture(CaptureFilter(service_id=tun_id)) as cap:
        dp.run(pk.tcp(sport=40100))  # the DR service: not this capture's
        out = dp.run(frame)
        records = cap.poll(100)
    received, sent = by_direction(records)
    assert [r.frame for r in received] == [frame]
    assert [s.frame for s in sent] == [out.frame]
    outer = Ether(sent[0].frame)[IP]
    assert outer.proto == 4 and outer.src == pk.LB4  # IPIP from the director
    assert bytes(outer.payload) == frame[14:]


def test_the_icmp_the_balancer_answers_with_is_captured_as_sent(dp):
    _, tun_id = two_services(dp, mtu=1000)
    big = bytes(pk.eth() / IP(src=pk.CLIENT4, dst=pk.VIP4, flags="DF") /
                TCP(sport=33000, dport=TUN_PORT, flags="PA") / (b"x" * 1000))
    with dp.capture(CaptureFilter(service_id=tun_id)) as cap:
        out = dp.run(big)
        records = cap.poll(100)
    received, sent = by_direction(records)
    assert [(r.frame, r.verdict, r.reason) for r in received] == [(big, "TX", "icmp_too_big_sent")]
    assert [s.frame for s in sent] == [out.frame]
    assert Ether(sent[0].frame)[ICMP].type == 3


def test_a_flow_capture_takes_only_that_client_and_port(dp):
    two_services(dp)
    others = [pk.tcp(src="10.99.0.11", sport=40000), pk.tcp(sport=40001), pk.udp(sport=40000)]
    mine = [pk.tcp(sport=40000), pk.tcp(sport=40000, flags="A"), pk.tcp(sport=40000, dport=TUN_PORT)]
    with dp.capture(CaptureFilter(client=pk.CLIENT4, client_port=40000, protocol=6)) as cap:
        for f in others + mine:
            dp.run(f)
        received, sent = by_direction(cap.poll(100))
    assert [r.frame for r in received] == mine
    assert len(sent) == 3
    with dp.capture(CaptureFilter(client="10.99.0.11")) as cap:  # the client alone: any port, any service
        for f in others + mine:
            dp.run(f)
        received, _ = by_direction(cap.poll(100))
    assert [r.frame for r in received] == others[:1]


def test_a_flow_capture_over_ipv6(dp):
    bes = pk.backends(2, 6)
    svc = pk.service(version=6, backends=bes)
    dp.set_service(svc, pk.nexthops(bes))
    with dp.capture(CaptureFilter(client=pk.CLIENT6, client_port=40000)) as cap:
        dp.run(pk.tcp(version=6, sport=40001))
        out = dp.run(pk.tcp(version=6, sport=40000))
        received, sent = by_direction(cap.poll(100))
    assert [r.frame for r in received] == [pk.tcp(version=6, sport=40000)]
    assert [s.frame for s in sent] == [out.frame]
    assert received[0].service_id == dp.service_id(svc.key)


def test_dropped_and_passed_frames_show_once_with_their_reason(dp):
    empty = pk.service(port=81, backends=())
    dp.set_service(empty, {})
    sid = dp.service_id(empty.key)
    with dp.capture(CaptureFilter(client=pk.CLIENT4)) as cap:
        assert dp.run(pk.tcp(dport=81)).verdict == "DROP"
        assert dp.run(pk.tcp(dport=82)).verdict == "PASS"  # no such service
        records = cap.poll(100)
    assert [(r.direction, r.verdict, r.reason, r.service_id, r.backend_id) for r in records] == [
        ("received", "DROP", "drop_no_backend", sid, -1), ("received", "PASS", "pass_not_vip", -1, -1)]
    assert [r.frame for r in records] == [pk.tcp(dport=81), pk.tcp(dport=82)]


def test_a_scanned_flow_is_captured_once_across_the_tail_calls(dp):
    """wlc asks the scanner program (a tail call there and back): the frame runs the balancer twice."""
    bes = pk.backends(3)
    svc = pk.service(scheduler="wlc", backends=bes)
    dp.set_service(svc, pk.nexthops(bes))
    with dp.capture(CaptureFilter(service_id=dp.service_id(svc.key))) as cap:
        out = dp.run(pk.tcp(sport=42000))
        records = cap.poll(100)
        stats = cap.stats()
    assert [(r.direction, r.reason) for r in records] == [("received", "conn_new"), ("sent", "conn_new")]
    assert records[1].frame == out.frame
    assert stats["matched"] == 1


def test_the_rate_is_bounded_and_the_excess_counted(dp):
    dr_id, _ = two_services(dp)
    frame = pk.tcp(sport=40000, flags="A")
    n, rate = 20000, 50
    with dp.capture(CaptureFilter(service_id=dr_id), rate_pps=rate) as cap:
        start = time.monotonic()
        dp.run(frame, repeat=n)  # n frames in one BPF_PROG_TEST_RUN (the rewritten one again: still ours)
        elapsed = time.monotonic() - start
        records = cap.poll(100)
        stats = cap.stats()
        burst = cap.burst
    received, sent = by_direction(records)
    taken = len(received)
    assert 1 <= taken <= burst + rate * elapsed + 2  # + a frame per CPU racing
    assert len(sent) == taken
    assert stats == {"matched": n, "emitted": 2 * taken, "over_rate": n - taken, "lost": 0}


def test_simulations_are_never_captured(dp):
    dr_id, _ = two_services(dp)
    with dp.capture(CaptureFilter(service_id=dr_id)) as cap:
        assert dp.simulate(pk.tcp()).verdict == "TX"
        assert cap.poll(50) == []
        assert cap.stats()["matched"] == 0


def test_one_capture_at_a_time_and_a_closed_one_sees_nothing(dp):
    dr_id, _ = two_services(dp)
    frame = pk.tcp(sport=40000)
    untouched = dp.run(frame)
    cap = dp.capture(CaptureFilter(service_id=dr_id))
    with pytest.raises(CaptureBusy):
        dp.capture(CaptureFilter(service_id=dr_id))
    during = dp.run(frame)
    cap.close()
    assert len(cap.poll(0)) == 2  # what the ring held at the close
    stats = cap.stats()
    before = dp.counters()
    after = [dp.run(frame) for _ in range(3)]
    assert cap.poll(50) == [] and cap.stats() == stats
    assert {(r.verdict, r.frame) for r in [during, *after]} == {(untouched.verdict, untouched.frame)}
    assert dp.counters()["verdict_tx"] - before["verdict_tx"] == 3
    with dp.capture(CaptureFilter(service_id=dr_id)) as again:  # a new one may start, counting afresh
        assert again.stats() == dict.fromkeys(stats, 0)
        assert cap.poll(0) == []


def test_snap_length_cuts_the_copy_not_the_length(dp):
    dr_id, _ = two_services(dp)
    frame = pk.tcp(payload=b"x" * 1000)
    with dp.capture(CaptureFilter(service_id=dr_id), snaplen=64) as cap:
        dp.run(frame)
        records = cap.poll(100)
    assert [(r.length, r.frame) for r in records] == [(len(frame), frame[:64]), (len(frame), records[1].frame)]
    assert len(records[1].frame) == 64


def test_the_pcap_reads_back_byte_for_byte(dp):
    two_services(dp)
    frames = [pk.tcp(sport=40200), pk.tcp(sport=40201, dport=TUN_PORT), pk.tcp(dport=82)]
    with dp.capture(CaptureFilter(client=pk.CLIENT4)) as cap:
        outs = [dp.run(f).frame for f in frames]
        records = cap.poll(100)
    buf = io.BytesIO()
    assert write_pcap(buf, records, 2048) == 5
    buf.seek(0)
    pkts = rdpcap(buf)
    assert [bytes(p) for p in pkts] == [frames[0], outs[0], frames[1], outs[1], frames[2]]
    assert all(abs(float(p.time) * 1e9 - r.timestamp_ns) < 1000 for p, r in zip(pkts, records, strict=True))
    assert [p.wirelen for p in pkts] == [r.length for r in records]


def test_filters_are_checked(dp):
    with pytest.raises(ValueError):
        CaptureFilter(client_port=70000)
    with pytest.raises(ValueError):
        dp.capture(CaptureFilter(), rate_pps=0)
    with pytest.raises(ValueError):
        dp.capture(CaptureFilter(), snaplen=4096)
