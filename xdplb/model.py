"""The desired state: virtual services and their backends, validated once, here.

Words are LVS's: a service is (protocol, VIP, port) with a scheduler and a forwarding method; a
backend is a real server with a weight (0 = quiescent: no new connections, existing ones go on) and
optional connection thresholds (ipvsadm -x/-y). A service may be persistent (ipvsadm -p/-M) and may
listen on more (protocol, VIP, port) endpoints, sharing backends, connections and persistence (what
LVS does with a firewall-mark service).
"""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from xdplb.checks import HealthCheck, OnDown, Quorum
from xdplb.maglev import DEFAULT_SIZE, is_prime

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Port = Annotated[int, Field(ge=0, le=65535)]
Weight = Annotated[int, Field(ge=0, le=65535)]
Count = Annotated[int, Field(ge=0, le=2**31 - 1)]


class Protocol(StrEnum):
    TCP = "tcp"
    UDP = "udp"

    @property
    def number(self) -> int:
        return {"tcp": 6, "udp": 17}[self.value]


class Scheduler(StrEnum):
    RR = "rr"
    WRR = "wrr"
    SH = "sh"
    MH = "mh"
    LC = "lc"
    WLC = "wlc"
    SED = "sed"
    NQ = "nq"
    FO = "fo"

    @property
    def least_connection(self) -> bool:
        """The schedulers that scan the backends' connection counts."""
        return self in {Scheduler.LC, Scheduler.WLC, Scheduler.SED, Scheduler.NQ, Scheduler.FO}


class Method(StrEnum):
    DR = "dr"
    TUN = "tun"
    NAT = "nat"


class Encap(StrEnum):
    """How TUN carries a packet: IPIP (4in4, 6in6, 4in6) or GUE (IP directly in UDP)."""

    IPIP = "ipip"
    GUE = "gue"


class SchedFlag(StrEnum):
    """IPVS scheduler flags (ipvsadm -b): hash the source port too, for sh and mh."""

    SH_PORT = "sh-port"
    MH_PORT = "mh-port"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Tunnel(_Strict):
    """TUN's encapsulation towards a backend (per service, or per backend)."""

    encap: Encap = Encap.IPIP
    gue_port: int = Field(6080, ge=1, le=65535, description="GUE's UDP destination port")
    source: IPAddress | None = Field(None, description="outer source; None = the director's address towards "
                                     "the backend (the route's preferred source)")
    vary_source_bits: int = Field(0, ge=0, le=32, description="low bits of the outer source taken from the "
                                  "flow's hash, so the backend spreads flows over its receive queues")


class Backend(_Strict):
    address: IPAddress
    weight: Weight = 1
    port: Port | None = Field(None, description="NAT only: the real server's port (None = the service's)")
    upper_threshold: Count = Field(0, description="ipvsadm -x: no new connections from this many on (0 = none)")
    lower_threshold: Count = Field(0, description="ipvsadm -y: new connections again below this (0 = 3/4 of -x)")
    tunnel: Tunnel | None = Field(None, description="TUN only: this backend's encapsulation (None = the service's)")
    check: HealthCheck | None = Field(None, description="this backend's health check (None = the service's)")
    inhibit_on_failure: bool = Field(False, description="when down: weight 0 (established connections go on) "
                                     "rather than out of the tables")

    @model_validator(mode="after")
    def _thresholds(self) -> Self:
        if self.lower_threshold and not self.upper_threshold:
            raise ValueError(f"backend {self.address}: a lower threshold needs an upper one")
        if self.upper_threshold and self.lower_threshold >= self.upper_threshold:
            raise ValueError(f"backend {self.address}: lower threshold {self.lower_threshold} must be below "
                             f"the upper one {self.upper_threshold}")
        return self


class Persistence(_Strict):
    """ipvsadm -p timeout -M netmask: a client network's connections stick to one backend."""

    timeout: int = Field(300, ge=1, le=31 * 24 * 3600, description="seconds a template outlives its last connection")
    netmask: int | None = Field(None, description="client prefix length (-M); None = the whole address")

    @field_validator("netmask", mode="before")
    @classmethod
    def _prefix(cls, v: object) -> object:
        """Accepts ipvsadm's dotted IPv4 netmask as well as a prefix length."""
        if isinstance(v, str) and "." in v:
            return ipaddress.IPv4Network(f"0.0.0.0/{v}").prefixlen
        return v


class Endpoint(_Strict):
    """One more (protocol, VIP, port) a service listens on."""

    protocol: Protocol
    vip: IPAddress
    port: Port


class Service(_Strict):
    protocol: Protocol
    vip: IPAddress
    port: Port = Field(description="0 = every port of the VIP")
    scheduler: Scheduler = Scheduler.WRR
    method: Method = Method.DR
    sched_flags: frozenset[SchedFlag] = frozenset()
    ring_size: int = Field(DEFAULT_SIZE, description="Maglev table length, a prime")
    tunnel: Tunnel = Field(Tunnel(), description="TUN only: how backends are reached")
    persistence: Persistence | None = None
    expire_nodest: bool = Field(True, description="IPVS expire_nodest_conn: a connection whose backend is gone "
                                "is scheduled again (False: its packets are dropped until it expires)")
    fwmark: int | None = Field(None, ge=1, le=2**32 - 1, description="names a multi-port service, like LVS")
    endpoints: tuple[Endpoint, ...] = Field((), description="more (protocol, VIP, port) of the same service")
    backends: tuple[Backend, ...] = ()
    check: HealthCheck | None = Field(None, description="the health check of every backend without its own")
    on_down: OnDown = Field(OnDown.REMOVE, description="a backend found down leaves the tables (its connections "
                            "follow expire_nodest) or stays at weight 0 (keep: they go on)")
    sorry_server: Backend | None = Field(None, description="takes the traffic while the live backends' weight "
                                         "is below the quorum (by default: while none is up)")
    quorum: Quorum = Quorum()

    @field_validator("ring_size")
    @classmethod
    def _prime(cls, v: int) -> int:
        if not is_prime(v) or v < 7:
            raise ValueError(f"ring_size must be a prime >= 7, got {v}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        seen: set[IPAddress] = set()
        for b in self.backends:
            if b.address.version != self.vip.version and self.method != Method.TUN:
                raise ValueError(f"backend {b.address} is IPv{b.address.version}, the VIP is IPv{self.vip.version}: "
                                 "only TUN crosses families (4in6)")
            if b.tunnel and self.method != Method.TUN:
                raise ValueError(f"backend {b.address}: a tunnel needs method tun")
            source = (b.tunnel or self.tunnel).source
            if self.method == Method.TUN and source and source.version != b.address.version:
                raise ValueError(f"backend {b.address}: the tunnel source {source} is not IPv{b.address.version}")
            if b.address in seen:
                raise ValueError(f"backend {b.address} is listed twice")
            seen.add(b.address)
            if b.port is not None and b.port != self.port and self.method != Method.NAT:
                raise ValueError(f"backend {b.address}: port mapping ({self.port} -> {b.port}) needs NAT; "
                                 f"{self.method.upper()} cannot change the port, as in LVS")
        self._check_sorry_server(seen)
        self._check_checks()
        port_flags = {SchedFlag.SH_PORT: Scheduler.SH, SchedFlag.MH_PORT: Scheduler.MH}
        for flag in self.sched_flags:
            if port_flags[flag] != self.scheduler:
                raise ValueError(f"scheduler flag {flag} needs scheduler {port_flags[flag]}")
        self._check_endpoints()
        mask = self.persistence.netmask if self.persistence else None
        if mask is not None and not 0 <= mask <= self.vip.max_prefixlen:
            raise ValueError(f"persistence netmask /{mask} does not fit IPv{self.vip.version}")
        return self

    def _check_checks(self) -> None:
        for b in self.backends:
            check = b.check or self.check
            if check and not (check.port or b.port or self.port):
                raise ValueError(f"backend {b.address}: a check of a port-0 service needs its own port")

    def _check_sorry_server(self, backends: set[IPAddress]) -> None:
        s = self.sorry_server
        if s is None:
            return
        if s.address in backends:
            raise ValueError(f"sorry server {s.address} is also a backend")
        if s.address.version != self.vip.version and self.method != Method.TUN:
            raise ValueError(f"sorry server {s.address} is IPv{s.address.version}, the VIP is IPv{self.vip.version}")
        if s.port is not None and s.port != self.port and self.method != Method.NAT:
            raise ValueError(f"sorry server {s.address}: port mapping needs NAT")

    def _check_endpoints(self) -> None:
        if self.endpoints and self.fwmark is None:
            raise ValueError("a service with more endpoints needs a fwmark to name it")
        seen = {(self.protocol, self.vip, self.port)}
        for e in self.endpoints:
            if e.vip.version != self.vip.version:
                raise ValueError(f"endpoint {e.vip} is IPv{e.vip.version}, the service is IPv{self.vip.version}")
            if (e.protocol, e.vip, e.port) in seen:
                raise ValueError(f"endpoint {e.protocol}/{e.vip}:{e.port} is listed twice")
            seen.add((e.protocol, e.vip, e.port))

    @property
    def all_endpoints(self) -> tuple[tuple[Protocol, IPAddress, int], ...]:
        """Every (protocol, VIP, port) the service listens on, its own first."""
        return ((self.protocol, self.vip, self.port), *((e.protocol, e.vip, e.port) for e in self.endpoints))

    @property
    def key(self) -> tuple:
        """What names the service: its fwmark (as ipvsadm -f), else (protocol, VIP, port)."""
        if self.fwmark is not None:
            return ("fwm", self.fwmark)
        return (self.protocol, self.vip, self.port)

    @property
    def id(self) -> str:
        """The key as one string, for URLs and the CLI: `tcp:10.100.0.100:80`, `udp:[2001:db8::1]:53`, `fwm:7`."""
        return key_id(self.key)

    def __str__(self) -> str:
        if self.fwmark is not None:
            return f"FWM {self.fwmark} {self.scheduler}"
        host = f"[{self.vip}]" if self.vip.version == 6 else str(self.vip)
        return f"{self.protocol.upper()} {host}:{self.port} {self.scheduler}"


class Timeouts(_Strict):
    """IPVS's idle timeouts in seconds (ipvsadm --set tcp tcpfin udp), plus a half-open TCP
    connection's (IPVS SYN_RECV). An entry idle longer is never used again."""

    tcp: int = Field(900, ge=1, le=30 * 24 * 3600)
    tcpfin: int = Field(120, ge=1, le=30 * 24 * 3600)
    udp: int = Field(300, ge=1, le=30 * 24 * 3600)
    syn: int = Field(60, ge=1, le=30 * 24 * 3600)


def key_id(key: tuple) -> str:
    """A service key (Service.key) as its id string."""
    if key[0] == "fwm":
        return f"fwm:{key[1]}"
    protocol, vip, port = key
    host = f"[{vip}]" if vip.version == 6 else str(vip)
    return f"{protocol}:{host}:{port}"


def parse_key(text: str) -> tuple:
    """A service id (`tcp:10.100.0.100:80`, `tcp:[2001:db8::1]:80` or without brackets, `fwm:7`) as
    the service's key; ValueError says what is wrong."""
    kind, sep, rest = text.strip().partition(":")
    kind = kind.lower()
    if not sep or not rest:
        raise ValueError(f"{text!r} is not a service id: PROTO:VIP:PORT (tcp:10.0.0.1:80, udp:[2001:db8::1]:53) "
                         "or fwm:MARK")
    if kind == "fwm":
        if not rest.isdigit() or not 1 <= int(rest) <= 2**32 - 1:
            raise ValueError(f"{text!r}: a firewall mark is a number from 1 to 4294967295")
        return ("fwm", int(rest))
    try:
        protocol = Protocol(kind)
    except ValueError:
        raise ValueError(f"{text!r}: protocol {kind!r} is not tcp or udp") from None
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{text!r}: the port is missing or not in 0..65535")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        vip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{text!r}: {host!r} is not an IPv4 or IPv6 address") from None
    return (protocol, vip, int(port))
