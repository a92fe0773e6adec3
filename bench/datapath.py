"""Nanoseconds per packet through BPF_PROG_TEST_RUN, against a floor measured in the same run.

Each case is the median of many repeat=1 runs (repeat>1 would rerun an already rewritten buffer and,
for stateful paths, never insert twice). The floor is a program that returns XDP_PASS: what is left
over it is the balancer's own cost.

    .venv/bin/python bench/datapath.py [--runs N] [--json]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import statistics
import struct
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.table import Table
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from xdplb.datapath import BPF_DIR, Datapath, Program
from xdplb.model import Backend, Service
from xdplb.net import Nexthop

VIP = "10.100.0.100"
CLIENT = "10.99.0.10"
ROUTER_MAC = "02:00:0a:64:00:01"
OUR_MAC = "02:00:0a:64:00:02"
SPORT_OFFSET = 14 + 20  # Ethernet + IPv4 without options


def frame(l4, dst: str = VIP) -> bytes:
    return bytes(Ether(src=ROUTER_MAC, dst=OUR_MAC) / IP(src=CLIENT, dst=dst) / l4)


def with_sport(template: bytes, sport: int) -> bytes:
    return template[:SPORT_OFFSET] + struct.pack("!H", sport) + template[SPORT_OFFSET + 2:]


def median_ns(run: Callable[[bytes], object], frames: Iterator[bytes], runs: int) -> float:
    samples = [run(next(frames)).duration_ns for _ in range(runs)]
    return statistics.median(samples)


def repeat(f: bytes) -> Iterator[bytes]:
    while True:
        yield f


def new_flows(template: bytes) -> Iterator[bytes]:
    sport = 1024
    while True:
        yield with_sport(template, sport)
        sport = sport + 1 if sport < 65535 else 1024


def configure(dp: Datapath) -> None:
    backends = [Backend(address=ipaddress.ip_address(f"10.100.0.{11 + i}"), weight=1) for i in range(3)]
    nexthops = {b.address: Nexthop(1, OUR_MAC, f"02:00:0a:64:00:{11 + i:02x}") for i, b in enumerate(backends)}
    for proto in ("tcp", "udp"):
        dp.set_service(Service(protocol=proto, vip=VIP, port=80, scheduler="mh", backends=tuple(backends)),
                       nexthops)


def measure(runs: int) -> dict:
    base_pass = Program(BPF_DIR / "baseline.c", "xdp_pass")
    base_tx = Program(BPF_DIR / "baseline.c", "xdp_tx_swap")
    dp = Datapath()
    try:
        configure(dp)
        syn = frame(TCP(sport=1024, dport=80, flags="S"))
        ack = frame(TCP(sport=40000, dport=80, flags="A"))
        udp = frame(UDP(sport=40000, dport=80) / (b"x" * 16))
        dp.run(ack)
        dp.run(udp)
        floor = median_ns(base_pass.run, repeat(ack), runs)
        cases = {
            "tcp_syn_dr": median_ns(dp.run, new_flows(syn), runs),
            "tcp_ack_dr": median_ns(dp.run, repeat(ack), runs),
            "udp_dr": median_ns(dp.run, repeat(udp), runs),
            "non_vip": median_ns(dp.run, repeat(frame(TCP(dport=80), dst="10.100.0.200")), runs),
            "xdp_tx_swap": median_ns(base_tx.run, repeat(ack), runs),
        }
    finally:
        dp.close()
        base_pass.close()
        base_tx.close()
    return {
        "floor_ns": floor,
        "cases": {name: {"ns": ns, "over_floor_ns": ns - floor} for name, ns in cases.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20000, help="repeat=1 runs per case")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    result = measure(args.runs)
    if args.json:
        print(json.dumps(result))
        return
    table = Table(title=f"xdplb data plane, ns/packet (median of {args.runs} runs), floor {result['floor_ns']:.0f} ns")
    table.add_column("case")
    table.add_column("ns", justify="right")
    table.add_column("over floor", justify="right")
    for name, c in result["cases"].items():
        table.add_row(name, f"{c['ns']:.0f}", f"{c['over_floor_ns']:.0f}")
    Console().print(table)


if __name__ == "__main__":
    main()
