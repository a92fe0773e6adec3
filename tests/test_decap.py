"""The real server's TUN decapsulator (bpf/decap.c): IPIP and GUE frames, built with scapy, through
BPF_PROG_TEST_RUN (the inner packet comes out behind the same MACs, byte for byte; everything else
passes untouched, counted by reason); the CLI on a veth pair; and a lab real server answering a
tunnelled SYN for the VIP."""

from __future__ import annotations

import ipaddress
import os
import random
import time

import pytest
from scapy.arch.linux import L2ListenSocket, L2Socket
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_Router_Alert
from scapy.layers.inet6 import IPv6, IPv6ExtHdrHopByHop
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Packet, Raw
from scapy.sendrecv import sniff
from typer.testing import CliRunner

from tests import packets as pk
from xdplb import net
from xdplb.cli import app
from xdplb.decap import COUNTERS, GUE_PORT, Decapsulator, attached
from xdplb.lab import BY_NAME, VIP4, VIP6

RS = BY_NAME["rs1"]
RS_MAC = RS.mac("front")
HOST4, HOST6 = RS.address("front", 4), RS.address("front", 6)   # the real server: outer destination
OTHER4, OTHER6 = BY_NAME["rs2"].address("front", 4), BY_NAME["rs2"].address("front", 6)
ETHERTYPE = {4: 0x0800, 6: 0x86DD}


def inner(version: int, proto: str = "tcp") -> Packet:
    """What the client sent to the VIP, as the director carries it."""
    l4 = TCP(sport=40000, dport=80, flags="S") if proto == "tcp" else UDP(sport=40000, dport=9000) / b"ping"
    return pk.ip(version) / l4


def outer(version: int, dst: str | None = None, **kw) -> Packet:
    if version == 4:
        return IP(src=pk.LB4, dst=dst or HOST4, **kw)
    return IPv6(src=pk.LB6, dst=dst or HOST6, **kw)


def ipip(out_v: int, in_v: int, dst: str | None = None, proto: str = "tcp", **kw) -> Packet:
    number = 4 if in_v == 4 else 41
    return outer(out_v, dst, **{"proto" if out_v == 4 else "nh": number}, **kw) / inner(in_v, proto)


def gue(out_v: int, in_v: int, dst: str | None = None, dport: int = GUE_PORT, proto: str = "tcp") -> Packet:
    return outer(out_v, dst) / UDP(sport=0xC123, dport=dport) / inner(in_v, proto)


def frame(pkt: Packet) -> bytes:
    return bytes(Ether(src=pk.LB_MAC, dst=RS_MAC) / pkt)


def decapsulated(in_v: int, proto: str = "tcp") -> bytes:
    return bytes(Ether(src=pk.LB_MAC, dst=RS_MAC, type=ETHERTYPE[in_v]) / inner(in_v, proto))


@pytest.fixture(scope="module")
def decapsulator():
    if os.geteuid() != 0:
        pytest.skip("the decapsulator needs root")
    with Decapsulator() as d:
        d.set_addresses([ipaddress.ip_address(HOST4), ipaddress.ip_address(HOST6)])
        yield d


@pytest.fixture
def dc(decapsulator):
    yield decapsulator
    decapsulator.set_gue_port(GUE_PORT)


def run_counted(d: Decapsulator, data: bytes):
    """The run and the counters it moved."""
    before = d.counters()
    res = d.run(data)
    after = d.counters()
    return res, {k: after[k] - before[k] for k in after if after[k] != before[k]}


# (outer family, inner family, encapsulation, inner protocol)
DECAPSULATED = [
    (4, 4, "ipip", "tcp"), (6, 6, "ipip", "tcp"), (6, 4, "ipip", "tcp"), (4, 6, "ipip", "tcp"),
    (4, 4, "gue", "tcp"), (6, 6, "gue", "tcp"), (6, 4, "gue", "tcp"), (4, 6, "gue", "tcp"),
    (4, 4, "ipip", "udp"), (6, 6, "gue", "udp"),
]


@pytest.mark.datapath
@pytest.mark.parametrize(("out_v", "in_v", "encap", "proto"), DECAPSULATED,
                         ids=[f"{i}in{o}-{e}-{p}" for o, i, e, p in DECAPSULATED])
def test_decapsulates_to_the_inner_packet_byte_for_byte(dc, out_v, in_v, encap, proto):
    pkt = ipip(out_v, in_v, proto=proto) if encap == "ipip" else gue(out_v, in_v, proto=proto)
    res, moved = run_counted(dc, frame(pkt))
    assert res.verdict == "PASS"
    assert res.frame == decapsulated(in_v, proto)
    assert moved == {encap: 1}


@pytest.mark.datapath
def test_outer_ipv4_options_are_skipped(dc):
    pkt = outer(4, proto=4, options=[IPOption_Router_Alert()]) / inner(4)
    assert len(bytes(pkt)) - len(bytes(inner(4))) == 24  # a 24-byte outer header
    res, moved = run_counted(dc, frame(pkt))
    assert (res.verdict, res.frame, moved) == ("PASS", decapsulated(4), {"ipip": 1})


@pytest.mark.datapath
def test_trailing_padding_stays_behind_the_inner_packet(dc):
    """Ethernet padding after the outer packet is not stripped: the kernel trims by the inner length."""
    res = dc.run(frame(ipip(4, 4)) + b"\0" * 6)
    assert res.verdict == "PASS" and res.frame == decapsulated(4) + b"\0" * 6


@pytest.mark.datapath
def test_gue_port_is_configurable_and_can_be_off(dc):
    dc.set_gue_port(5555)
    assert dc.gue_port == 5555
    res, moved = run_counted(dc, frame(gue(4, 4, dport=5555)))
    assert res.frame == decapsulated(4) and moved == {"gue": 1}
    assert run_counted(dc, frame(gue(4, 4)))[1] == {"pass_not_tunnel": 1}
    dc.set_gue_port(0)
    assert run_counted(dc, frame(gue(4, 4, dport=5555)))[1] == {"pass_not_tunnel": 1}
    assert run_counted(dc, frame(ipip(4, 4)))[1] == {"ipip": 1}  # IPIP is always on


def cut(pkt: Packet, drop: int) -> bytes:
    return frame(pkt)[:-drop]


UNTOUCHED = [
    ("IPIP to another host (transit)", frame(ipip(4, 4, dst=OTHER4)), "pass_not_local"),
    ("GUE over IPv6 to another host", frame(gue(6, 6, dst=OTHER6)), "pass_not_local"),
    ("GUE to another port", frame(gue(4, 4, dport=GUE_PORT + 1)), "pass_not_tunnel"),
    ("GUE over IPv6 to another port", frame(gue(6, 4, dport=53)), "pass_not_tunnel"),
    ("plain TCP to the VIP (DR)", frame(inner(4)), "pass_not_tunnel"),
    ("plain TCP to the host", frame(IP(src=pk.CLIENT4, dst=HOST4) / TCP(dport=80)), "pass_not_tunnel"),
    ("plain UDP over IPv6", frame(inner(6, "udp")), "pass_not_tunnel"),
    ("ICMP to the host", frame(IP(src=pk.CLIENT4, dst=HOST4) / ICMP()), "pass_not_tunnel"),
    ("ARP", bytes(Ether(src=pk.LB_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(pdst=HOST4)), "pass_not_ip"),
    ("802.1Q-tagged IPIP (never decapsulated)", bytes(Ether(src=pk.LB_MAC, dst=RS_MAC) / Dot1Q(vlan=7) / ipip(4, 4)),
     "pass_vlan"),
    ("outer IPv4 first fragment", frame(ipip(4, 4, flags="MF")), "pass_fragment"),
    ("outer IPv4 later fragment", frame(ipip(4, 4, frag=100)), "pass_fragment"),
    ("outer IPv6 with a hop-by-hop header", frame(outer(6) / IPv6ExtHdrHopByHop(nh=4) / inner(4)), "pass_not_tunnel"),
    ("outer IPv4 header cut", frame(ipip(4, 4))[:14 + 12], "pass_malformed"),
    ("outer IPv4 length beyond the frame", cut(ipip(4, 4), 4), "pass_malformed"),
    ("outer IPv4 IHL 4", frame(outer(4, proto=4, ihl=4) / inner(4)), "pass_malformed"),
    ("outer IPv4 length below its header", frame(outer(4, proto=4, len=16) / inner(4)), "pass_malformed"),
    ("outer IPv6 header cut", frame(ipip(6, 6))[:14 + 30], "pass_malformed"),
    ("outer IPv6 payload beyond the frame", cut(ipip(6, 4), 1), "pass_malformed"),
    ("outer not the version its ethertype says", bytes(Ether(src=pk.LB_MAC, dst=RS_MAC, type=0x86DD) / ipip(4, 4)),
     "pass_malformed"),
    ("GUE's UDP header cut", frame(outer(4, proto=17) / Raw(b"\x17\xc0\x00")), "pass_malformed"),
    ("GUE's UDP length beyond the IP payload", frame(outer(4) / UDP(dport=GUE_PORT, len=200) / inner(4)),
     "pass_malformed"),
    ("GUE's UDP length below its header", frame(outer(6) / UDP(dport=GUE_PORT, len=6) / inner(6)), "pass_malformed"),
    ("IPIP says IPv4, carries IPv6", frame(outer(4, proto=4) / inner(6)), "pass_malformed_inner"),
    ("IPIP says IPv6, carries IPv4", frame(outer(6, nh=41) / inner(4)), "pass_malformed_inner"),
    ("inner IPv4 longer than the outer gives it", frame(outer(4, proto=4) / Raw(bytes(inner(4))[:30])),
     "pass_malformed_inner"),
    ("inner IPv6 longer than the outer gives it", frame(outer(6, nh=41) / Raw(bytes(inner(6))[:50])),
     "pass_malformed_inner"),
    ("inner shorter than an IPv4 header", frame(outer(6, nh=4) / Raw(bytes(inner(4))[:12])), "pass_malformed_inner"),
    ("inner IPv4 IHL 4", frame(outer(4, proto=4) / IP(src=pk.CLIENT4, dst=VIP4, ihl=4) / TCP()),
     "pass_malformed_inner"),
    ("GUE variant 0 (a GUE header first)", frame(outer(4) / UDP(dport=GUE_PORT) / b"\x00\x00\x00\x00" / inner(4)),
     "pass_malformed_inner"),
    ("GUE with nothing inside", frame(outer(6) / UDP(dport=GUE_PORT)), "pass_malformed_inner"),
    ("GUE inside cut by the UDP length", frame(outer(4) / UDP(dport=GUE_PORT, len=8 + 20) / inner(4)),
     "pass_malformed_inner"),
]


@pytest.mark.datapath
@pytest.mark.parametrize(("data", "counter"), [(d, c) for _, d, c in UNTOUCHED], ids=[u[0] for u in UNTOUCHED])
def test_everything_else_passes_untouched_and_counted(dc, data, counter):
    res, moved = run_counted(dc, data)
    assert res.verdict == "PASS"
    assert res.frame == data
    assert moved == {counter: 1}


@pytest.mark.datapath
def test_every_counter_is_reachable_or_explained():
    """The table above covers every reason except those that cannot be provoked from a frame."""
    covered = {c for _, _, c in UNTOUCHED} | {"ipip", "gue"}
    assert set(COUNTERS) - covered == {"pass_adjust_failed", "aborted"}


@pytest.mark.datapath
def test_addresses_are_replaced_not_added(dc):
    dc.set_addresses([ipaddress.ip_address(OTHER4)])
    try:
        assert dc.addresses == [ipaddress.ip_address(OTHER4)]
        assert run_counted(dc, frame(ipip(4, 4)))[1] == {"pass_not_local": 1}
        assert run_counted(dc, frame(ipip(4, 4, dst=OTHER4)))[1] == {"ipip": 1}
    finally:
        dc.set_addresses([ipaddress.ip_address(HOST4), ipaddress.ip_address(HOST6)])


# ---- the CLI on a veth pair of a throwaway namespace ----------------------------------------------


def wait_for(check, timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.mark.datapath
@pytest.mark.parametrize("mode", ["native", "generic"])
def test_cli_attach_decapsulates_real_frames_then_detach(netns_veth, mode):
    a, b = netns_veth
    net.configure_link(b.name, "10.1.0.2/24", "fd00:1::2/64")
    cli = CliRunner()
    res = cli.invoke(app, ["decap", "attach", b.name, "--mode", mode, "--gue-port", "7000"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert f"attached to {b.name} ({mode})" in res.output and "GUE on UDP 7000" in res.output
    try:
        found = attached(b.name)
        assert found.mode == mode and found.gue_port == 7000
        assert {"10.1.0.2", "fd00:1::2"} <= {str(x) for x in found.addresses}
        tunnelled = (IP(src="10.1.0.1", dst="10.1.0.2", proto=4) / IP(src="10.9.9.9", dst="10.1.0.2") / ICMP(),
                     IPv6(src="fd00:1::1", dst="fd00:1::2") / UDP(dport=7000) / IP(src="10.9.9.9", dst="10.1.0.2"))
        with L2Socket(iface=a.name) as sock:
            for pkt in tunnelled:
                sock.send(bytes(Ether(src=a.mac, dst=b.mac) / pkt))
        assert wait_for(lambda: attached(b.name).counters["ipip"] == 1 and attached(b.name).counters["gue"] == 1)
        # again with auto: the decapsulator is replaced in the mode it had
        res = cli.invoke(app, ["decap", "attach", b.name])
        assert res.exit_code == 0 and f"({mode})" in res.output
        assert attached(b.name).prog_id != found.prog_id and attached(b.name).gue_port == GUE_PORT
        res = cli.invoke(app, ["decap", "status"], env={"COLUMNS": "200"})
        assert res.exit_code == 0 and b.name in res.output and "pass_not_local" in res.output
    finally:
        res = cli.invoke(app, ["decap", "detach", b.name])
    assert res.exit_code == 0, res.output
    assert net.xdp_mode(b.name) is None
    res = cli.invoke(app, ["decap", "detach", b.name])
    assert res.exit_code == 1 and f"no decapsulator on {b.name}" in res.output


@pytest.mark.datapath
def test_cli_never_replaces_or_removes_another_program(netns_veth, tmp_path):
    from xdplb.datapath import Program

    _, b = netns_veth
    src = tmp_path / "other.c"
    src.write_text("int xdp_other(struct xdp_md *ctx) { return XDP_PASS; }\n")
    other = Program(src, "xdp_other")
    other.attach(b.name, "generic")
    try:
        cli = CliRunner()
        for args in (["attach", b.name], ["detach", b.name]):
            res = cli.invoke(app, ["decap", *args], env={"COLUMNS": "200"})
            assert res.exit_code == 1 and "runs another XDP program (xdp_other" in res.output, res.output
        assert "no decapsulator attached here" in cli.invoke(app, ["decap", "status"]).output
        assert net.xdp_mode(b.name) == "generic"
    finally:
        other.detach(b.name, "generic")
        other.close()


# ---- a lab real server ----------------------------------------------------------------------------


@pytest.mark.lab
def test_dr_real_servers_run_the_decapsulator(lab):
    for name in ("rs1", "rs2", "rs3"):
        host = BY_NAME[name]
        with net.in_netns(lab.ns(name)):
            found = attached("front")
        assert found is not None, name
        assert found.gue_port == GUE_PORT
        assert {host.address("front", 4), host.address("front", 6), VIP4, VIP6} <= {str(a) for a in found.addresses}


TUNNELLED_SYN = [(4, 4, "ipip"), (6, 6, "ipip"), (6, 4, "ipip"), (4, 4, "gue"), (6, 6, "gue")]


@pytest.mark.lab
@pytest.mark.parametrize(("out_v", "in_v", "encap"), TUNNELLED_SYN, ids=[f"{i}in{o}-{e}" for o, i, e in TUNNELLED_SYN])
def test_real_server_answers_a_tunnelled_syn_straight_to_the_client(lab, out_v, in_v, encap):
    """lb1 sends rs1 a client's SYN for the VIP inside IPIP or GUE; rs1's decapsulator strips it, nginx
    answers, and the SYN-ACK leaves from the VIP to the client through the router (strict rp_filter:
    the client is reached through front, where the packet arrived)."""
    client = pk.CLIENT4 if in_v == 4 else pk.CLIENT6
    vip = VIP4 if in_v == 4 else VIP6
    sport, seq = random.randint(20000, 60000), random.randint(1, 2**31)
    ip_out = (IP(src=pk.LB4, dst=HOST4) if out_v == 4 else IPv6(src=pk.LB6, dst=HOST6))
    ip_in = (IP(src=client, dst=vip) if in_v == 4 else IPv6(src=client, dst=vip))
    wrap = (lambda p: ip_out / p) if encap == "ipip" else (lambda p: ip_out / UDP(sport=0xC001, dport=GUE_PORT) / p)
    to_rs1 = Ether(src=BY_NAME["lb1"].mac("front"), dst=RS_MAC)

    def send(flags: str, seq_no: int) -> None:
        with net.in_netns(lab.ns("lb1")), L2Socket(iface="front", promisc=False) as out:
            out.send(bytes(to_rs1 / wrap(ip_in / TCP(sport=sport, dport=80, flags=flags, seq=seq_no))))

    def synack(p: Packet) -> bool:
        return (TCP in p and p[TCP].sport == 80 and p[TCP].dport == sport and p[TCP].flags == "SA"
                and p[TCP].ack == seq + 1)

    rp = ["net.ipv4.conf.all.rp_filter", "net.ipv4.conf.front.rp_filter"]
    saved = lab.exec("rs1", ["sysctl", "-n", *rp], check=True).stdout.split()
    lab.exec("rs1", ["sysctl", "-qw", *(f"{k}=1" for k in rp)], check=True)
    with net.in_netns(lab.ns("rs1")):
        before = attached("front").counters
        listen = L2ListenSocket(iface="front", promisc=False)
    try:
        send("S", seq)
        replies = sniff(opened_socket=listen, timeout=3, lfilter=synack, stop_filter=synack)
        with net.in_netns(lab.ns("rs1")):
            after = attached("front").counters
    finally:
        listen.close()
        send("R", seq + 1)  # rs1 forgets the half-open connection
        lab.exec("rs1", ["sysctl", "-qw", *(f"{k}={v}" for k, v in zip(rp, saved, strict=True))], check=True)
    assert after[encap] - before[encap] >= 1
    assert replies, f"no SYN-ACK from rs1 ({after})"
    reply = replies[0]
    assert reply[Ether].dst == BY_NAME["router"].mac("front")  # straight back through the router
    assert (reply[1].src, reply[1].dst) == (vip, client)
