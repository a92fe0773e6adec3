"""Frames for `simulate`: the first packet of a flow as a client would send it, built with scapy."""

from __future__ import annotations

import ipaddress

from xdplb.model import IPAddress, Protocol

_MAC_ROUTER = "02:00:00:00:00:01"  # who sends it matters not: the balancer keys on addresses and ports
_MAC_SELF = "02:00:00:00:00:02"


def parse_endpoint(text: str) -> tuple[IPAddress, int]:
    """`1.2.3.4:5555` or `[2001:db8::1]:5555` as (address, port); ValueError says what is wrong."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{text!r}: give ADDRESS:PORT ([v6]:port for IPv6) with a port from 0 to 65535")
    try:
        return ipaddress.ip_address(host.strip("[]")), int(port)
    except ValueError:
        raise ValueError(f"{text!r}: {host!r} is not an IP address") from None


def first_packet(source: tuple[IPAddress, int], destination: tuple[IPAddress, int], protocol: Protocol,
                 tcp_flags: str = "S", payload: bytes = b"") -> bytes:
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether

    (src, sport), (dst, dport) = source, destination
    if src.version != dst.version:
        raise ValueError(f"{src} and {dst} are not of one family")
    ip = IP(src=str(src), dst=str(dst)) if src.version == 4 else IPv6(src=str(src), dst=str(dst))
    l4 = TCP(sport=sport, dport=dport, flags=tcp_flags) if protocol == Protocol.TCP else UDP(sport=sport, dport=dport)
    return bytes(Ether(src=_MAC_ROUTER, dst=_MAC_SELF) / ip / l4 / payload)


def summary(frame: bytes) -> str:
    from scapy.layers.l2 import Ether

    return Ether(frame).summary() if frame else ""
