"""Nanoseconds per packet through BPF_PROG_TEST_RUN, against baselines measured in the same run.

Each case is the median of repeat=1 runs over frames built beforehand (repeat>1 would rerun an
already rewritten buffer, and a stateful path would never insert twice). Baselines: the floor, a
program that returns XDP_PASS (what is left over it is the balancer's own cost); a MAC-swap XDP_TX;
and the kernel's bare insert into an LRU hash of conntrack's size, the price of any new flow.

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
SPORT_OFFSET = 14 + 20  # Ethernet + IPv4 without options
SADDR_OFFSET = 14 + 12


def frame(l4, dst: str = VIP) -> bytes:
    return bytes(Ether(src=ROUTER_MAC, dst=OUR_MAC) / IP(src=CLIENT, dst=dst) / l4)


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


def configure(dp: Datapath) -> None:
    backends = [Backend(address=ipaddress.ip_address(f"10.100.0.{11 + i}"), weight=1) for i in range(3)]
    nexthops = {b.address: Nexthop(1, OUR_MAC, f"02:00:0a:64:00:{11 + i:02x}") for i, b in enumerate(backends)}
    for proto in ("tcp", "udp"):
        dp.set_service(Service(protocol=proto, vip=VIP, port=80, scheduler="mh", backends=tuple(backends)),
                       nexthops)


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
        dp.run(ack)
        dp.run(udp)
        syns = new_flows(syn, runs * rounds)

        def same(f: bytes) -> Callable[[int], list[bytes]]:
            return lambda _: [f] * runs

        result = medians({
            "floor": (base_pass.runner, same(ack)),
            "tcp_syn_dr": (dp.runner, lambda r: syns[r * runs:(r + 1) * runs]),
            "tcp_ack_dr": (dp.runner, same(ack)),
            "udp_dr": (dp.runner, same(udp)),
            "non_vip": (dp.runner, same(frame(TCP(dport=80), dst="10.100.0.200"))),
            "xdp_tx_swap": (base_tx.runner, same(ack)),
            "lru_insert_kernel": (base_lru.runner, lambda r: syns[r * runs:(r + 1) * runs]),
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
    table = Table(title=f"xdplb data plane, ns/packet (median of {args.runs} runs), floor {result['floor_ns']:.0f} ns")
    table.add_column("case")
    table.add_column("ns", justify="right")
    table.add_column("over floor", justify="right")
    table.add_column("x floor", justify="right")
    for name, c in result["cases"].items():
        table.add_row(name, f"{c['ns']:.0f}", f"{c['over_floor_ns']:.0f}", f"{c['ratio']:.2f}")
    Console().print(table)


if __name__ == "__main__":
    main()
