"""`make demo`: the balancer compiled, loaded and fed real frames, explained as it goes.

The namespace lab (real clients and servers) is the next step of the project; until then every frame
goes through the real XDP program with BPF_PROG_TEST_RUN, exactly as a NIC would hand it over.
"""

from __future__ import annotations

import ipaddress
import random
from collections import Counter

from rich.console import Console
from rich.table import Table
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from xdplb.datapath import Datapath, Sizes
from xdplb.model import Backend, Service
from xdplb.net import Nexthop

console = Console()
VIP = "10.100.0.100"
ROUTER_MAC, LB_MAC = "02:00:0a:63:00:01", "02:00:0a:64:00:02"
SERVERS = {"rs1": ("10.100.0.11", 3), "rs2": ("10.100.0.12", 2), "rs3": ("10.100.0.13", 1)}
MACS = {name: f"02:00:0a:64:00:{11 + i:02x}" for i, name in enumerate(SERVERS)}


def frame(client: str, sport: int, flags: str, payload: bytes = b"") -> bytes:
    return bytes(Ether(src=ROUTER_MAC, dst=LB_MAC) / IP(src=client, dst=VIP)
                 / TCP(sport=sport, dport=80, flags=flags) / payload)


def server_of(out: bytes) -> str:
    mac = Ether(out).dst
    return next(name for name, m in MACS.items() if m == mac)


def service(weights: dict[str, int], scheduler: str = "wrr") -> Service:
    return Service(protocol="tcp", vip=VIP, port=80, scheduler=scheduler, backends=tuple(
        Backend(address=addr, weight=weights[name]) for name, (addr, _) in SERVERS.items()))


def step(text: str) -> None:
    console.print(f"\n[bold cyan]>[/] {text}")


def clients(n: int, seed: int) -> list[str]:
    rnd = random.Random(seed)
    return [str(ipaddress.IPv4Address(0x0A630000 | rnd.getrandbits(16))) for _ in range(n)]


def open_connections(dp: Datapath, sources: list[str], port0: int) -> Counter:
    placed = Counter()
    for i, src in enumerate(sources):
        res = dp.run(frame(src, port0 + i, "S"))
        for _ in range(3):
            dp.run(frame(src, port0 + i, "A", b"GET / HTTP/1.1\r\n\r\n"))
        placed[server_of(res.frame)] += 1
    return placed


def show_distribution(title: str, placed: Counter, weights: dict[str, int]) -> None:
    table = Table(title=title)
    for col in ("server", "weight", "new connections", "share"):
        table.add_column(col, justify="right" if col != "server" else "left")
    total = sum(placed.values()) or 1
    for name in SERVERS:
        table.add_row(name, str(weights[name]), str(placed[name]), f"{placed[name] / total:.0%}")
    console.print(table)


def show_stats(dp: Datapath, svc: Service) -> None:
    table = Table(title="ipvsadm --stats, from the per-CPU counters")
    for col in ("", "Conns", "InPkts", "InBytes"):
        table.add_column(col, justify="right" if col else "left")
    s = dp.service_stats(svc.key)
    table.add_row(f"TCP {VIP}:80", str(s["conns"]), str(s["in_pkts"]), str(s["in_bytes"]))
    per = dp.backend_stats(svc.key)
    for name, (addr, _) in SERVERS.items():
        b = per[ipaddress.ip_address(addr)]
        table.add_row(f"  -> {name} {addr}", str(b["conns"]), str(b["in_pkts"]), str(b["in_bytes"]))
    console.print(table)


def main() -> None:
    console.rule("[bold]xdplb demo: the XDP data plane")
    step("Compiling bpf/xdplb.c with BCC and loading it into the kernel (the verifier checks it).")
    with console.status("compiling"):
        dp = Datapath(Sizes(conn_max=1 << 16), resolver=lambda a: Nexthop(1, LB_MAC, MACS["rs1"]))
    try:
        run(dp)
    finally:
        dp.close()
    console.rule("[bold green]demo finished: every frame above went through the real XDP program")


def run(dp: Datapath) -> None:
    weights = {name: w for name, (_, w) in SERVERS.items()}
    hops = {ipaddress.ip_address(addr): Nexthop(1, LB_MAC, MACS[name]) for name, (addr, _) in SERVERS.items()}
    svc = service(weights)
    dp.set_service(svc, hops)
    step(f"Virtual service TCP {VIP}:80, weighted round robin (wrr) over rs1, rs2, rs3 with weights 3:2:1, "
         "direct routing (DR: the director only rewrites MAC addresses).")

    step("600 clients each open a connection (SYN) and send 3 data packets.")
    placed = open_connections(dp, clients(600, seed=1), 20000)
    show_distribution("Where new connections went", placed, weights)
    show_stats(dp, svc)

    step("rs1 made quiescent (weight 0): its established connections go on, new ones go elsewhere.")
    keep, port = clients(1, seed=2)[0], 33333
    while (first := server_of(dp.run(frame(keep, port, "S")).frame)) != "rs1":
        port += 1
    weights["rs1"] = 0
    dp.set_service(service(weights), hops)
    later = server_of(dp.run(frame(keep, port, "A", b"more data")).frame)
    console.print(f"  a connection opened on [bold]{first}[/] before: its next packet went to [bold]{later}[/]")
    show_distribution("300 new connections after rs1 went quiescent", open_connections(dp, clients(300, 3), 40000),
                      weights)

    step("simulate: where would a new client go? The real program runs, but nothing is recorded.")
    before = dp.counters()
    sim = dp.simulate(frame("10.99.0.77", 5555, "S"))
    console.print(f"  10.99.0.77:5555 -> {VIP}:80 would go to [bold]{sim.backend}[/] "
                  f"(verdict {sim.verdict}, {sim.reason}); counters changed: {dp.counters() != before}")

    step("Consistent hashing (mh, weighted Maglev): removing rs2 moves only the clients that were on it.")
    weights = {name: 1 for name in SERVERS}
    mh = service(weights, "mh")
    dp.set_service(mh, hops)
    sources = clients(2000, seed=4)
    was = [dp.simulate(frame(s, 1000, "S")).backend for s in sources]
    rs2 = ipaddress.ip_address(SERVERS["rs2"][0])
    dp.set_service(mh.model_copy(update={"backends": tuple(b for b in mh.backends if b.address != rs2)}))
    now = [dp.simulate(frame(s, 1000, "S")).backend for s in sources]
    moved = sum(a != b for a, b in zip(was, now, strict=True))
    on_rs2 = sum(a == rs2 for a in was)
    console.print(f"  {moved} of {len(sources)} clients moved; {on_rs2} of them were on rs2")

    counters = {k: v for k, v in dp.counters().items() if v}
    console.print("\n[bold]Global counters:[/] " + ", ".join(f"{k}={v}" for k, v in counters.items()))


if __name__ == "__main__":
    main()
