"""Translate keepalived's LVS configuration (keepalived.conf, as keepalived 2.2 reads it) into xdplb
services: each `virtual_server ADDRESS [PORT]`, and one service per (VIP, port) of the
`virtual_server_group` a `virtual_server group NAME` names, each with the same real servers, as
keepalived creates one IPVS service per group entry. keepalived_syntax reads the text into a tree,
keepalived_vs a virtual_server's statements into settings; here they become services. Its
vrrp_instance blocks become the `ha:` section of the daemon's configuration (Imported.ha), as
keepalived_vrrp decides; the services do not depend on them.

The import translates what keepalived would run, with its defaults: lvs_sched wlc, lvs_method NAT
(xdplb's data plane refuses NAT until it lands), protocol UDP, weight 1, persistence_timeout 360 s
when given without a value, with persistence_granularity alone, or for port 0. What xdplb cannot
take, decided once:
- A virtual_server that cannot be translated faithfully is skipped whole, with one line in
  `skipped` saying why, and the rest imports: a fwmark service (its (protocol, VIP, port) endpoints
  are in iptables/nft rules, not here: add it by hand with `fwmark` and `endpoints`), SCTP, a
  scheduler xdplb lacks (lblc, lblcr, dh, ovf, twos), a persistence_engine, real servers with
  different forwarding methods, GRE tunnels, one address as two NAT real servers, no real servers
  (keepalived ignores such a virtual server too).
- Health checks translate as keepalived_checks.py says (TCP_CHECK, HTTP_GET, SSL_GET, MISC_CHECK,
  UDP_CHECK; the others are left out). A check goes on its backend; when every backend of a service
  has the same one (one checker copied into each real_server, the usual keepalived template), it
  goes on the service once instead. inhibit_on_failure (of the real server, else of the virtual
  server) is the backend's. sorry_server is the service's sorry server (with its virtual server's
  method; another sorry_server_lvs_method, another address family or a real server's address leave
  it out with a line); quorum and hysteresis are the service's quorum, lowered as keepalived lowers
  them (a quorum above the real servers' total weight, a hysteresis not below the quorum);
  quorum_up/quorum_down are its hooks, split like misc_path (xdplb appends the service id).
- What leaves every flow where it would have gone is left out with a line in `skipped`: what a
  checker has that xdplb's check has not, alpha (xdplb starts backends up), omega, `ops`,
  sh-/mh-fallback, tunnel checksum options, a DR/TUN real server's port (keepalived resets it too), a
  real server of the other address family (keepalived skips it too), an unknown keyword (keepalived
  ignores it), every top-level block but the LVS and VRRP ones, and what uses `@` conditions, `$`
  parameters or `~SEQ`, which the import does not evaluate.
- A value keepalived would refuse is an error (ImportFormatError, every problem with its file and
  line, nothing imported): keepalived would log it and go on with a default, and an import must not
  guess what was meant. So are a bad address, port, weight or scheduler name, an undefined or
  duplicate group, a real server listed twice, two services on one endpoint, a syntax error.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pydantic import ValidationError

from xdplb.checks import HealthCheck, Quorum
from xdplb.imports import keepalived_vrrp
from xdplb.imports.keepalived_checks import UNKNOWN
from xdplb.imports.keepalived_syntax import Block, parse_blocks
from xdplb.imports.keepalived_vs import (
    DEFAULT_TIMEOUT,
    SCHEDULERS,
    Endpoint,
    LvsMethod,
    Mark,
    RealServer,
    VirtualServer,
    group_entry,
    read_virtual_server,
    unsupported,
)
from xdplb.imports.result import Imported, explain, finish
from xdplb.imports.values import Invalid, address, integer, port, prefix
from xdplb.model import Backend, IPAddress, Method, Persistence, Protocol, SchedFlag, Scheduler, Service, Tunnel

log = logging.getLogger(__name__)

_FWMARK = ("a firewall-mark service: its (protocol, VIP, port) endpoints are in iptables/nft rules, not in "
           "keepalived.conf; add it by hand with its fwmark and endpoints")
_TOP_NOTES = {  # top-level blocks left out, and why
    "global_defs": "global settings have no xdplb meaning (set its timeouts by hand for lvs_timeouts), but for the "
                   "VRRP instances' defaults (vrrp_version, vrrp_garp_master_delay, _repeat, _refresh, vrrp_min_garp)",
    "static_ipaddress": "the host's own addresses are not the balancer's configuration",
    "static_routes": "the host's own routes are not the balancer's configuration",
    "static_rules": "the host's own rules are not the balancer's configuration",
    "SSL": "xdplb's https checks send no client certificate, and verify no server certificate (nor does "
           "keepalived)",
    "bfd_instance": "xdplb has no BFD",
}


def parse(text: str, source: str = "keepalived.conf", base_dir: Path | None = None) -> Imported:
    """The services and VRRP instances of a keepalived.conf; `base_dir` resolves its `include`s (None:
    they are skipped, with a line in `skipped`). ImportFormatError names every file line that cannot
    be used."""
    notes: list[str] = []
    blocks = parse_blocks(text, source, base_dir, notes)
    translator = _Translator(notes)
    translator.run(blocks)
    ha = keepalived_vrrp.translate(blocks, translator.notes, translator.errors)
    return finish(source, translator.services, translator.wheres, translator.notes, translator.errors,
                  _files(source, blocks), ha)


def _files(source: str, blocks: list[Block]) -> list[str]:
    """The files the tree came from, in reading order."""
    files = {source: None}
    stack = list(reversed(blocks))
    while stack:
        block = stack.pop()
        files.setdefault(block.source)
        stack.extend(reversed(block.children or []))
    return list(files)


class _Translator:
    def __init__(self, notes: list[str]) -> None:
        self.notes = notes
        self.errors: list[str] = []
        self.services: list[Service] = []
        self.wheres: list[str] = []
        self.groups: dict[str, tuple[Block, list[Endpoint | Mark]]] = {}

    def run(self, blocks: list[Block]) -> None:
        for block in blocks:  # a group may be defined after the virtual_server naming it
            if block.keyword == "virtual_server_group" and not unsupported(block):
                self._group(block)
        for block in blocks:
            reason = unsupported(block)
            if reason:
                self.notes.append(f"{block.where}: {block.text} not translated: {reason}")
            elif block.keyword == "virtual_server":
                try:
                    self._virtual_server(block)
                except Invalid as e:
                    self.errors.append(f"{block.where}: {e}")
            elif block.keyword not in ("virtual_server_group", *keepalived_vrrp.BLOCKS):
                self.notes.append(f"{block.where}: {block.keyword} not translated: "
                                  f"{_TOP_NOTES.get(block.keyword, UNKNOWN)}")

    def _group(self, block: Block) -> None:
        name = block.args[0] if len(block.args) == 1 else ""
        if not name or name in self.groups:
            first = f" (first at {self.groups[name][0].where})" if name else ""
            self.errors.append(f"{block.where}: " + (f"virtual_server_group {name} is defined twice{first}" if name
                                                     else "virtual_server_group takes one name"))
            return
        entries: list[Endpoint | Mark] = []
        self.groups[name] = (block, entries)
        for entry in block.children or []:
            reason = unsupported(entry)
            try:
                if reason:
                    self.notes.append(f"{entry.where}: {entry.text} not translated: {reason}")
                else:
                    entries.extend(group_entry(entry))
            except Invalid as e:
                self.errors.append(f"{entry.where}: {e}")

    def _virtual_server(self, block: Block) -> None:
        vs = read_virtual_server(block, self.errors)
        endpoints = self._endpoints(block, vs)
        reason = vs.skip[0] if vs.skip else _untranslatable(vs)
        if reason is not None:
            self.notes.append(f"{block.where}: {block.text} not imported: {reason}")
            return
        quorum = _quorum(vs)
        built = [(self._service(vs, ep, quorum), ep) for ep in endpoints]
        self.notes.extend(vs.notes)
        for service, ep in built:
            if service is not None:
                self.services.append(service)
                self.wheres.append(ep.where)

    def _endpoints(self, block: Block, vs: VirtualServer) -> list[Endpoint]:
        args = block.args
        if not args:
            raise Invalid("virtual_server needs an address (and port), fwmark N or group NAME")
        if args[0] == "fwmark":
            integer(args[1] if len(args) == 2 else "", 1, 2**32 - 1, "fwmark")
            vs.skip.append(_FWMARK)
            return []
        if args[0] == "group":
            return self._group_endpoints(block, vs)
        if len(args) > 2:
            raise Invalid(f"{block.text}: an address and a port only")
        vport = port(args[1], "virtual server port") if len(args) == 2 else None
        return [Endpoint(address(args[0], "virtual server address"), vport, block.where)]

    def _group_endpoints(self, block: Block, vs: VirtualServer) -> list[Endpoint]:
        if len(block.args) != 2:
            raise Invalid("virtual_server group takes one group name")
        name = block.args[1]
        if name not in self.groups:
            raise Invalid(f"virtual_server_group {name} is not defined")
        out = []
        for entry in self.groups[name][1]:
            if isinstance(entry, Mark):
                vs.notes.append(f"{entry.where}: fwmark {entry.fwmark} of group {name} not translated: {_FWMARK}")
            else:
                out.append(Endpoint(entry.vip, entry.port, f"{block.where} (group {name}, {entry.where})"))
        return out

    def _service(self, vs: VirtualServer, ep: Endpoint, quorum: Quorum | None) -> Service | None:
        """The service at one endpoint; None when no real server of its family is left, or when the
        model refuses it (the error is recorded)."""
        vport = 0 if ep.port is None else ep.port
        try:
            persistence = _persistence(vs, ep, vport)
        except Invalid as e:
            self.errors.append(f"{vs.granularity.where if vs.granularity else ep.where}: {e}")
            return None
        reals = [r for r in vs.reals if _same_family(vs, r, ep)]
        if not reals:
            vs.notes.append(f"{ep.where}: {_host(ep.vip)}:{vport} not imported: no real server of its family")
            return None
        methods = [vs.method_of(r) for r in reals]
        tunnel = (vs.method or methods[0]).xdplb_tunnel() if methods[0].method == Method.TUN else Tunnel()
        built = [self._backend(vs, r, m, vport, tunnel) for r, m in zip(reals, methods, strict=True)]
        backends, check = _shared_check([b for b in built if b is not None])
        try:
            return Service(protocol=Protocol(vs.protocol or "udp"), vip=ep.vip, port=vport,
                           scheduler=Scheduler(vs.scheduler), method=methods[0].method,
                           sched_flags=_sched_flags(vs), tunnel=tunnel, persistence=persistence,
                           backends=tuple(backends), check=check, quorum=quorum or Quorum(),
                           sorry_server=self._sorry_server(vs, ep, methods[0].method, vport, tunnel))
        except ValidationError as e:
            self.errors.append(f"{ep.where}: {explain(e)}")
            return None

    def _backend(self, vs: VirtualServer, real: RealServer, method: LvsMethod, vport: int,
                 tunnel: Tunnel) -> Backend | None:
        if method.method != Method.NAT and real.port not in (None, vport):
            vs.notes.append(f"{real.block.where}: port {real.port} of {real.role} {real.address} not translated: "
                            f"{method.method.upper()} cannot change the port (LVS uses {vport})")
        own = method.xdplb_tunnel() if method.method == Method.TUN else None
        try:
            return Backend(address=real.address, weight=vs.weight if real.weight is None else real.weight,
                           port=real.port if method.method == Method.NAT and real.port != vport else None,
                           upper_threshold=real.upper, lower_threshold=real.lower,
                           tunnel=own if own is not None and own != tunnel else None, check=real.check,
                           inhibit_on_failure=vs.inhibit if real.inhibit is None else real.inhibit)
        except ValidationError as e:
            self.errors.append(f"{real.block.where}: {explain(e)}")
            return None

    def _sorry_server(self, vs: VirtualServer, ep: Endpoint, method: Method, vport: int,
                      tunnel: Tunnel) -> Backend | None:
        """The sorry server as a backend of the service's method; None (with a line) when it cannot be one."""
        sorry = vs.sorry
        if sorry is None:
            return None
        own = vs.sorry_method or vs.method or LvsMethod(Method.NAT)
        reason = None
        if own.method != method:
            reason = (f"its method {own.method.upper()} is not its real servers' {method.upper()}: xdplb has one "
                      "method per service")
        elif sorry.address.version != ep.vip.version and method != Method.TUN:
            reason = f"IPv{sorry.address.version} behind an IPv{ep.vip.version} VIP without a tunnel"
        elif any(r.address == sorry.address for r in vs.reals):
            reason = "it is also a real server; xdplb's sorry server is another address"
        if reason is not None:
            vs.notes.append(f"{sorry.block.where}: sorry_server {sorry.address} not translated for "
                            f"{_host(ep.vip)}: {reason}")
            return None
        return self._backend(vs, sorry, own, vport, tunnel)


def _untranslatable(vs: VirtualServer) -> str | None:
    """Why the virtual server cannot be translated faithfully, or None (and its notes are filled)."""
    if vs.protocol == "sctp":
        return "SCTP: xdplb balances TCP and UDP"
    if vs.scheduler not in SCHEDULERS:
        return f"an LVS scheduler xdplb does not have ({vs.scheduler}); it has {', '.join(Scheduler)}"
    if not vs.reals:
        return "it has no real servers (keepalived ignores it too)"
    methods = [vs.method_of(r) for r in vs.reals]
    if len({m.method for m in methods}) > 1:
        lines = ", ".join(f"{m.method.upper()} at {r.block.where}" for r, m in zip(vs.reals, methods, strict=True))
        return f"its real servers use different forwarding methods ({lines}): xdplb has one method per service"
    if any(m.tunnel == "gre" for m in methods if m.method == Method.TUN):
        return "GRE tunnels: xdplb's TUN carries IPIP or GUE"
    reason = _listed_twice(vs, methods[0].method)
    if reason is None:
        _defaults(vs, methods)
    return reason


def _listed_twice(vs: VirtualServer, method: Method) -> str | None:
    """A real server listed twice is an error; one address on two NAT ports cannot be translated."""
    seen: dict[IPAddress, RealServer] = {}
    for real in vs.reals:
        first = seen.setdefault(real.address, real)
        if first is real:
            continue
        if method != Method.NAT or first.port == real.port:
            raise Invalid(f"real server {real.address} is listed twice ({first.block.where}, {real.block.where})")
        return f"real server {real.address} is listed on two ports: xdplb's backends are distinct addresses"
    return None


def _defaults(vs: VirtualServer, methods: list[LvsMethod]) -> None:
    """Notes on what keepalived fills in or reads its own way, which the import does too."""
    where = vs.block.where
    if vs.protocol is None:
        vs.notes.append(f"{where}: no protocol: UDP, keepalived's default")
    if vs.method is None and any(r.method is None for r in vs.reals):
        vs.notes.append(f"{where}: no lvs_method: NAT, keepalived's default")
    hashing = vs.scheduler in ("sh", "mh")
    for flag, statement in vs.raw_flags.items():
        if flag == "flag-1" and hashing:
            vs.note(statement, f"it is {vs.scheduler}-fallback, and xdplb's {vs.scheduler} has no fallback")
        elif flag != "flag-2" or not hashing:
            vs.note(statement, f"no meaning for lvs_sched {vs.scheduler}")
    for method in methods:
        if method.csum in ("csum", "remcsum") and method.block:
            vs.notes.append(f"{method.block.where}: tunnel option {method.csum} not translated: xdplb chooses "
                            "the tunnel's checksum itself")


def _shared_check(backends: list[Backend]) -> tuple[list[Backend], HealthCheck | None]:
    """One check every backend has goes on the service instead (the rule of the module's text)."""
    first = backends[0].check if backends else None
    if first is None or any(b.check != first for b in backends):
        return backends, None
    return [b.model_copy(update={"check": None}) for b in backends], first


def _quorum(vs: VirtualServer) -> Quorum | None:
    """quorum, hysteresis and their hooks, lowered as keepalived lowers them, with a line saying so;
    None when the virtual server sets none of them."""
    if not (vs.quorum or vs.hysteresis or vs.quorum_up or vs.quorum_down):
        return None
    weight = int(vs.quorum.args[0]) if vs.quorum else 1
    hysteresis = int(vs.hysteresis.args[0]) if vs.hysteresis else 0
    total = sum(vs.weight if r.weight is None else r.weight for r in vs.reals)
    if vs.quorum and 1 <= total < weight:
        vs.notes.append(f"{vs.quorum.where}: quorum {weight} is above the real servers' total weight {total}: "
                        f"keepalived lowers it to {total}, and so does the import")
        weight = total
    if vs.hysteresis and hysteresis >= weight:
        vs.notes.append(f"{vs.hysteresis.where}: hysteresis {hysteresis} is not below the quorum {weight}: "
                        f"keepalived lowers it to {weight - 1}, and so does the import")
        hysteresis = weight - 1
    return Quorum(weight=weight, hysteresis=hysteresis, on_up=vs.quorum_up, on_down=vs.quorum_down)


def _persistence(vs: VirtualServer, ep: Endpoint, vport: int) -> Persistence | None:
    timeout = vs.timeout
    if timeout is None and vs.granularity is not None:
        timeout = DEFAULT_TIMEOUT  # keepalived: a granularity makes the service persistent
    if timeout is None and vport == 0:
        vs.notes.append(f"{ep.where}: port 0 (every port) is persistent: keepalived sets persistence_timeout "
                        f"{DEFAULT_TIMEOUT} for it")
        timeout = DEFAULT_TIMEOUT
    if timeout is None:
        return None
    netmask = prefix(vs.granularity.args[0], ep.vip.version) if vs.granularity else None
    return Persistence(timeout=timeout, netmask=netmask)


def _sched_flags(vs: VirtualServer) -> frozenset[SchedFlag]:
    """sh-port/mh-port, and flag-2, which sh and mh read as their -port flag."""
    flags = set(vs.port_flags)
    if "flag-2" in vs.raw_flags and vs.scheduler in ("sh", "mh"):
        flags.add(SchedFlag(f"{vs.scheduler}-port"))
    return frozenset(flags)


def _same_family(vs: VirtualServer, real: RealServer, ep: Endpoint) -> bool:
    """Only a tunnel crosses address families; keepalived skips another real server, and so does the import."""
    if real.address.version == ep.vip.version or vs.method_of(real).method == Method.TUN:
        return True
    vs.notes.append(f"{real.block.where}: real server {real.address} not translated for {_host(ep.vip)}: "
                    f"IPv{real.address.version} behind an IPv{ep.vip.version} VIP without a tunnel "
                    "(keepalived skips it too)")
    return False


def _host(vip: IPAddress) -> str:
    return f"[{vip}]" if vip.version == 6 else str(vip)
