"""`make demo`: the namespace lab comes up, real clients talk to real servers through the XDP balancer,
and the demo says what happens as it goes; the lab is torn down at the end, whatever happens."""

from __future__ import annotations

import time
from collections import Counter

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from xdplb.lab import VIP4, VIP6, Director, Lab, exit_on_signals
from xdplb.labclients import (
    DR_WEIGHTS,
    address_of,
    dr_service,
    http_names,
    stream,
    tun_service,
    udp_names,
    upload,
    url,
)

console = Console(emoji=False)


def step(text: str) -> None:
    console.print(f"\n[bold cyan]>[/] {text}")


def show_distribution(title: str, names: Counter, weights: dict[str, int]) -> None:
    table = Table(title=title)
    for col in ("server", "weight", "answered", "share"):
        table.add_column(col, justify="left" if col == "server" else "right")
    total = sum(names.values()) or 1
    for name, w in weights.items():
        table.add_row(name, str(w), str(names[name]), f"{names[name] / total:.0%}")
    console.print(table)


def show_stats(director: Director, key: tuple, title: str) -> None:
    table = Table(title=title)
    for col in ("", "Conns", "InPkts", "InBytes"):
        table.add_column(col, justify="right" if col else "left")
    s = director.dp.service_stats(key)
    table.add_row(f"{key[0].upper()} {key[1]}:{key[2]}", str(s["conns"]), str(s["in_pkts"]), str(s["in_bytes"]))
    for addr, b in director.dp.backend_stats(key).items():
        table.add_row(f"  -> {addr}", str(b["conns"]), str(b["in_pkts"]), str(b["in_bytes"]))
    console.print(table)


def show_conns(director: Director, svc, title: str) -> None:
    """ipvsadm -Ln: each backend's weight and ActiveConn/InActConn, as the schedulers see them."""
    table = Table(title=title)
    for col in ("", "Weight", "ActiveConn", "InActConn"):
        table.add_column(col, justify="right" if col else "left")
    table.add_row(str(svc), "", "", "")
    counts = director.dp.backend_counts(svc.key)
    for b in svc.backends:
        active, inactive = counts[b.address]
        table.add_row(f"  -> {b.address}", str(b.weight), str(active), str(inactive))
    console.print(table)


def main() -> None:
    """The demo; its lab goes down whatever happens (Ctrl-C, SIGTERM included)."""
    console.rule("[bold]xdplb demo: real traffic through an XDP load balancer")
    exit_on_signals()
    lab = Lab("xdemo")  # its own lab: a lab of yours (xdplb lab up) is left alone
    step("Building the lab: a client behind a router, two directors, three DR real servers running nginx "
         "and a UDP echo, three NAT servers (each host is a network namespace).")
    with console.status("lab up") as status:
        lab.up("native", progress=status.update)
    try:
        director = Director(lab, "lb1")
        step(f"Starting lb1's daemon (xdplb daemon -c {director.config_path.name}): it compiles the balancer "
             f"(bpf/xdplb.c) with BCC, pins its maps under {director.pin_dir} and attaches it to lb1's front "
             "interface. Each service change below is its configuration file rewritten and a SIGHUP.")
        try:
            console.print(f"  attached in {director.attach()} XDP mode")
            run(lab, director)
        finally:
            director.close()
    finally:
        step("Tearing the lab down.")
        lab.down()
    console.rule("[bold green]demo finished")


def run(lab: Lab, director: Director) -> None:
    svc = dr_service()
    director.set_service(svc)
    step(f"Virtual service TCP {VIP4}:80: weighted round robin over rs1, rs2, rs3 with weights 3:2:1, "
         "direct routing (the director rewrites MAC addresses; servers answer the client directly).")

    step("The client makes 60 HTTP requests with curl, a new connection each.")
    show_distribution("Who answered", http_names(lab, url(4), 60), DR_WEIGHTS)
    show_stats(director, svc.key, "ipvsadm --stats, from the balancer's per-CPU counters")

    step("A long download starts (1 MB, served at 256 kB/s).")
    download = stream(lab)
    server = None
    while server is None:  # the one connection still established: the others have closed
        time.sleep(0.1)
        server = next((name for name in DR_WEIGHTS for c in director.dp.connections()
                       if c.state == "ESTABLISHED" and c.backend == address_of(name)), None)
    console.print(f"  the connection table shows it on [bold]{server}[/]")
    show_conns(director, svc, "ipvsadm -Ln: the download is active; closed connections stay inactive "
               "until tcpfin (120 s)")
    weights = {**DR_WEIGHTS, server: 0}
    director.set_service(dr_service(weights=weights))
    step(f"{server} is made quiescent (weight 0): no new connections, established ones go on.")
    show_distribution(f"60 new requests after {server} went quiescent", http_names(lab, url(4), 60), weights)
    size, code, sent_by = download.communicate(timeout=40)[0].split()
    console.print(f"  the download finished: HTTP {code}, {size} bytes, all from {sent_by}")

    step(escape(f"The same over IPv6 ([{VIP6}]:80) and a UDP echo service (port 9000, round robin)."))
    director.set_service(dr_service(version=6))
    show_distribution("IPv6: 30 HTTP requests", http_names(lab, url(6), 30), DR_WEIGHTS)
    udp = dr_service("udp", 9000, scheduler="rr")
    director.set_service(udp)
    show_distribution("UDP: 30 datagrams from 30 source ports", udp_names(lab, 4, 30, 16), dict.fromkeys(DR_WEIGHTS, 1))

    step("TUN: the same servers, reached through tunnels instead of MAC rewriting. The director "
         "encapsulates (IPIP or GUE), each server's XDP decapsulator (bpf/decap.c) unwraps the packet "
         "and the server answers the client directly, as in DR.")
    for title, svc in (("IPIP 4in4", tun_service()), ("GUE over IPv6 (4in6)", tun_service(encap="gue",
                                                                                         backend_version=6))):
        director.set_service(svc)
        show_distribution(f"TUN {title}: 30 HTTP requests", http_names(lab, url(4), 30), DR_WEIGHTS)
    director.set_service(tun_service(port=9001))
    server, received = upload(lab)
    console.print(f"  a 200 kB upload through the tunnel: {server} received {received} bytes; the director sent "
                  f"{director.dp.counters()['icmp_too_big_sent']} fragmentation-needed message(s), so the "
                  "client's TCP found the tunnel's smaller path MTU")

    counters = {k: v for k, v in director.dp.counters().items() if v}
    console.print("\n[bold]Balancer counters:[/] " + ", ".join(f"{k}={v}" for k, v in counters.items()))


if __name__ == "__main__":
    main()
