"""keepalived's LVS statements read into settings: a virtual_server's (its scheduler, method,
persistence, real servers with their health checks, sorry server, quorum) and a
virtual_server_group's entries, every value checked as keepalived checks it. keepalived.py turns
them into services; what a statement means for xdplb (translated, left out with a note, or refused)
is decided here, keyword by keyword, and for the checkers in keepalived_checks.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from xdplb.checks import HealthCheck
from xdplb.imports.keepalived_checks import (
    CHECKERS,
    TIMING,
    UNKNOWN,
    Checker,
    Timing,
    backend_check,
    boolean,
    notify,
    read_checker,
    read_timing,
    script,
)
from xdplb.imports.keepalived_syntax import Block
from xdplb.imports.values import COUNT_MAX, Invalid, address, address_range, integer, port
from xdplb.model import Encap, IPAddress, Method, SchedFlag, Scheduler, Tunnel

DEFAULT_TIMEOUT = 360  # keepalived's IPVS_SVC_PERSISTENT_TIMEOUT
MAX_TIMEOUT = 31 * 24 * 3600  # keepalived's LVS_MAX_TIMEOUT
RANGE_LIMIT = 4096  # VIPs one group entry may expand to
SCHEDULERS = {s.value for s in Scheduler}
LVS_ONLY = {"lblc", "lblcr", "dh", "ovf", "twos"}  # LVS schedulers xdplb does not have
_METHODS = {"NAT": Method.NAT, "DR": Method.DR, "TUN": Method.TUN}

VRRP = "xdplb checks on the backup director too: a failover finds every health state known"
_NOTICE = "xdplb sends no mail or SNMP"
_VS_NOTES = {  # virtual_server keywords left out, and why
    "omega": "xdplb runs no quorum or notify hooks when it stops (the balancer goes on forwarding)",
    "sorry_server_inhibit": "xdplb takes the sorry server out of the tables when the quorum is back",
    "ha_suspend": VRRP, "smtp_alert": _NOTICE, "snmp_name": _NOTICE,
    "ops": "one-packet scheduling; xdplb schedules UDP per flow", "hashed": "it has no effect",
    "ip_family": "only a fwmark service needs it",
}
_RS_NOTES = {"smtp_alert": _NOTICE, "snmp_name": _NOTICE}  # real_server keywords left out, and why


@dataclass
class LvsMethod:
    """lvs_method's words: the method and, for TUN, the tunnel."""

    method: Method
    block: Block | None = None  # where it is given; None: keepalived's default
    tunnel: str = "ipip"  # ipip, gue or gre
    gue_port: int | None = None
    csum: str | None = None

    def xdplb_tunnel(self) -> Tunnel:
        return Tunnel(encap=Encap.GUE, gue_port=self.gue_port) if self.tunnel == "gue" else Tunnel()


@dataclass
class RealServer:
    block: Block
    address: IPAddress
    port: int | None
    weight: int | None = None  # None: the virtual server's weight
    method: LvsMethod | None = None  # None: the virtual server's
    upper: int = 0
    lower: int = 0
    inhibit: bool | None = None  # inhibit_on_failure; None: the virtual server's
    timing: Timing = field(default_factory=Timing)
    checkers: list[Checker] = field(default_factory=list)
    notify_up: Block | None = None
    notify_down: Block | None = None
    check: HealthCheck | None = None  # what its checkers translate to, once the virtual server is read
    role: str = "real server"  # or "sorry server", for messages


@dataclass
class VirtualServer:
    """A virtual_server's settings, read once for every VIP it stands for."""

    block: Block
    scheduler: str = "wlc"  # keepalived's default
    method: LvsMethod | None = None
    protocol: str | None = None
    timeout: int | None = None
    granularity: Block | None = None
    port_flags: set[SchedFlag] = field(default_factory=set)
    raw_flags: dict[str, Block] = field(default_factory=dict)  # flag-1..3: their meaning is the scheduler's
    weight: int = 1  # the real servers' default
    reals: list[RealServer] = field(default_factory=list)
    timing: Timing = field(default_factory=Timing)  # the checkers' defaults
    inhibit: bool = False  # the real servers' inhibit_on_failure
    sorry: RealServer | None = None
    sorry_method: LvsMethod | None = None  # None: the virtual server's
    quorum: Block | None = None
    hysteresis: Block | None = None
    quorum_up: list[str] | None = None
    quorum_down: list[str] | None = None
    skip: list[str] = field(default_factory=list)  # why it cannot be translated
    notes: list[str] = field(default_factory=list)  # said when it imports

    def note(self, block: Block, reason: str) -> None:
        self.notes.append(f"{block.where}: {block.keyword} not translated: {reason}")

    def method_of(self, real: RealServer) -> LvsMethod:
        return real.method or self.method or LvsMethod(Method.NAT)  # keepalived's default: NAT


@dataclass(frozen=True)
class Endpoint:
    """A VIP and port a virtual_server stands for; `where` names its line(s)."""

    vip: IPAddress
    port: int | None
    where: str


@dataclass(frozen=True)
class Mark:
    """A group's fwmark entry."""

    fwmark: int
    where: str


def unsupported(block: Block) -> str | None:
    """Why a statement is not read at all: keepalived syntax the import does not evaluate."""
    if block.keyword.startswith("@"):
        return f"conditional configuration ({block.keyword}) is not evaluated"
    if block.keyword.startswith("$"):
        return "parameter definitions are not evaluated"
    if block.keyword.startswith("~SEQ"):
        return "~SEQ line replication is not evaluated"
    if any("$" in word for word in block.args):
        return "it uses a parameter ($NAME), and parameters are not evaluated"
    return None


def read_virtual_server(block: Block, errors: list[str]) -> VirtualServer:
    """The virtual_server's settings; a refused value goes to `errors`, named by its line."""
    vs = VirtualServer(block)
    for statement in block.children or []:
        reason = unsupported(statement)
        if reason:
            vs.notes.append(f"{statement.where}: {statement.text} not translated: {reason}")
            continue
        handler = _VS_KEYWORDS.get(statement.keyword)
        try:
            if handler:
                handler(vs, statement)
            elif statement.keyword == "real_server":
                vs.reals.append(_real_server(statement, vs, errors))
            elif statement.keyword in TIMING:
                read_timing(vs.timing, statement, vs.notes)
            else:
                vs.note(statement, _VS_NOTES.get(statement.keyword, UNKNOWN))
        except Invalid as e:
            errors.append(f"{statement.where}: {e}")
    for real in vs.reals:
        _resolve_check(vs, real, errors)
    return vs


def _resolve_check(vs: VirtualServer, real: RealServer, errors: list[str]) -> None:
    """The real server's check, once every default of its virtual server is known (keepalived
    resolves them after reading the whole block too)."""
    hooks = [b for b in (real.notify_up, real.notify_down) if b is not None]
    if not any(c.skip is None for c in real.checkers):
        real.check = backend_check(real.checkers, [], {}, vs.notes, errors)  # says why each is left out
        for hook in hooks:
            vs.note(hook, "the real server has no check xdplb runs")
        return
    extra = {"notify": notify(real.notify_up, real.notify_down, vs.notes, errors)}
    real.check = backend_check(real.checkers, [real.timing, vs.timing], extra, vs.notes, errors)


def group_entry(entry: Block) -> list[Endpoint | Mark]:
    """A virtual_server_group line: ADDRESS-or-RANGE [PORT], or fwmark N [inet|inet6]."""
    if entry.keyword == "fwmark":
        if not 1 <= len(entry.args) <= 2 or entry.args[1:] not in ([], ["inet"], ["inet6"]):
            raise Invalid("fwmark takes a number and optionally inet or inet6")
        return [Mark(integer(entry.args[0], 1, 2**32 - 1, "fwmark"), entry.where)]
    if entry.children is not None or len(entry.args) > 1:
        raise Invalid(f"{entry.text}: a group entry is an address or range and a port")
    vport = port(entry.args[0], "port") if entry.args else None
    return [Endpoint(vip, vport, entry.where) for vip in address_range(entry.keyword, RANGE_LIMIT)]


def _real_server(block: Block, vs: VirtualServer, errors: list[str]) -> RealServer:
    if not 1 <= len(block.args) <= 2:
        raise Invalid("real_server takes an address and a port")
    real = RealServer(block, address(block.args[0], "real server address"),
                      port(block.args[1], "real server port") if len(block.args) == 2 else None)
    for statement in block.children or []:
        reason = unsupported(statement)
        try:
            if reason:
                vs.notes.append(f"{statement.where}: {statement.text} not translated: {reason}")
            elif statement.keyword in CHECKERS:
                real.checkers.append(read_checker(statement, vs.notes, errors, unsupported))
            else:
                _real_statement(vs, real, statement)
        except Invalid as e:
            errors.append(f"{statement.where}: {e}")
    return real


def _real_statement(vs: VirtualServer, real: RealServer, statement: Block) -> None:
    keyword = statement.keyword
    if keyword == "weight":
        real.weight = integer(_one(statement), 0, 65535, "weight")
    elif keyword == "lvs_method":
        real.method = lvs_method(statement)
    elif keyword == "uthreshold":
        real.upper = integer(_one(statement), 0, COUNT_MAX, keyword)
    elif keyword == "lthreshold":
        real.lower = integer(_one(statement), 0, COUNT_MAX, keyword)
    elif keyword == "inhibit_on_failure":
        real.inhibit = boolean(statement)
    elif keyword in ("notify_up", "notify_down"):
        setattr(real, keyword, statement)
    elif keyword in TIMING:
        read_timing(real.timing, statement, vs.notes)
    else:
        vs.note(statement, _RS_NOTES.get(keyword, UNKNOWN))


def lvs_method(statement: Block) -> LvsMethod:
    """lvs_method NAT|DR|TUN [type ipip|gue port N|gre] [nocsum|csum|remcsum], checked as keepalived does."""
    if not statement.args or statement.args[0] not in _METHODS:
        raise Invalid(f"{statement.text}: not NAT, DR or TUN")
    method = LvsMethod(_METHODS[statement.args[0]], statement)
    words = iter(statement.args[1:])
    for word in words:
        if word == "type":
            method.tunnel = next(words, "")
            if method.tunnel not in ("ipip", "gue", "gre"):
                raise Invalid(f"tunnel type {method.tunnel!r}: not ipip, gue or gre")
        elif word == "port":
            method.gue_port = integer(next(words, ""), 1, 65535, "tunnel port")
        elif word in ("nocsum", "csum", "remcsum"):
            method.csum = word
        else:
            raise Invalid(f"{word!r} is not a tunnel option")
    if (method.tunnel == "gue") != (method.gue_port is not None):
        raise Invalid("a gue tunnel needs a port, and only a gue tunnel takes one")
    if (method.tunnel == "ipip" and method.csum not in (None, "nocsum")) or \
            (method.tunnel == "gre" and method.csum == "remcsum"):
        raise Invalid(f"a {method.tunnel} tunnel does not take {method.csum}")
    return method


def _one(statement: Block) -> str:
    if len(statement.args) != 1:
        raise Invalid(f"{statement.keyword} takes one value")
    return statement.args[0]


def _scheduler(vs: VirtualServer, statement: Block) -> None:
    name = _one(statement)
    if name not in SCHEDULERS | LVS_ONLY:
        raise Invalid(f"{statement.keyword} {name}: not an LVS scheduler")
    vs.scheduler = name


def _method(vs: VirtualServer, statement: Block) -> None:
    vs.method = lvs_method(statement)


def _protocol(vs: VirtualServer, statement: Block) -> None:
    name = _one(statement).lower()  # keepalived compares without case
    if name not in ("tcp", "udp", "sctp"):
        raise Invalid(f"protocol {statement.args[0]}: not TCP, UDP or SCTP")
    vs.protocol = name


def _timeout(vs: VirtualServer, statement: Block) -> None:
    if not statement.args:
        vs.timeout = DEFAULT_TIMEOUT
        return
    value = integer(_one(statement), 0, MAX_TIMEOUT, "persistence_timeout")
    vs.timeout = value or None  # 0: not persistent (keepalived 1 says so; keepalived 2 ignores 0)


def _granularity(vs: VirtualServer, statement: Block) -> None:
    _one(statement)  # read with the VIP's family, by the translation
    vs.granularity = statement


def _engine(vs: VirtualServer, statement: Block) -> None:
    vs.skip.append(f"persistence engine {' '.join(statement.args)}: xdplb's persistence is by client address only")


def _weight(vs: VirtualServer, statement: Block) -> None:
    vs.weight = integer(_one(statement), 1, 65535, "weight")


def _scheduler_flag(vs: VirtualServer, statement: Block) -> None:
    """sh-port, mh-port, *-fallback: keepalived takes one only after its scheduler (lvs_sched first)."""
    flag = statement.keyword
    if flag[:2] != vs.scheduler:
        vs.note(statement, f"keepalived ignores it: it applies to lvs_sched {flag[:2]}, given before it")
    elif flag.endswith("-port"):
        vs.port_flags.add(SchedFlag(flag))
    else:
        vs.note(statement, f"xdplb's {vs.scheduler} has no fallback; a backend of weight 0 or without a "
                           "next hop takes no new flows")


def _raw_flag(vs: VirtualServer, statement: Block) -> None:
    vs.raw_flags[statement.keyword] = statement


def _inhibit(vs: VirtualServer, statement: Block) -> None:
    vs.inhibit = boolean(statement)


def _sorry_server(vs: VirtualServer, statement: Block) -> None:
    """sorry_server ADDRESS [PORT]: a real server of its own, weight 1, never checked."""
    if not 1 <= len(statement.args) <= 2:
        raise Invalid("sorry_server takes an address and a port")
    vs.sorry = RealServer(statement, address(statement.args[0], "sorry server address"),
                          port(statement.args[1], "sorry server port") if len(statement.args) == 2 else None,
                          weight=1, inhibit=False, role="sorry server")


def _sorry_method(vs: VirtualServer, statement: Block) -> None:
    vs.sorry_method = lvs_method(statement)


def _quorum(vs: VirtualServer, statement: Block) -> None:
    low = 1 if statement.keyword == "quorum" else 0
    integer(_one(statement), low, COUNT_MAX, statement.keyword)
    setattr(vs, statement.keyword, statement)  # read as a number, checked against the weights, by the translation


def _quorum_hook(vs: VirtualServer, statement: Block) -> None:
    setattr(vs, statement.keyword, script(statement, vs.notes))


_VS_KEYWORDS: dict[str, Callable[[VirtualServer, Block], None]] = {
    "lb_algo": _scheduler, "lvs_sched": _scheduler, "lb_kind": _method, "lvs_method": _method,
    "protocol": _protocol, "persistence_timeout": _timeout, "persistence_granularity": _granularity,
    "persistence_engine": _engine, "weight": _weight,
    **dict.fromkeys(("sh-port", "mh-port", "sh-fallback", "mh-fallback"), _scheduler_flag),
    **dict.fromkeys(("flag-1", "flag-2", "flag-3"), _raw_flag),
    "inhibit_on_failure": _inhibit, "sorry_server": _sorry_server, "sorry_server_lvs_method": _sorry_method,
    "quorum": _quorum, "hysteresis": _quorum, "quorum_up": _quorum_hook, "quorum_down": _quorum_hook,
}
