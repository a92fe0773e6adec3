"""End-to-end benchmark in the namespace lab: real HTTP through the director, against baselines
measured in the same run on the same lab (same offload settings on every path).

HTTP requests/s and p99 latency with wrk from the client, keep-alive and a new connection per
request, to: (a) the three DR servers directly, no balancer (the limit: one wrk per server, at
once); (b) the VIP through xdplb DR in native XDP over those servers; (c) the VIP through nftables
DNAT load balancing on the director (numgen, to the three NAT servers, whose replies come back
through it); (d) the VIP through haproxy in TCP mode on the director, to the same NAT servers.
Then packets/s of the director's XDP path: a live-frames generator on the director's veth peer (the
bridge port) sends one established flow, and a sink there counts what comes back, for xdplb and for
a reflector that only rewrites the MACs to a fixed next hop. A case with socket errors or non-2xx
answers is flagged, not trusted.

Paths take turns for several rounds and each keeps its median round, so a slow moment of the VM
does not decide a ratio.

    .venv/bin/python bench/e2e.py [--seconds S] [--rounds R] [--pps RATE] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.table import Table
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from xdplb.datapath import BPF_DIR, Program, Sizes
from xdplb.lab import BY_NAME, VIP4, Director, Lab, exit_on_signals
from xdplb.labclients import dr_service, wrk_parallel
from xdplb.net import in_netns

NAT_SERVERS = [BY_NAME[n].address("back") for n in ("rs4", "rs5", "rs6")]
NFT_MAP = ", ".join(f"{i} : {a}" for i, a in enumerate(NAT_SERVERS))
NFT = f"""table ip xdplb_bench {{
  chain pre {{ type nat hook prerouting priority dstnat;
    ip daddr {VIP4} tcp dport 80 dnat to numgen inc mod 3 map {{ {NFT_MAP} }}
  }}
}}
"""
HAPROXY = f"""global
  maxconn 4096
defaults
  mode tcp
  timeout connect 2s
  timeout client 30s
  timeout server 30s
frontend vip
  bind {VIP4}:80
  default_backend servers
backend servers
  balance roundrobin
{chr(10).join(f"  server s{i} {a}:80" for i, a in enumerate(NAT_SERVERS))}
"""
MODES = {"keepalive": (), "new_connections": ("-H", "Connection: close")}


# Every case runs three wrk at once (11 connections each), so the client side is the same: one per
# server for the direct case, three on the VIP for the others.
DR_SERVERS = [f"http://{BY_NAME[n].address('front')}/" for n in ("rs1", "rs2", "rs3")]


VIP_TARGETS = [f"http://{VIP4}/"] * 3


@contextmanager
def direct(lab: Lab) -> Iterator[list[str]]:
    yield DR_SERVERS


@contextmanager
def xdplb(lab: Lab, director: Director) -> Iterator[list[str]]:
    director.attach()
    try:
        director.set_service(dr_service(weights={"rs1": 1, "rs2": 1, "rs3": 1}))
        yield VIP_TARGETS
    finally:
        director.detach()
        director.reset()


@contextmanager
def nftables(lab: Lab) -> Iterator[list[str]]:
    lab.exec("lb1", ["nft", "-f", "-"], input=NFT, check=True)
    try:
        yield VIP_TARGETS
    finally:
        lab.exec("lb1", ["nft", "delete", "table", "ip", "xdplb_bench"])


@contextmanager
def haproxy(lab: Lab) -> Iterator[list[str]]:
    cfg = lab.state_dir / "haproxy.cfg"
    cfg.write_text(HAPROXY)
    proc = lab.popen("lb1", ["haproxy", "-f", str(cfg), "-db"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while lab.exec("client", ["curl", "-s", "-m", "1", f"http://{VIP4}/"]).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError("haproxy did not come up")
            time.sleep(0.1)
        yield VIP_TARGETS
    finally:
        proc.kill()
        proc.wait()


def http_rounds(lab: Lab, director: Director, seconds: int, rounds: int) -> dict:
    """Each path in turn, `rounds` times; per path and mode, the round with the median requests/s."""
    paths = {"direct": lambda: direct(lab), "xdplb": lambda: xdplb(lab, director),
             "nftables": lambda: nftables(lab), "haproxy": lambda: haproxy(lab)}
    runs: dict[str, dict[str, list[dict]]] = {p: {m: [] for m in MODES} for p in paths}
    for _ in range(rounds):
        for name, path in paths.items():
            with path() as targets:
                for mode, extra in MODES.items():
                    runs[name][mode].append(wrk_parallel(lab, targets, seconds=seconds, connections=33, extra=extra))
    return {p: {m: sorted(rs, key=lambda r: r["requests_per_s"])[len(rs) // 2] for m, rs in modes.items()}
            for p, modes in runs.items()}


def xdp_pps(lab: Lab, director: Director, pps: float | None) -> float:
    director.attach()
    try:
        director.set_service(dr_service("udp", 9, weights={"rs1": 1, "rs2": 1, "rs3": 1}))
        return generate(lab, rate=pps)
    finally:
        director.detach()
        director.reset()


def mac_macro(mac: str) -> str:
    return ",".join(f"0x{b}" for b in mac.split(":"))


def through_reflector(lab: Lab, pps: float | None) -> float:
    """The reflector sends everything to rs1, from lb1: what DR forwarding costs at the least."""
    reflector = Program(BPF_DIR / "baseline.c", "xdp_reflect", cflags=[
        f"-DREFLECT_DMAC={mac_macro(BY_NAME['rs1'].mac('front'))}",
        f"-DREFLECT_SMAC={mac_macro(BY_NAME['lb1'].mac('front'))}"])
    try:
        with in_netns(lab.ns("lb1")):
            reflector.attach("front", "native")
        try:
            return generate(lab, rate=pps)
        finally:
            with in_netns(lab.ns("lb1")):
                reflector.detach("front", "native")
    finally:
        reflector.close()


def generate(lab: Lab, seconds: float = 2.0, rate: float | None = None, chunk: int = 200_000) -> float:
    """Packets/s through the director's XDP program. A live-frames generator on the director's veth
    peer (the bridge port) sends one established UDP flow to the VIP in chunks, for `seconds`, paced
    to `rate` packets/s or as fast as it can; a sink on that same port counts and drops what comes
    back."""
    lb1 = BY_NAME["lb1"]
    frame = bytes(Ether(src=BY_NAME["router"].mac("front"), dst=lb1.mac("front"))
                  / IP(src=BY_NAME["client"].address("edge"), dst=VIP4, ttl=63) / UDP(sport=40000, dport=9)
                  / (b"x" * 18))
    gen = Program(BPF_DIR / "baseline.c", "xdp_tx")
    sink = Program(BPF_DIR / "baseline.c", "xdp_sink")
    port = "lb1-front"
    try:
        runner = gen.runner
        with in_netns(lab.switch):
            ifindex = socket.if_nametoindex(port)
            sink.attach(port, "native")  # replaces the lab's XDP_PASS there
            try:
                runner.live(frame, ifindex, repeat=1000)  # warm-up: the flow is established
                time.sleep(0.1)
                before, start, sent = sink.counter("sunk"), time.monotonic(), 0
                while time.monotonic() - start < seconds:
                    runner.live(frame, ifindex, repeat=chunk)
                    sent += chunk
                    if rate:
                        time.sleep(max(0.0, start + sent / rate - time.monotonic()))
                elapsed = time.monotonic() - start
                time.sleep(0.1)
                return (sink.counter("sunk") - before) / elapsed
            finally:
                lab.restore_port_program(port)
    finally:
        gen.close()
        sink.close()


def measure(seconds: int, rounds: int, pps: float | None = None) -> dict:
    exit_on_signals()
    lab = Lab(f"xb{os.getpid()}")
    lab.up("native")
    director = Director(lab, "lb1", Sizes(max_services=8, conn_max=1 << 18))
    try:
        http = http_rounds(lab, director, seconds, rounds)
        balancer_pps = xdp_pps(lab, director, pps)
        reflector_pps = through_reflector(lab, pps)
    finally:
        director.close()
        lab.down()

    def rps(target: str, mode: str = "keepalive") -> float:
        return http[target][mode]["requests_per_s"]

    ratios = {f"xdplb_vs_{t}": round(rps("xdplb") / rps(t), 3) for t in ("direct", "nftables", "haproxy")}
    ratios |= {f"xdplb_vs_{t}_new_connections": round(rps("xdplb", "new_connections") / rps(t, "new_connections"), 3)
               for t in ("direct", "nftables", "haproxy")}
    ratios["xdp_vs_reflector_pps"] = round(balancer_pps / reflector_pps, 3)
    flagged = sorted({t for t, modes in http.items() for r in modes.values() if r["socket_errors"] or r["non_2xx"]})
    return {"http": http, "pps": {"xdplb": round(balancer_pps), "reflector": round(reflector_pps)}, "ratios": ratios,
            "flagged": flagged}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=3, help="wrk duration per case")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over all paths; the median round counts")
    parser.add_argument("--pps", type=float, help="pace the packet generator to this rate (default: flat out)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    result = measure(args.seconds, args.rounds, args.pps)
    if args.json:
        print(json.dumps(result))
        return
    console = Console(emoji=False)
    table = Table(title="HTTP through the director (3 wrk x 11 connections, median round)")
    for col in ("path", "keep-alive req/s", "p99 ms", "new conn req/s", "p99 ms"):
        table.add_column(col, justify="left" if col == "path" else "right")
    for target, modes in result["http"].items():
        ka, nc = modes["keepalive"], modes["new_connections"]
        table.add_row(target, f"{ka['requests_per_s']:.0f}", f"{ka['p99_ms']:.2f}",
                      f"{nc['requests_per_s']:.0f}", f"{nc['p99_ms']:.2f}")
    console.print(table)
    console.print(f"XDP path: xdplb {result['pps']['xdplb']:,} pps, reflector {result['pps']['reflector']:,} pps")
    console.print("ratios: " + ", ".join(f"{k}={v}" for k, v in result["ratios"].items()))
    if result["flagged"]:
        console.print(f"[red]socket errors or non-2xx answers on: {', '.join(result['flagged'])}[/]")


if __name__ == "__main__":
    main()
