"""The `ha:` section of the daemon's configuration: VRRPv3 instances, in keepalived's words.

One instance is one VRRP router (RFC 5798): a VRID on an interface, one address family. Its
`addresses` are advertised and must share the family; `excluded_addresses` (keepalived's
`virtual_ipaddress_excluded`) move with the instance without being advertised: the IPv6 VIP of an
IPv4 instance, a NAT gateway address on the back interface.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from xdplb.config_types import IfName, Name
from xdplb.model import IPAddress

MAX_INTERVAL = 40.95   # 4095 centiseconds: the advert's 12-bit field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _address_text(value: Any) -> Any:
    """`10.100.0.100/32 dev back` (keepalived's line) or `10.100.0.100`, as a mapping."""
    if isinstance(value, str):
        parts = value.split()
        if len(parts) == 3 and parts[1] == "dev":
            return {"address": parts[0], "interface": parts[2]}
        if len(parts) == 1:
            return {"address": parts[0]}
        raise ValueError(f"{value!r}: give ADDRESS[/PREFIX] [dev INTERFACE]")
    return value


class VirtualAddress(_Strict):
    address: ipaddress.IPv4Interface | ipaddress.IPv6Interface = Field(
        description="ADDRESS[/PREFIX]; a bare address is /32 or /128")
    interface: IfName | None = Field(None, description="default: the instance's interface")

    @property
    def family(self) -> int:
        return self.address.version

    def __str__(self) -> str:
        return f"{self.address} dev {self.interface}" if self.interface else str(self.address)


VirtualAddressItem = Annotated[VirtualAddress, BeforeValidator(_address_text)]
Weight = Annotated[int, Field(ge=-254, le=254)]


class TrackInterface(_Strict):
    """An interface whose link going down adds `weight` to the priority (a negative weight lowers it),
    or (weight 0) puts the instance in fault: it releases the VIPs and stops advertising."""

    name: IfName
    weight: Weight = 0


class TrackService(_Strict):
    """A service (`tcp:VIP:PORT`, `fwm:N`) whose quorum being lost (no live backend by default) adds
    `weight` to the priority (a negative weight lowers it), or (weight 0) puts the instance in fault."""

    service: str
    weight: Weight = 0


class Instance(_Strict):
    name: Name
    interface: IfName
    vrid: int = Field(ge=1, le=255)
    priority: int = Field(100, ge=1, le=255, description="255: the address owner, master at once")
    advert_interval: float = Field(1.0, ge=0.01, le=MAX_INTERVAL, description="seconds, sent in centiseconds")
    preempt: bool = True
    preempt_delay: float = Field(0.0, ge=0, le=1000, description="seconds a higher-priority backup waits "
                                 "after start before it preempts")
    addresses: list[VirtualAddressItem] = Field(min_length=1, description="the VIPs: advertised, one family")
    excluded_addresses: list[VirtualAddressItem] = Field([], description="moved with the VIPs, not advertised")
    unicast_source: IPAddress | None = Field(None, description="default: the interface's primary address")
    unicast_peers: list[IPAddress] = Field([], description="none: multicast to 224.0.0.18 / ff02::12")
    pseudo_header: bool = Field(True, description="IPv4 checksum over the pseudo-header (keepalived, RFC "
                                "5798); false for RFC 9568 style peers. Both are accepted on receive")
    track_interfaces: list[TrackInterface] = []
    track_services: list[TrackService] = []
    notify: list[str] | None = Field(None, description="argv, run with INSTANCE NAME STATE PRIORITY appended")
    garp_repeat: int = Field(5, ge=1, le=100, description="gratuitous ARP / unsolicited NA per burst")
    garp_delay: float = Field(5.0, ge=0, le=3600, description="a second burst this long after becoming master")
    garp_refresh: float = Field(60.0, ge=0, le=86400, description="then every this long while master (0: never)")

    @property
    def family(self) -> int:
        return self.addresses[0].family

    @property
    def interval_cs(self) -> int:
        return max(1, round(self.advert_interval * 100))

    @field_validator("notify")
    @classmethod
    def _argv(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and (not v or not v[0]):
            raise ValueError("notify needs a program (an argv list, no shell)")
        return v

    @model_validator(mode="after")
    def _one_family(self) -> Instance:
        family = self.family
        if any(a.family != family for a in self.addresses):
            raise ValueError(f"instance {self.name}: advertised addresses share one family (IPv{family}); "
                             "put the others in excluded_addresses")
        others = [*self.unicast_peers, *([self.unicast_source] if self.unicast_source else [])]
        wrong = [str(a) for a in others if a.version != family]
        if wrong:
            raise ValueError(f"instance {self.name}: unicast addresses {', '.join(wrong)} are not IPv{family}")
        if family == 6 and not self.pseudo_header:
            raise ValueError(f"instance {self.name}: an IPv6 checksum always covers the pseudo-header")
        return self

    def all_addresses(self) -> list[VirtualAddress]:
        """Every address the instance moves, each with its interface filled in."""
        return [a if a.interface else a.model_copy(update={"interface": self.interface})
                for a in (*self.addresses, *self.excluded_addresses)]


class HaSettings(_Strict):
    """High availability: this director's VRRP instances, run by the speaker, a process of its own."""

    instances: list[Instance] = Field(min_length=1)
    control_socket: Path | None = Field(None, description="the speaker's control socket; default "
                                        "<state_dir>/vrrp.sock")

    @field_validator("instances")
    @classmethod
    def _distinct(cls, v: list[Instance]) -> list[Instance]:
        names: set[str] = set()
        routers: set[tuple] = set()
        owned: dict[str, str] = {}
        for inst in v:
            if inst.name in names:
                raise ValueError(f"two instances are named {inst.name}")
            names.add(inst.name)
            router = (inst.interface, inst.vrid, inst.family)
            if router in routers:
                raise ValueError(f"instance {inst.name}: VRID {inst.vrid} on {inst.interface} (IPv{inst.family}) "
                                 "is already an instance's")
            routers.add(router)
            for a in inst.all_addresses():
                key = f"{a.address.ip} on {a.interface}"
                if key in owned:
                    raise ValueError(f"instance {inst.name}: {key} is already instance {owned[key]}'s")
                owned[key] = inst.name
        return v

    @field_validator("control_socket")
    @classmethod
    def _absolute(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_absolute():
            raise ValueError(f"{v} is not an absolute path")
        return v

    def socket_path(self, state_dir: Path) -> Path:
        return self.control_socket or state_dir / "vrrp.sock"
