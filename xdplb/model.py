"""The desired state: virtual services and their backends, validated once, here.

Words are LVS's: a service is (protocol, VIP, port) with a scheduler and a forwarding method; a
backend is a real server with a weight (0 = quiescent: no new connections, existing ones go on).
"""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from xdplb.maglev import DEFAULT_SIZE, is_prime

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Port = Annotated[int, Field(ge=0, le=65535)]
Weight = Annotated[int, Field(ge=0, le=65535)]


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


class Method(StrEnum):
    DR = "dr"


class SchedFlag(StrEnum):
    """IPVS scheduler flags (ipvsadm -b): hash the source port too, for sh and mh."""

    SH_PORT = "sh-port"
    MH_PORT = "mh-port"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Backend(_Strict):
    address: IPAddress
    weight: Weight = 1


class Service(_Strict):
    protocol: Protocol
    vip: IPAddress
    port: Port = Field(description="0 = every port of the VIP")
    scheduler: Scheduler = Scheduler.WRR
    method: Method = Method.DR
    sched_flags: frozenset[SchedFlag] = frozenset()
    ring_size: int = Field(DEFAULT_SIZE, description="Maglev table length, a prime")
    backends: tuple[Backend, ...] = ()

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
            if b.address.version != self.vip.version:
                raise ValueError(f"backend {b.address} is IPv{b.address.version}, the VIP is IPv{self.vip.version}")
            if b.address in seen:
                raise ValueError(f"backend {b.address} is listed twice")
            seen.add(b.address)
        port_flags = {SchedFlag.SH_PORT: Scheduler.SH, SchedFlag.MH_PORT: Scheduler.MH}
        for flag in self.sched_flags:
            if port_flags[flag] != self.scheduler:
                raise ValueError(f"scheduler flag {flag} needs scheduler {port_flags[flag]}")
        return self

    @property
    def key(self) -> tuple[Protocol, IPAddress, int]:
        return (self.protocol, self.vip, self.port)

    def __str__(self) -> str:
        host = f"[{self.vip}]" if self.vip.version == 6 else str(self.vip)
        return f"{self.protocol.upper()} {host}:{self.port} {self.scheduler}"
