"""`xdplb service` and `xdplb backend`: one virtual service or backend at a time, as ipvsadm -A/-E/-D
and -a/-e/-d do. An edit of a service reads it, changes the fields given and writes it back only if
nobody changed the configuration in between (If-Match); a backend edit is the API's backend PATCH.

What a service does with its health checks' verdicts: --on-down remove|keep, --sorry-server,
--quorum/--hysteresis; a backend's --inhibit-on-failure. The checks themselves: `xdplb check`
(xdplb/cli_health.py)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer

from xdplb.checks import OnDown
from xdplb.cli_ops import (
    Ops,
    ServiceWords,
    complete_service,
    operator,
    ops_app,
    report_change,
    split_backend,
    split_service,
)
from xdplb.client import ApiError, service_path
from xdplb.model import Encap, Method, SchedFlag, Scheduler, parse_key

service_app = typer.Typer(help="Virtual services (ipvsadm -A, -E, -D)", no_args_is_help=True)
backend_app = typer.Typer(help="A service's backends, its real servers (ipvsadm -a, -e, -d)", no_args_is_help=True)
ops_app.add_typer(service_app, name="service")
ops_app.add_typer(backend_app, name="backend")


# ---- services -------------------------------------------------------------------------------------

Sched = Annotated[Scheduler | None, typer.Option("--scheduler", "-s", help="IPVS scheduler (default wrr)",
                                                 case_sensitive=False, show_default=False)]
MethodOpt = Annotated[Method | None, typer.Option(
    "--method", help="dr (Route), tun (Tunnel), nat (Masq); default dr", case_sensitive=False, show_default=False)]
Persistent = Annotated[int | None, typer.Option("--persistent", "-p", help="persistence timeout, seconds",
                                                show_default=False)]
Netmask = Annotated[str | None, typer.Option("--netmask", "-M", help="persistence granularity: 24 or 255.255.255.0",
                                             show_default=False)]
Flags = Annotated[str | None, typer.Option("--sched-flags", "-b", help="sh-port (sh), mh-port (mh); '' clears",
                                           show_default=False)]
TunnelOpt = Annotated[Encap | None, typer.Option("--tunnel", help="TUN's encapsulation", case_sensitive=False,
                                                 show_default=False)]
GuePort = Annotated[int | None, typer.Option("--gue-port", help="GUE's UDP port (default 6080)", show_default=False)]
RingSize = Annotated[int | None, typer.Option("--ring-size", help="Maglev table length, a prime", show_default=False)]
ExpireNodest = Annotated[bool | None, typer.Option(
    "--expire-nodest/--no-expire-nodest", help="a connection whose backend is gone is scheduled again "
    "(else dropped until it expires); default: expire", show_default=False)]
Endpoints = Annotated[list[str] | None, typer.Option(
    "--endpoint", help="fwm services: a PROTO:VIP:PORT it listens on (repeat; the first is its own)",
    show_default=False)]
_HEALTH = "What health checks do"
OnDownOpt = Annotated[OnDown | None, typer.Option(
    "--on-down", help="a backend found down leaves the tables (remove) or stays at weight 0, its connections "
    "going on (keep); default remove", case_sensitive=False, show_default=False, rich_help_panel=_HEALTH)]
SorryOpt = Annotated[str | None, typer.Option(
    "--sorry-server", metavar="ADDR[:PORT]", help="takes the traffic while the live backends' weight is below the "
    "quorum", show_default=False, rich_help_panel=_HEALTH)]
QuorumOpt = Annotated[int | None, typer.Option(
    "--quorum", help="total weight of live backends the service needs (default 1)", show_default=False,
    rich_help_panel=_HEALTH)]
HysteresisOpt = Annotated[int | None, typer.Option(
    "--hysteresis", help="weight the quorum may lack once reached (default 0)", show_default=False,
    rich_help_panel=_HEALTH)]


def _flags(text: str) -> list[str]:
    names = [f.strip() for f in text.split(",") if f.strip()]
    known = {f.value for f in SchedFlag}
    bad = [n for n in names if n not in known]
    if bad:
        raise typer.BadParameter(f"{', '.join(bad)}: known flags are {', '.join(sorted(known))}",
                                 param_hint="--sched-flags")
    return names


def _endpoints(texts: list[str]) -> list[dict[str, Any]]:
    found = []
    for text in texts:
        try:
            key = parse_key(text)
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="--endpoint") from None
        if key[0] == "fwm":
            raise typer.BadParameter(f"{text}: an endpoint is PROTO:VIP:PORT", param_hint="--endpoint")
        found.append({"protocol": str(key[0]), "vip": str(key[1]), "port": key[2]})
    return found


@operator(service_app, "add")
def service_add(ops: Ops, service: ServiceWords, scheduler: Sched = None, method: MethodOpt = None,
                persistent: Persistent = None, netmask: Netmask = None, sched_flags: Flags = None,
                tunnel: TunnelOpt = None, gue_port: GuePort = None, ring_size: RingSize = None,
                expire_nodest: ExpireNodest = None, endpoint: Endpoints = None, on_down: OnDownOpt = None,
                sorry_server: SorryOpt = None, quorum: QuorumOpt = None, hysteresis: HysteresisOpt = None) -> None:
    """Add a virtual service (ipvsadm -A).

    xdplb service add tcp 10.100.0.100:80 -s wlc -p 300; fwm services: fwm 7 --endpoint tcp:VIP:80 ..."""
    sid, _ = split_service(service)
    kind, _, rest = sid.partition(":")
    body: dict[str, Any] = {}
    if kind == "fwm":
        found = _endpoints(endpoint or [])
        if not found:
            raise typer.BadParameter("a fwm service needs --endpoint PROTO:VIP:PORT (one per endpoint)",
                                     param_hint="--endpoint")
        body = {**found[0], "fwmark": int(rest), "endpoints": found[1:]}
    else:
        key = parse_key(sid)
        body = {"protocol": str(key[0]), "vip": str(key[1]), "port": key[2], "endpoints": _endpoints(endpoint or [])}
    _apply_options(body, scheduler=scheduler, method=method, ring_size=ring_size, expire_nodest=expire_nodest,
                   sched_flags=sched_flags, persistent=persistent, netmask=netmask, tunnel=tunnel, gue_port=gue_port)
    _health_options(body, on_down, sorry_server, quorum, hysteresis)
    report_change(ops, ops.api.call("POST", "/v1/services", body=body), f"service {sid} added")


@operator(service_app, "edit")
def service_edit(ops: Ops, service: ServiceWords, scheduler: Sched = None, method: MethodOpt = None,
                 persistent: Persistent = None, netmask: Netmask = None,
                 no_persistent: Annotated[bool, typer.Option("--no-persistent", help="end persistence")] = False,
                 sched_flags: Flags = None, tunnel: TunnelOpt = None, gue_port: GuePort = None,
                 ring_size: RingSize = None, expire_nodest: ExpireNodest = None, on_down: OnDownOpt = None,
                 sorry_server: SorryOpt = None,
                 no_sorry_server: Annotated[bool, typer.Option("--no-sorry-server", help="remove the sorry server",
                                                               rich_help_panel=_HEALTH)] = False,
                 quorum: QuorumOpt = None, hysteresis: HysteresisOpt = None) -> None:
    """Change a virtual service's fields given; the others and its backends stay (ipvsadm -E).

    Refused when someone else changed the configuration in between: xdplb service edit tcp 10.100.0.100:80 -s rr"""
    sid, _ = split_service(service)
    if no_persistent and (persistent is not None or netmask is not None):
        raise typer.BadParameter("--no-persistent, or --persistent and --netmask: not both")
    if no_sorry_server and sorry_server is not None:
        raise typer.BadParameter("--no-sorry-server, or --sorry-server: not both")
    body, version = read_service(ops, sid)
    if no_persistent:
        body["persistence"] = None
    if no_sorry_server:
        body["sorry_server"] = None
    _apply_options(body, scheduler=scheduler, method=method, ring_size=ring_size, expire_nodest=expire_nodest,
                   sched_flags=sched_flags, persistent=persistent, netmask=netmask, tunnel=tunnel, gue_port=gue_port)
    _health_options(body, on_down, sorry_server, quorum, hysteresis)
    write_service(ops, sid, body, version, f"service {sid} changed")


def read_service(ops: Ops, sid: str) -> tuple[dict[str, Any], int | None]:
    """A service as PUT takes it back, and the configuration's version it was read at."""
    current = ops.api.get(service_path(sid))
    return {k: v for k, v in current.data.items() if k != "id"}, current.version


def write_service(ops: Ops, sid: str, body: dict[str, Any], version: int | None, what: str) -> None:
    """Writes a service read with read_service back, refused if the configuration changed since."""
    report_change(ops, ops.api.call("PUT", service_path(sid), body=body, if_match=version), what)


def backend_of(body: dict[str, Any], sid: str, address: str) -> dict[str, Any]:
    """The backend `address` of a service's body, to change in place."""
    for backend in body["backends"]:
        if backend["address"] == address:
            return backend
    raise ApiError(404, [f"service {sid} has no backend {address}"])


def _apply_options(body: dict[str, Any], *, scheduler: Scheduler | None, method: Method | None,
                   ring_size: int | None, expire_nodest: bool | None, sched_flags: str | None,
                   persistent: int | None, netmask: str | None, tunnel: Encap | None, gue_port: int | None) -> None:
    """Sets the options given on a service's body (a new one, or the one read back)."""
    given = {"scheduler": scheduler, "method": method, "ring_size": ring_size, "expire_nodest": expire_nodest}
    body.update({k: str(v) if isinstance(v, StrEnum) else v for k, v in given.items() if v is not None})
    if sched_flags is not None:
        body["sched_flags"] = _flags(sched_flags)
    if persistent is not None or netmask is not None:
        body["persistence"] = _persistence(body.get("persistence"), persistent, netmask)
    if tunnel is not None or gue_port is not None:
        body["tunnel"] = _tunnel(body.get("tunnel"), tunnel, gue_port)


def _health_options(body: dict[str, Any], on_down: OnDown | None, sorry_server: str | None, quorum: int | None,
                    hysteresis: int | None) -> None:
    """Sets what the service does with its checks' verdicts; the quorum's other fields stay."""
    if on_down is not None:
        body["on_down"] = str(on_down)
    if sorry_server is not None:
        address, port = split_backend(sorry_server)
        body["sorry_server"] = {"address": address, **({"port": port} if port is not None else {})}
    given = {"weight": quorum, "hysteresis": hysteresis}
    if any(v is not None for v in given.values()):
        body["quorum"] = {**(body.get("quorum") or {}), **{k: v for k, v in given.items() if v is not None}}


def _persistence(current: dict[str, Any] | None, timeout: int | None, netmask: str | None) -> dict[str, Any]:
    if timeout is None and not current:
        raise typer.BadParameter("a netmask needs persistence: give --persistent too", param_hint="--netmask")
    persistence = dict(current or {})
    if timeout is not None:
        persistence["timeout"] = timeout
    if netmask is not None:
        persistence["netmask"] = int(netmask) if netmask.isdigit() else netmask  # 24, or 255.255.255.0
    return persistence


def _tunnel(current: dict[str, Any] | None, encap: Encap | None, gue_port: int | None) -> dict[str, Any]:
    return {**(current or {}), **({"encap": str(encap)} if encap else {}),
            **({"gue_port": gue_port} if gue_port is not None else {})}


@operator(service_app, "delete")
def service_delete(ops: Ops, service: ServiceWords) -> None:
    """Remove a virtual service and its backends (ipvsadm -D).

    xdplb service delete tcp 10.100.0.100:80"""
    sid, _ = split_service(service)
    report_change(ops, ops.api.call("DELETE", service_path(sid)), f"service {sid} deleted")


# ---- backends -------------------------------------------------------------------------------------

BackendWords = Annotated[list[str], typer.Argument(
    metavar="SERVICE ADDRESS", help="the service (tcp VIP:PORT, fwm MARK or an id) and the backend's address "
    "(ADDRESS or ADDRESS:PORT)", autocompletion=complete_service, show_default=False)]
WeightOpt = Annotated[int | None, typer.Option("--weight", "-w", help="0-65535; 0: no new connections",
                                               show_default=False)]
PortOpt = Annotated[int | None, typer.Option("--port", help="NAT only: the real server's port", show_default=False)]
Upper = Annotated[int | None, typer.Option("--u-threshold", "-x", help="no new connections from this many on",
                                           show_default=False)]
Lower = Annotated[int | None, typer.Option("--l-threshold", "-y", help="new connections again below this",
                                           show_default=False)]
Inhibit = Annotated[bool | None, typer.Option(
    "--inhibit-on-failure/--no-inhibit-on-failure", help="when its check finds it down: weight 0, established "
    "connections going on (else out of the tables, as the service's --on-down says)", show_default=False)]


def _backend_fields(weight: int | None, port: int | None, upper: int | None, lower: int | None,
                    tunnel: Encap | None, gue_port: int | None, inhibit: bool | None) -> dict[str, Any]:
    fields = {"weight": weight, "port": port, "upper_threshold": upper, "lower_threshold": lower}
    found: dict[str, Any] = {k: v for k, v in fields.items() if v is not None}
    if tunnel is not None or gue_port is not None:
        found["tunnel"] = _tunnel(None, tunnel, gue_port)
    if inhibit is not None:
        found["inhibit_on_failure"] = inhibit
    return found


def _target(words: list[str]) -> tuple[str, str, int | None]:
    sid, [address] = split_service(words, rest=1)
    return (sid, *split_backend(address))


@operator(backend_app, "add")
def backend_add(ops: Ops, words: BackendWords, weight: WeightOpt = None, port: PortOpt = None,
                upper: Upper = None, lower: Lower = None, tunnel: TunnelOpt = None, gue_port: GuePort = None,
                inhibit_on_failure: Inhibit = None) -> None:
    """Add a backend to a service (ipvsadm -a).

    xdplb backend add tcp 10.100.0.100:80 10.100.1.11 -w 3"""
    sid, address, addr_port = _target(words)
    body = {"address": address, **_backend_fields(weight, port if port is not None else addr_port, upper, lower,
                                                  tunnel, gue_port, inhibit_on_failure)}
    reply = ops.api.call("POST", service_path(sid, "backends"), body=body)
    report_change(ops, reply, f"backend {address} of {sid} added")


@operator(backend_app, "edit")
def backend_edit(ops: Ops, words: BackendWords, weight: WeightOpt = None, port: PortOpt = None,
                 upper: Upper = None, lower: Lower = None, tunnel: TunnelOpt = None, gue_port: GuePort = None,
                 inhibit_on_failure: Inhibit = None) -> None:
    """Change a backend's fields given; the others stay (ipvsadm -e).

    xdplb backend edit tcp 10.100.0.100:80 10.100.1.11 -w 5"""
    sid, address, addr_port = _target(words)
    patch = _backend_fields(weight, port if port is not None else addr_port, upper, lower, tunnel, gue_port,
                            inhibit_on_failure)
    if not patch:
        raise typer.BadParameter("nothing to change: give --weight, --port, -x, -y, --tunnel or "
                                 "--inhibit-on-failure")
    reply = ops.api.call("PATCH", service_path(sid, "backends", address), body=patch)
    report_change(ops, reply, f"backend {address} of {sid} changed")


@operator(backend_app, "drain")
def backend_drain(ops: Ops, words: BackendWords) -> None:
    """Drain a backend: weight 0, no new connections; established ones go on.

    xdplb backend drain tcp 10.100.0.100:80 10.100.1.11"""
    sid, address, _ = _target(words)
    reply = ops.api.call("POST", service_path(sid, "backends", address, "drain"))
    report_change(ops, reply, f"backend {address} of {sid} drained")


@operator(backend_app, "delete")
def backend_delete(ops: Ops, words: BackendWords) -> None:
    """Remove a backend from a service (ipvsadm -d).

    xdplb backend delete tcp 10.100.0.100:80 10.100.1.11"""
    sid, address, _ = _target(words)
    reply = ops.api.call("DELETE", service_path(sid, "backends", address))
    report_change(ops, reply, f"backend {address} of {sid} deleted")
