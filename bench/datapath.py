"""Nanoseconds per packet through BPF_PROG_TEST_RUN, against baselines measured in the same run.

Each case is the median of repeat=1 runs over frames built beforehand (repeat>1 would rerun an
already rewritten buffer, and a stateful path would never insert twice). Baselines: the floor, a
program that returns XDP_PASS (what is left over it is the balancer's own cost); a MAC-swap XDP_TX;
and the kernel's bare insert into an LRU hash of conntrack's size, the price of any new flow.

Besides the mh service of the DR cases: new connections on wlc services of 16, 64 and 256 backends
(the least-connection scan), on a persistent service whose template the client's /24 already has,
and the FIN of connections established beforehand (SYN, then the client's ACK). The new-connection
cases on those services run a quarter of the runs: every SYN stays in the half-open table (256K
entries), which tcp_syn_dr shares, and an insert into a full LRU would time an eviction. TUN: an mh
service whose backends are reached over IPIP (new and established flows) and over GUE (established).

    .venv/bin/python bench/datapath.py [--runs N] [--rounds R] [--json]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import statistics
import struct
from collections.abc import Callable

from rich.console import Console
from rich.table import Table
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from xdplb.datapath import BPF_DIR, Datapath, Program
from xdplb.model import Backend, Service
from xdplb.net import Nexthop
from xdplb.testrun import XdpRunner

VIP = "10.100.0.100"
CLIENT = "10.99.0.10"
ROUTER_MAC = "02:00:0a:64:00:01"
OUR_MAC = "02:00:0a:64:00:02"
FIN_CLIENT = "10.98.0.10"  # the established flows the FINs close, apart from the SYN cases' flows
WLC_PORTS = {16: 8016, 64: 8064, 256: 8256}  # backends -> the port of a wlc service with that many
PERSIST_PORT = 81
TUN_PORTS = {"ipip": 8080, "gue": 8081}  # TUN services over IPIP and GUE
OUR_ADDR = "10.100.0.2"  # the director's address: TUN's outer source
SPORT_OFFSET = 14 + 20  # Ethernet + IPv4 without options
SADDR_OFFSET = 14 + 12


def frame(l4, dst: str = VIP, src: str = CLIENT) -> bytes:
    return bytes(Ether(src=ROUTER_MAC, dst=OUR_MAC) / IP(src=src, dst=dst) / l4)


def with_sport(template: bytes, sport: int) -> bytes:
    return template[:SPORT_OFFSET] + struct.pack("!H", sport) + template[SPORT_OFFSET + 2:]


def medians(cases: dict[str, tuple[XdpRunner, Callable[[int], list[bytes]]]], rounds: int) -> dict[str, float]:
    """Median ns per case. Each round runs every case's frames in one block, the cases taking turns;
    a case's result is the median of its rounds' medians, so one slow moment of the VM moves one
    round of one case, not the result."""
    per_round: dict[str, list[float]] = {name: [] for name in cases}
    for r in range(rounds):
        for name, (runner, frames) in cases.items():
            per_round[name].append(statistics.median(runner.durations(frames(r))))
    return {name: statistics.median(m) for name, m in per_round.items()}


def new_flows(template: bytes, count: int, first_port: int = 1024) -> list[bytes]:
    """`count` SYNs of distinct flows (distinct client ports, then client addresses)."""
    out = []
    for i in range(count):
        f = with_sport(template, first_port + i % 60000)
        out.append(f[:SADDR_OFFSET + 2] + struct.pack("!H", i // 60000) + f[SADDR_OFFSET + 4:])
    return out


def pool(first: str, count: int) -> tuple[tuple[Backend, ...], dict]:
    """`count` backends from address `first` on, each with a resolved next hop (its MAC spells the address)."""
    start = ipaddress.ip_address(first)
    backends = tuple(Backend(address=start + i, weight=1) for i in range(count))
    return backends, {b.address: Nexthop(1, OUR_MAC, "02:00:" + ":".join(f"{x:02x}" for x in b.address.packed),
                                         OUR_ADDR, 1500) for b in backends}


def configure(dp: Datapath) -> None:
    backends, nexthops = pool("10.100.0.11", 3)
    for proto in ("tcp", "udp"):
        dp.set_service(Service(protocol=proto, vip=VIP, port=80, scheduler="mh", backends=backends), nexthops)
    for i, (count, port) in enumerate(WLC_PORTS.items()):
        backends, nexthops = pool(f"10.{101 + i}.0.1", count)
        dp.set_service(Service(protocol="tcp", vip=VIP, port=port, scheduler="wlc", backends=backends), nexthops)
    backends, nexthops = pool("10.104.0.1", 3)
    dp.set_service(Service(protocol="tcp", vip=VIP, port=PERSIST_PORT, scheduler="mh", backends=backends,
                           persistence={"timeout": 300, "netmask": 24}), nexthops)
    backends, nexthops = pool("10.105.0.1", 3)
    for encap, port in TUN_PORTS.items():
        dp.set_service(Service(protocol="tcp", vip=VIP, port=port, scheduler="mh", method="tun",
                               tunnel={"encap": encap}, backends=backends), nexthops)


def established(dp: Datapath, count: int) -> list[bytes]:
    """FIN|ACKs of `count` connections established beforehand, each by its SYN and then its ACK."""
    syns, acks, fins = (new_flows(frame(TCP(sport=1024, dport=80, flags=f), src=FIN_CLIENT), count)
                        for f in ("S", "A", "FA"))
    dp.runner.durations(f for pair in zip(syns, acks, strict=True) for f in pair)
    return fins


def measure(runs: int, rounds: int) -> dict:
    base_pass = Program(BPF_DIR / "baseline.c", "xdp_pass")
    base_tx = Program(BPF_DIR / "baseline.c", "xdp_tx_swap")
    base_lru = Program(BPF_DIR / "baseline.c", "xdp_lru_insert")
    dp = Datapath()
    try:
        configure(dp)
        syn = frame(TCP(sport=1024, dport=80, flags="S"))
        ack = frame(TCP(sport=40000, dport=80, flags="A"))
        udp = frame(UDP(sport=40000, dport=80) / (b"x" * 16))
        persist_syn = frame(TCP(sport=1024, dport=PERSIST_PORT, flags="S"))
        tun_acks = {encap: frame(TCP(sport=40000, dport=port, flags="A")) for encap, port in TUN_PORTS.items()}
        for f in tun_acks.values():
            dp.run(f)
        dp.run(ack)
        dp.run(udp)
        dp.run(persist_syn)  # the template of CLIENT's /24, which every timed SYN of the case hits
        few = max(1, runs // 4)
        syns = new_flows(syn, runs * rounds)
        wlc = {n: new_flows(frame(TCP(sport=1024, dport=port, flags="S")), few * rounds)
               for n, port in WLC_PORTS.items()}
        persist = new_flows(persist_syn, few * rounds)
        tun_syns = new_flows(frame(TCP(sport=1024, dport=TUN_PORTS["ipip"], flags="S")), few * rounds)
        fins = established(dp, runs * rounds)

        def same(f: bytes) -> Callable[[int], list[bytes]]:
            return lambda _: [f] * runs

        def each(frames: list[bytes], n: int = runs) -> Callable[[int], list[bytes]]:
            return lambda r: frames[r * n:(r + 1) * n]

        result = medians({
            "floor": (base_pass.runner, same(ack)),
            "tcp_syn_dr": (dp.runner, each(syns)),
            "tcp_ack_dr": (dp.runner, same(ack)),
            "udp_dr": (dp.runner, same(udp)),
            "non_vip": (dp.runner, same(frame(TCP(dport=80), dst="10.100.0.200"))),
            **{f"tcp_syn_wlc_{n}": (dp.runner, each(frames, few)) for n, frames in wlc.items()},
            "tcp_syn_persist": (dp.runner, each(persist, few)),
            "tcp_fin": (dp.runner, each(fins)),
            "tcp_syn_tun": (dp.runner, each(tun_syns, few)),
            "tcp_ack_tun": (dp.runner, same(tun_acks["ipip"])),
            "tcp_ack_gue": (dp.runner, same(tun_acks["gue"])),
            "xdp_tx_swap": (base_tx.runner, same(ack)),
            "lru_insert_kernel": (base_lru.runner, each(syns)),
        }, rounds)
    finally:
        dp.close()
        base_pass.close()
        base_tx.close()
        base_lru.close()
    floor = result.pop("floor")
    return {
        "floor_ns": floor,
        "cases": {name: {"ns": ns, "over_floor_ns": ns - floor, "ratio": round(ns / floor, 2)}
                  for name, ns in result.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20000, help="repeat=1 runs per case")
    parser.add_argument("--rounds", type=int, default=5, help="rounds over all cases; the median round counts")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    result = measure(args.runs, args.rounds)
    if args.json:
        print(json.dumps(result))
        return
    table = Table(title=f"xdplb data plane, ns/packet (median of {args.runs} runs, {max(1, args.runs // 4)} for the "
                        f"wlc and persist SYNs), floor {result['floor_ns']:.0f} ns")
    table.add_column("case")
    table.add_column("ns", justify="right")
    table.add_column("over floor", justify="right")
    table.add_column("x floor", justify="right")
    for name, c in result["cases"].items():
        table.add_row(name, f"{c['ns']:.0f}", f"{c['over_floor_ns']:.0f}", f"{c['ratio']:.2f}")
    Console().print(table)


if __name__ == "__main__":
    main()
