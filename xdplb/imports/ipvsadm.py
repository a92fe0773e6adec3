"""Translate an LVS table as `ipvsadm-save -n` (`ipvsadm -Sn`) prints it into xdplb services.

ipvsadm_rules reads the lines (the options ipvsadm takes, checked as ipvsadm checks them); here
what they define becomes services.

What xdplb cannot take, decided once:
- A service that cannot be translated faithfully is skipped whole, with one line in `skipped`
  saying why, and the rest imports: a firewall-mark service (the (protocol, VIP, port) endpoints
  that iptables/nft mark are not in the dump: add it by hand with its `fwmark` and `endpoints`),
  SCTP, a scheduler xdplb lacks (lblc, lblcr, dh, ovf, twos), a persistence engine (`--pe sip`),
  real servers with different forwarding methods (LVS's method is per real server, xdplb's per
  service), GRE tunnels, one address as two real servers on different ports.
- What leaves every flow where it would have gone is left out with a line in `skipped`: `-o`
  (one-packet scheduling), sh-fallback/mh-fallback, tunnel checksum flags, a DR/TUN real server's
  port (LVS ignores it too), `--set` and `--start-daemon` lines.
- What ipvsadm itself refuses is an error (ImportFormatError, every problem with its line, nothing
  imported): an unknown option, a bad address, port, weight, threshold or timeout, a real server
  before its service, a service or a real server defined twice, two services on one endpoint.
NAT becomes method nat (the data plane refuses it until NAT lands).
"""

from __future__ import annotations

import logging

from pydantic import ValidationError

from xdplb.imports.ipvsadm_rules import Dest, Table, VirtualService
from xdplb.imports.result import Imported, explain, finish
from xdplb.model import Backend, Encap, Method, Persistence, Protocol, SchedFlag, Scheduler, Service, Tunnel

log = logging.getLogger(__name__)

_SCHEDULERS = {s.value for s in Scheduler}
_LVS_ONLY = {"lblc", "lblcr", "dh", "ovf", "twos"}  # LVS schedulers xdplb does not have


def parse(text: str, source: str = "ipvsadm-save") -> Imported:
    """The services of an `ipvsadm-save -n` dump; ImportFormatError names every line that cannot be used."""
    table = Table(source)
    table.read(text)
    services, wheres = [], []
    for svc in table.services.values():
        service = _translate(svc, table)
        if service is not None:
            services.append(service)
            wheres.append(table.where(svc.line))
    return finish(source, services, wheres, table.notes, table.errors)


def _translate(svc: VirtualService, table: Table) -> Service | None:
    """The service, or None when it is skipped whole (its reason goes to table.notes) or refused."""
    reason = _untranslatable(svc)
    if reason is not None:
        table.note(svc.line, f"{svc.name} not imported: {reason}")
        return None
    notes: list[str] = []  # said only for a service that imports
    service = _build(svc, notes, table)
    table.notes.extend(notes)
    return service


def _untranslatable(svc: VirtualService) -> str | None:
    """Why the service cannot be translated faithfully, or None."""
    settings = svc.settings
    if svc.fwmark:
        return ("a firewall-mark service: the (protocol, VIP, port) endpoints iptables/nft mark are not in "
                "ipvsadm-save's output; add it by hand with its fwmark and endpoints")
    if svc.key[0] == "sctp":
        return "SCTP: xdplb balances TCP and UDP"
    if settings.scheduler not in _SCHEDULERS:
        known = "an LVS scheduler" if settings.scheduler in _LVS_ONLY else "a scheduler"
        return f"{known} xdplb does not have ({settings.scheduler}); it has {', '.join(Scheduler)}"
    if settings.engine:
        return f"persistence engine {settings.engine}: xdplb's persistence is by client address only"
    methods = {d.method for d in svc.dests.values()}
    if len(methods) > 1:
        lines = ", ".join(f"{d.method.upper()} at line {d.line}" for d in svc.dests.values())
        return f"its real servers use different forwarding methods ({lines}): xdplb has one method per service"
    if any(d.tun_type == "gre" for d in svc.dests.values() if d.method == Method.TUN):
        return "GRE tunnels: xdplb's TUN carries IPIP or GUE"
    addresses = [d.address for d in svc.dests.values()]
    twice = next((a for a in addresses if addresses.count(a) > 1), None)
    if twice is not None:
        return f"real server {twice} is listed on two ports: xdplb's backends are distinct addresses"
    return None


def _build(svc: VirtualService, notes: list[str], table: Table) -> Service | None:
    """The service; None when the model refuses it (the error is recorded)."""
    settings = svc.settings
    proto, vip, vport = svc.key
    dests = list(svc.dests.values())
    method = dests[0].method if dests else Method.DR  # a service without real servers: ipvsadm's -g
    tunnel = _tunnel(dests[0]) if method == Method.TUN else Tunnel()
    backends = []
    for dest in dests:
        backend = _backend(dest, vport, tunnel, notes, table)
        if backend is not None:
            backends.append(backend)
    fields = {"protocol": Protocol(proto), "vip": vip, "port": vport, "scheduler": Scheduler(settings.scheduler),
              "method": method, "sched_flags": _sched_flags(svc, notes, table), "tunnel": tunnel,
              "persistence": _persistence(svc, notes, table), "backends": tuple(backends)}
    if settings.ops:
        table.note(svc.line, "-o not translated: one-packet scheduling; xdplb schedules UDP per flow", notes)
    try:
        return Service(**fields)
    except ValidationError as e:
        table.error(svc.line, explain(e))
        return None


def _backend(dest: Dest, vport: int, tunnel: Tunnel, notes: list[str],
             table: Table) -> Backend | None:
    if dest.method != Method.NAT and dest.port not in (None, vport):
        table.note(dest.line, f"port {dest.port} of real server {dest.address} not translated: "
                   f"{dest.method.upper()} cannot change the port (LVS uses {vport})", notes)
    own = _tunnel(dest) if dest.method == Method.TUN else None
    if dest.csum and dest.csum != "tun-nocsum":
        table.note(dest.line, f"--{dest.csum} not translated: xdplb chooses the tunnel's checksum itself", notes)
    try:
        return Backend(address=dest.address, weight=dest.weight,
                       port=dest.port if dest.method == Method.NAT and dest.port != vport else None,
                       upper_threshold=dest.upper, lower_threshold=dest.lower,
                       tunnel=own if own is not None and own != tunnel else None)
    except ValidationError as e:
        table.error(dest.line, explain(e))
        return None


def _tunnel(dest: Dest) -> Tunnel:
    if dest.tun_type == "gue":
        return Tunnel(encap=Encap.GUE, gue_port=dest.tun_port)
    return Tunnel()


def _persistence(svc: VirtualService, notes: list[str], table: Table) -> Persistence | None:
    settings = svc.settings
    if settings.timeout is None:
        if settings.netmask_given:
            table.note(svc.line, "-M not translated: a netmask without -p has no effect", notes)
        return None
    return Persistence(timeout=settings.timeout, netmask=settings.netmask)


def _sched_flags(svc: VirtualService, notes: list[str], table: Table) -> frozenset[SchedFlag]:
    """-b as the scheduler reads it: sh and mh name their flag-1 fallback and flag-2 port."""
    scheduler = svc.settings.scheduler
    flags = set()
    for flag in svc.settings.flags:
        name = {"flag-1": f"{scheduler}-fallback", "flag-2": f"{scheduler}-port"}.get(flag, flag)
        if name in {f.value for f in SchedFlag}:
            flags.add(SchedFlag(name))
        elif name.endswith("-fallback") and scheduler in ("sh", "mh"):
            table.note(svc.line, f"{name} not translated: xdplb's {scheduler} has no fallback; a backend of "
                       "weight 0 or without a next hop takes no new flows", notes)
        else:
            table.note(svc.line, f"scheduler flag {flag} not translated: no meaning for {scheduler}", notes)
    return frozenset(flags)


