"""`xdplb list` (ipvsadm -Ln, --stats, --rate, -Lnc, with what the health checks found) and `xdplb
simulate`: reads, nothing changes."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from xdplb.cli_health import health_by_backend
from xdplb.cli_ops import Ops, OptionalService, err, operator, ops_app, out, split_service
from xdplb.client import service_path
from xdplb.ipvsadm_view import View, connections, listing, version_line
from xdplb.model import Protocol

_API_STATE = {"SYN_RECV": "NEW"}  # ipvsadm's word -> the API's


@operator(ops_app, "list")
def list_services(
    ops: Ops, service: OptionalService = None,
    stats: Annotated[bool, typer.Option("--stats", help="Conns InPkts OutPkts InBytes OutBytes")] = False,
    rate: Annotated[bool, typer.Option("--rate", help="CPS InPPS OutPPS InBPS OutBPS")] = False,
    exact: Annotated[bool, typer.Option("--exact", help="numbers without K/M/G/T")] = False,
    conns: Annotated[bool, typer.Option("--connections", "-c", help="the connection table (ipvsadm -Lnc)")] = False,
    client: Annotated[str | None, typer.Option(help="-c: only this client address", show_default=False)] = None,
    backend: Annotated[str | None, typer.Option(help="-c: only this backend address", show_default=False)] = None,
    state: Annotated[str | None, typer.Option(help="-c: only this state (ESTABLISHED, SYN_RECV, CLOSING)",
                                              show_default=False)] = None,
) -> None:
    """The virtual services as ipvsadm -Ln prints them (--stats, --rate; -c the connections); a backend
    its check found down ends its line with DOWN (reason).

    -o json: {"services": GET /v1/services, "stats": GET /v1/stats, "health": GET /v1/health}, or with -c
    the connection page."""
    sid = split_service(service)[0] if service else None
    if stats and rate:
        raise typer.BadParameter("--stats or --rate, not both")
    if conns:
        _list_connections(ops, sid, client, backend, state)
        return
    services = [ops.api.get(service_path(sid)).data] if sid else ops.api.get("/v1/services").data
    counters = ops.api.get("/v1/stats", service=sid).data
    health = health_by_backend(ops, sid)
    if ops.json:
        ops.print_json({"services": services, "stats": counters, "health": health})
        return
    if rate and any(row.get("rates") is None for row in counters):
        err.print("no rates: this director runs no rate estimator (shown as 0)", style="yellow")
    view = View.STATS if stats else View.RATE if rate else View.PLAIN
    header = None if sid else version_line(*_version_and_size(ops))
    out.out(listing(services, counters, view, exact, header, health), end="")


def _version_and_size(ops: Ops) -> tuple[str, int | None]:
    """The director's xdplb version and connection table size (ipvsadm's `(size=...)`)."""
    data = ops.api.get("/v1/info").data
    return data["version"], data["conn_max"]


def _list_connections(ops: Ops, sid: str | None, client: str | None, backend: str | None, state: str | None) -> None:
    """Every page of GET /v1/connections (ipvsadm -Lnc shows the whole table)."""
    state = _API_STATE.get(state.upper(), state.upper()) if state else None
    rows: list[dict[str, Any]] = []
    total = None
    while total is None or len(rows) < total:
        page = ops.api.get("/v1/connections", service=sid, client=client, backend=backend, state=state,
                           offset=len(rows), limit=10000).data
        total = page["total"]
        rows += page["items"]
        if not page["items"]:
            break
    if ops.json:
        ops.print_json({"total": total, "offset": 0, "items": rows})
        return
    timeouts = ops.api.get("/v1/config").data["timeouts"]
    out.out(connections(rows, timeouts), end="")


# ---- simulate ---------------------------------------------------------------------------------------

@operator(ops_app, "simulate")
def simulate(
    ops: Ops,
    source: Annotated[str, typer.Option("--from", help="the client: ADDRESS:PORT ([v6]:port)")],
    destination: Annotated[str, typer.Option("--to", help="the VIP: ADDRESS:PORT[/tcp|udp]")],
    flags: Annotated[str, typer.Option("--flags", help="TCP flags of the packet (S: a new connection)")] = "S",
) -> None:
    """Which backend a client's first packet goes to, and the frame the balancer would send.

    Nothing changes; -v adds the frames in hex: xdplb simulate --from 1.2.3.4:5555 --to 10.100.0.100:80/tcp"""
    dest, _, proto = destination.rpartition("/") if "/" in destination else (destination, "", "tcp")
    if proto.lower() not in {p.value for p in Protocol}:
        raise typer.BadParameter(f"{destination!r}: the protocol after / is tcp or udp", param_hint="--to")
    reply = ops.api.get("/v1/simulate", source=source, destination=dest, protocol=proto.lower(), tcp_flags=flags)
    if ops.json:
        ops.print_json(reply.data)
        return
    out.print(simulation_table(reply.data, ops.verbose))


def simulation_table(sim: dict[str, Any], verbose: bool) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    verdict_style = {"TX": "green", "REDIRECT": "green", "DROP": "red"}.get(sim["verdict"], "yellow")
    rows = [("service", Text(sim["service"] or "none")), ("backend", Text(sim["backend"] or "none")),
            ("verdict", Text(sim["verdict"], verdict_style)), ("reason", Text(sim["reason"])),
            ("in", Text(sim["summary_in"])), ("out", Text(sim["summary_out"] or "(no frame)"))]
    if verbose:
        rows += [("in hex", Text(sim["frame_in"])), ("out hex", Text(sim["frame_out"] or "-"))]
    for name, value in rows:
        table.add_row(name, value)
    return table
