"""`make demo`: the namespace lab comes up, real clients talk to real servers through the XDP balancer,
and the demo says what happens as it goes; the lab is torn down at the end, whatever happens."""

from __future__ import annotations

import threading
import time
from collections import Counter

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from xdplb.lab import VIP4, VIP6, Director, Lab, exit_on_signals
from xdplb.labclients import (
    DR_WEIGHTS,
    UdpProbe,
    address_of,
    dr_service,
    ha_settings,
    http_names,
    stream,
    tun_service,
    udp_names,
    upload,
    url,
)
from xdplb.vrrp.control import SpeakerError

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


def show_cli(director: Director, *args: str) -> None:
    """An operator command against the director's API, shown as typed and as it answered."""
    console.print(f"  [dim]$ xdplb {' '.join(args)}[/]")
    console.print(escape(director.cli(*args)), end="", highlight=False)


def show_capture(lab: Lab, director: Director, service_id: str) -> None:
    """xdplb capture while curl runs: the frames native XDP sends back out, which tcpdump never sees."""
    from scapy.layers import inet, inet6  # noqa: F401  (binds IP, IPv6, TCP, UDP under Ether)
    from scapy.layers.l2 import Ether
    from scapy.utils import rdpcap

    step("tcpdump on lb1 would not see what XDP sends back out. The balancer captures it itself: each "
         "frame as received from the router and as sent to its real server (only the MAC changes in DR).")
    path = director.dir / "demo.pcap"
    done = threading.Event()
    clients = threading.Thread(target=lambda: [http_names(lab, url(4), 1) for _ in range(100) if not done.is_set()])
    clients.start()
    try:
        show_cli(director, "capture", service_id, "--count", "6", "--seconds", "10", "-w", str(path))
    finally:
        done.set()
        clients.join()
    for i, p in enumerate(rdpcap(str(path))):
        frame = Ether(bytes(p))
        console.print(f"  {'received' if i % 2 == 0 else 'sent    '} {frame.src} > {frame.dst}  "
                      f"{escape(frame.payload.summary())}", highlight=False)


def show_health(lab: Lab, director: Director) -> None:
    """A real server fails and comes back; its HTTP check takes it out and brings it back."""
    check = {"type": "http", "interval": 0.5, "timeout": 0.5, "rise": 2, "fall": 2}
    director.set_service(dr_service(check=check))
    step("Health checks: lb1 now GETs / on each server every 0.5 s (2 failures take a server out, "
         "2 successes bring it back). rs2's nginx is stopped.")
    rs2 = str(address_of("rs2"))
    started = time.monotonic()
    lab.set_nginx("rs2", False)
    while _up(director, rs2) and time.monotonic() - started < 10:
        time.sleep(0.05)
    console.print(f"  lb1 took rs2 out {time.monotonic() - started:.1f} s after nginx stopped")
    show_cli(director, "health")
    show_distribution("30 requests while rs2 is down", http_names(lab, url(4), 30), DR_WEIGHTS)
    step("rs2's nginx starts again.")
    started = time.monotonic()
    lab.set_nginx("rs2", True)
    while not _up(director, rs2) and time.monotonic() - started < 10:
        time.sleep(0.05)
    console.print(f"  rs2 was back {time.monotonic() - started:.1f} s later")
    show_distribution("30 requests with rs2 back", http_names(lab, url(4), 30), DR_WEIGHTS)


def show_failover(lab: Lab, lb1: Director, lb2: Director) -> None:
    """lb1 dies (its cables out) in the middle of a download and of a UDP probe; lb2 takes over."""
    svc = dr_service(scheduler="mh")
    for d in (lb1, lb2):
        d.set_service(svc)
        d.set_service(dr_service("udp", 9000, scheduler="mh"))
    step("High availability: lb1 and lb2 run VRRPv3 (VRID 51, adverts every 100 ms; lb1 priority 150, lb2 100). "
         "The master holds the VIPs; both balance with Maglev (mh), so both place a flow on the same server.")
    show_cli(lb2, "ha", "status")
    step("A download starts, and the client sends a UDP datagram through the VIP every millisecond. "
         "Then lb1's cables are pulled.")
    download = stream(lab, rate="200k")
    with UdpProbe(lab) as probe:
        time.sleep(1.0)
        lab.cut("lb1")
        started = time.monotonic()
        while _vrrp_state(lb2) != "master" and time.monotonic() - started < 10:
            time.sleep(0.01)
        console.print(f"  lb2 became master {time.monotonic() - started:.2f} s after the cut")
        time.sleep(1.0)
    r = probe.result
    console.print(f"  UDP: {r['sent'] - r['answered']} of {r['sent']} datagrams lost, the longest gap "
                  f"{r['longest_gap'] * 1000:.0f} ms")
    size, code, sent_by = download.communicate(timeout=40)[0].split()
    console.print(f"  the download went on through lb2: HTTP {code}, {size} bytes from {sent_by}")
    show_distribution("30 new requests through lb2 (mh hashes the client's address: one server)",
                      http_names(lab, url(4), 30), dict.fromkeys(DR_WEIGHTS, 1))
    show_cli(lb2, "ha", "status")
    step("lb1's cables go back in: it has the higher priority, so it preempts lb2.")
    lab.cut("lb1", connected=True)
    started = time.monotonic()
    while _vrrp_state(lb1) != "master" and time.monotonic() - started < 10:
        time.sleep(0.01)
    console.print(f"  lb1 master again {time.monotonic() - started:.2f} s later")
    show_cli(lb1, "ha", "status")


def _vrrp_state(director: Director) -> str | None:
    try:
        return director.vrrp()["state"]
    except SpeakerError:  # not answering (yet): no state
        return None


def _up(director: Director, backend: str) -> bool:
    return next(r["up"] for r in director.api_get("/v1/health") if r["backend"] == backend)


def main() -> None:
    """The demo; its lab goes down whatever happens (Ctrl-C, SIGTERM included)."""
    console.rule("[bold]xdplb demo: real traffic through an XDP load balancer")
    exit_on_signals()
    lab = Lab("xdemo")  # its own lab: a lab of yours (xdplb lab up) is left alone
    step("Building the lab: a client behind a router, two directors, three DR real servers running nginx "
         "and a UDP echo, three NAT servers (each host is a network namespace).")
    with console.status("lab up") as status:
        lab.up("native", progress=status.update, ha=True)
    try:
        director = Director(lab, "lb1", ha=ha_settings(150))
        backup = Director(lab, "lb2", ha=ha_settings(100))
        step(f"Starting lb1's and lb2's daemons (xdplb daemon -c {director.config_path.name}): each compiles the "
             f"balancer (bpf/xdplb.c) with BCC, pins its maps under its own directory ({director.pin_dir}), "
             "attaches it to its front interface and starts its VRRP speaker, which elects lb1 to hold the VIPs. "
             "Services change by the configuration file and a SIGHUP, or through the REST API "
             f"(here on {director.socket}) with the xdplb command.")
        try:
            console.print(f"  lb1 attached in {director.attach()} XDP mode, lb2 in {backup.attach()} XDP mode")
            started = time.monotonic()
            while _vrrp_state(director) != "master" and time.monotonic() - started < 10:
                time.sleep(0.05)
            console.print(f"  lb1 is VRRP {_vrrp_state(director)}, lb2 {_vrrp_state(backup)}")
            run(lab, director)
            show_failover(lab, director, backup)
        finally:
            backup.close()
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
    step("What the director counted, through its REST API, as ipvsadm -Ln --stats prints it:")
    show_cli(director, "list", "--stats")

    step("Where would a new client go? simulate runs the real XDP program on a built frame and changes nothing:")
    show_cli(director, "simulate", "--from", "203.0.113.7:40000", "--to", f"{VIP4}:80/tcp")

    step("A long download starts (1 MB, served at 256 kB/s).")
    download = stream(lab)
    server = None
    while server is None:  # the one connection still established: the others have closed
        time.sleep(0.1)
        server = next((name for name in DR_WEIGHTS for c in director.dp.connections()
                       if c.state == "ESTABLISHED" and c.backend == address_of(name)), None)
    console.print(f"  the connection table shows it on [bold]{server}[/]")
    step("ipvsadm -Ln's view: the download is ActiveConn; the closed connections stay InActConn until "
         "tcpfin (120 s).")
    show_cli(director, "list")
    weights = {**DR_WEIGHTS, server: 0}
    step(f"{server} is drained through the API (weight 0): no new connections, established ones go on.")
    show_cli(director, "backend", "drain", svc.id, str(address_of(server)))
    show_distribution(f"60 new requests after {server} went quiescent", http_names(lab, url(4), 60), weights)
    size, code, sent_by = download.communicate(timeout=40)[0].split()
    console.print(f"  the download finished: HTTP {code}, {size} bytes, all from {sent_by}")

    show_capture(lab, director, svc.id)

    show_health(lab, director)

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
