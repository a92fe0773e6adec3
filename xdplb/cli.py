"""The xdplb command line: run a director's daemon and stop it, check that the data plane compiles
and loads on this kernel, run the demo, drive the namespace lab, attach the TUN decapsulator."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="xdplb: an XDP layer-4 load balancer", no_args_is_help=True)
console = Console(emoji=False)


@app.command()
def preflight(
    conn_max: int = typer.Option(1 << 20, help="connection table entries"),
    ring_max: int = typer.Option(65537, help="largest Maglev table of a service (prime)"),
    max_services: int = typer.Option(64, help="virtual services"),
    max_backends: int = typer.Option(4096, help="backends over all services"),
) -> None:
    """Compile and load the balancer with these sizes, and show what the kernel accepted."""
    from xdplb.datapath import Datapath, Sizes

    try:
        sizes = Sizes(conn_max=conn_max, ring_max=ring_max, max_services=max_services, max_backends=max_backends)
    except ValueError as e:
        console.print(f"[red]error:[/] {e}")
        raise typer.Exit(2) from e
    with console.status("compiling and loading bpf/xdplb.c"), Datapath(sizes) as dp:
        console.print(f"[green]xdplb data plane loaded and verified[/]: {dp.instructions} BPF instructions")
        table = Table()
        table.add_column("map")
        table.add_column("entries", justify="right")
        for name, m in dp.maps.items():
            table.add_row(name, str(m.max_entries))
        console.print(table)


ConfigOpt = typer.Option(..., "--config", "-c", help="the director's YAML configuration file")
NetnsOpt = typer.Option(None, "--netns", help="run inside this network namespace (entered with setns)")


@app.command()
def daemon(config: Path = ConfigOpt, netns: str | None = NetnsOpt) -> None:
    """Run a director's control plane: pinned maps, the reconciler, the sweeper. SIGHUP reloads the
    file; SIGTERM leaves the balancer forwarding (xdplb stop --detach removes it)."""
    import logging

    from xdplb import daemon as daemon_mod
    from xdplb.apiserver import TokenFileError
    from xdplb.config import ConfigError
    from xdplb.pinning import PinnedMapError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        raise typer.Exit(daemon_mod.run(config, netns))
    except (ConfigError, PinnedMapError, TokenFileError) as e:
        typer.echo(f"error: {e}", err=True)  # unwrapped, to stderr: a daemon's output goes to logs
        raise typer.Exit(2) from e


@app.command()
def speaker(config: Path = ConfigOpt, netns: str | None = NetnsOpt) -> None:
    """Run a director's VRRP speaker (the configuration's `ha` section). The daemon starts one when
    none answers; it runs on while the daemon restarts, and `xdplb stop --detach` ends it."""
    import logging

    from xdplb.config import ConfigError
    from xdplb.vrrp import speaker as speaker_mod

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        rc = speaker_mod.run(config, netns)
    except (ConfigError, RuntimeError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from e
    raise typer.Exit(rc)


@app.command()
def stop(config: Path = ConfigOpt, netns: str | None = NetnsOpt,
         detach: bool = typer.Option(False, "--detach", help="also remove the balancer and its pinned maps")) -> None:
    """Stop a director's daemon; the balancer keeps forwarding unless --detach."""
    from xdplb import daemon as daemon_mod

    for line in daemon_mod.stop(config, netns, detach) or ["nothing to do"]:
        console.print(line)


@app.command()
def demo() -> None:
    """The guided demo (the same as `make demo`)."""
    from xdplb.demo import main

    main()



lab_app = typer.Typer(help="The namespace lab: client, router, two directors, six real servers", no_args_is_help=True)
app.add_typer(lab_app, name="lab")
PrefixOpt = typer.Option("xl", help="namespace prefix: several labs can coexist")


@lab_app.command("up")
def lab_up(
    xdp: str = typer.Option("native", help="how directors run XDP: native (veth) or generic"),
    prefix: str = PrefixOpt,
) -> None:
    """Build the lab (an existing one is rebuilt)."""
    from xdplb.lab import Lab, LabError

    with console.status("building the lab") as status:
        try:
            Lab(prefix).up(xdp, progress=lambda text: status.update(text) or console.print(f"  {text}"))
        except LabError as e:
            console.print(f"[red]error:[/] {e}")
            raise typer.Exit(1) from e
    console.print(f"[green]lab up[/] ({xdp} XDP); try: xdplb lab exec client curl http://10.100.0.11/")


@lab_app.command("down")
def lab_down(prefix: str = PrefixOpt, all_labs: bool = typer.Option(False, "--all", help="every lab here")) -> None:
    """Remove the lab: every namespace and every process in it."""
    from xdplb.lab import Lab, all_prefixes

    for p in sorted(all_prefixes()) if all_labs else [prefix]:
        Lab(p).down()
        console.print(f"lab {p} down")


@lab_app.command("status")
def lab_status(prefix: str = PrefixOpt) -> None:
    """Hosts, their addresses and XDP mode per interface, and the services the directors balance."""
    from xdplb.lab import HOSTS, Lab

    lab = Lab(prefix)
    table = Table(title=f"lab {prefix}: {'up' if lab.is_up() else 'down'}")
    for col in ("host", "role", "interface", "addresses", "xdp"):
        table.add_column(col)
    for row in lab.status():
        if not row["up"]:
            table.add_row(row["host"], row["role"], "", "[dim]absent[/]", "")
        for ifname, info in row["interfaces"].items():
            table.add_row(row["host"], row["role"], ifname, " ".join(info["addresses"]), info["xdp"] or "-")
    console.print(table)
    for host in (h.name for h in HOSTS if h.role == "director"):
        for svc in lab.services(host):
            backends = ", ".join(f"{b['address']} w{b['weight']}" for b in svc["backends"])
            console.print(f"{host}: {svc['protocol'].upper()} {svc['vip']}:{svc['port']} {svc['scheduler']} "
                          f"{svc['method']} -> {backends}")


@lab_app.command("exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def lab_exec(ctx: typer.Context, host: str, prefix: str = PrefixOpt) -> None:
    """Run a command on a lab host: xdplb lab exec client curl http://10.100.0.100/"""
    from xdplb.lab import Lab, LabError

    try:
        proc = Lab(prefix).popen(host, ctx.args)
    except LabError as e:
        console.print(f"[red]error:[/] {e}")
        raise typer.Exit(2) from e
    raise typer.Exit(proc.wait())


decap_app = typer.Typer(
    help="TUN real servers: the XDP decapsulator (IPIP and GUE to this host's addresses). It stays attached "
         "after the command exits; it takes the addresses the host has when attached: re-attach after adding one.",
    no_args_is_help=True)
app.add_typer(decap_app, name="decap")


@decap_app.command("attach")
def decap_attach(
    iface: str,
    gue_port: int = typer.Option(6080, help="UDP destination port of GUE (DECAP_GUE_PORT); 0: IPIP only"),
    mode: str = typer.Option("auto", help="auto (native, else generic), native or generic"),
) -> None:
    """Decapsulate IPIP and GUE addressed to this host, on IFACE.

    IPIP: 4in4, 6in6, 4in6 and 6in4; GUE variant 1: UDP to the GUE port carrying an IP packet. The host's
    addresses are read now (every global address of this namespace): an address added later needs an
    attach again. A decapsulator already there is replaced; another XDP program is refused."""
    from xdplb.decap import DecapError, Decapsulator

    try:
        with Decapsulator(gue_port) as d:
            got = d.attach(iface, mode)
            addrs = ", ".join(map(str, d.addresses)) or "none"
    except DecapError as e:
        console.print(f"[red]error:[/] {e}")
        raise typer.Exit(1) from e
    gue = f"GUE on UDP {gue_port}" if gue_port else "no GUE"
    console.print(f"[green]decapsulator attached[/] to {iface} ({got}): IPIP, {gue}; for {addrs}")


@decap_app.command("detach")
def decap_detach(iface: str) -> None:
    """Remove the decapsulator from IFACE (never another XDP program)."""
    from xdplb.decap import DecapError, detach

    try:
        detach(iface)
    except DecapError as e:
        console.print(f"[red]error:[/] {e}")
        raise typer.Exit(1) from e
    console.print(f"decapsulator detached from {iface}")


@decap_app.command("status")
def decap_status() -> None:
    """Every interface of this namespace running the decapsulator: mode, GUE port, addresses, counters."""
    from xdplb.decap import COUNTERS, status

    found = status()
    if not found:
        console.print("no decapsulator attached here")
        return
    table = Table()
    table.add_column("")
    for a in found:
        table.add_column(a.ifname, justify="right")
    table.add_row("mode", *(f"{a.mode} (id {a.prog_id})" for a in found))
    table.add_row("GUE port", *(str(a.gue_port or "off") for a in found))
    table.add_row("addresses", *("\n".join(map(str, a.addresses)) for a in found))
    for name in COUNTERS:
        table.add_row(name, *(str(a.counters[name]) for a in found))
    console.print(table)


from xdplb.cli_ops import register  # noqa: E402  (the operator commands, against a director's API)

register(app)

if __name__ == "__main__":
    app()
