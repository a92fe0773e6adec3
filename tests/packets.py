"""Test frames, built with scapy, in the lab's addressing (../shared/DESIGN.md)."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Packet

from xdplb.lab import BY_NAME, VIP4, VIP6
from xdplb.model import Backend, Service
from xdplb.net import Nexthop

CLIENT4, CLIENT6 = BY_NAME["client"].address("edge", 4), BY_NAME["client"].address("edge", 6)
ROUTER_MAC = "02:00:00:63:00:01"   # the router, as the sender of client traffic
LB_MAC = "02:00:00:64:00:02"       # the director
LO_IFINDEX = 1                     # BPF_PROG_TEST_RUN's default ingress device


def backend_mac(i: int) -> str:
    return f"02:00:00:64:01:{i:02x}"


def backends(n: int, version: int = 4, weights: list[int] | None = None) -> tuple[Backend, ...]:
    weights = weights or [1] * n
    first = ipaddress.ip_address("10.100.0.11" if version == 4 else "fd00:100::11")
    return tuple(Backend(address=first + i, weight=w) for i, w in enumerate(weights))


LB4, LB6 = "10.100.0.2", "fd00:100::2"  # the director's front addresses: TUN's outer source


def nexthops(bes: tuple[Backend, ...], ifindex: int = LO_IFINDEX, mtu: int = 0) -> dict:
    return {b.address: Nexthop(ifindex, LB_MAC, backend_mac(i), LB4 if b.address.version == 4 else LB6, mtu)
            for i, b in enumerate(bes)}


def service(proto: str = "tcp", port: int = 80, version: int = 4, **kw) -> Service:
    kw.setdefault("ring_size", 4099)
    return Service(protocol=proto, vip=VIP4 if version == 4 else VIP6, port=port, **kw)


def eth(vlan: int | None = None) -> Packet:
    e = Ether(src=ROUTER_MAC, dst=LB_MAC)
    return e / Dot1Q(vlan=vlan) if vlan is not None else e


def ip(version: int = 4, src: str | None = None, dst: str | None = None, **kw) -> Packet:
    if version == 4:
        return IP(src=src or CLIENT4, dst=dst or VIP4, **kw)
    return IPv6(src=src or CLIENT6, dst=dst or VIP6, **kw)


def tcp(sport: int = 40000, dport: int = 80, flags: str = "S", version: int = 4, vlan: int | None = None,
        src: str | None = None, dst: str | None = None, payload: bytes = b"") -> bytes:
    return bytes(eth(vlan) / ip(version, src, dst) / TCP(sport=sport, dport=dport, flags=flags) / payload)


def udp(sport: int = 40000, dport: int = 53, version: int = 4, src: str | None = None,
        dst: str | None = None, payload: bytes = b"q") -> bytes:
    return bytes(eth() / ip(version, src, dst) / UDP(sport=sport, dport=dport) / payload)


def backend_of(frame: bytes) -> str:
    """The backend a forwarded frame went to: its destination MAC (backend_mac)."""
    return Ether(frame).dst


def htons(port: int) -> int:
    return socket.htons(port)


def flows(template: bytes, n: int, first_src: str = "11.0.0.1", sport: int = 1024) -> Iterator[bytes]:
    """n copies of an untagged IPv4 TCP/UDP frame, each from its own client (address and port),
    patched in place rather than built by scapy: a flood of a million costs seconds, not minutes.
    Checksums are left as they were: the balancer never reads them."""
    buf = bytearray(template)
    base = int(ipaddress.IPv4Address(first_src))
    for i in range(n):
        buf[26:30] = (base + i // 50000).to_bytes(4, "big")
        buf[34:36] = (sport + i % 50000).to_bytes(2, "big")
        yield bytes(buf)
