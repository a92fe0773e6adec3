"""Raw IP sockets for VRRP adverts on one interface, IPv4 or IPv6.

Two sockets, as keepalived has: the receiving one is bound to the device only (a raw IPv4 socket bound
to an address sees only packets to that address, and adverts go to 224.0.0.18), the sending one is
bound to our source address too, so the kernel never picks a VIP as the source. The kernel builds
the IP header (TTL / hop limit 255, DSCP CS6); the VRRP checksum is ours (xdplb.vrrp.packet).
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address

from xdplb.vrrp.packet import GROUP4, GROUP6, PROTO_VRRP, TOS_CS6, TTL

IPAddress = IPv4Address | IPv6Address

IP_MULTICAST_ALL = 49
IPV6_RECVHOPLIMIT, IPV6_HOPLIMIT = 51, 52
IPV6_RECVPKTINFO, IPV6_PKTINFO = 49, 50
RECV_SIZE = 65535


@dataclass(frozen=True)
class Packet:
    payload: bytes       # the VRRP message
    source: IPAddress
    destination: IPAddress
    ttl: int             # TTL or hop limit


class VrrpSockets:
    def __init__(self, family: int, ifname: str, ifindex: int, source: IPAddress,
                 peers: list[IPAddress]) -> None:
        self.family, self.ifname, self.ifindex, self.source = family, ifname, ifindex, source
        self.destinations: list[IPAddress] = list(peers) or [GROUP4 if family == 4 else GROUP6]
        self.recv = self._receiver()
        try:
            self.send_sock = self._sender()
        except OSError:
            self.recv.close()
            raise

    def fileno(self) -> int:
        return self.recv.fileno()

    def close(self) -> None:
        self.recv.close()
        self.send_sock.close()

    def send(self, message_for: callable) -> int:
        """Sends `message_for(destination)` (the checksum covers the destination) to every
        destination; how many went out. An interface gone or down raises OSError to the caller."""
        sent = 0
        for dst in self.destinations:
            address = (str(dst), 0) if self.family == 4 else (str(dst), 0, 0, self.ifindex)
            self.send_sock.sendto(message_for(dst), address)
            sent += 1
        return sent

    def receive(self) -> Packet | None:
        """One packet, or None when nothing is waiting (or it is not even an IP packet we can read)."""
        try:
            data, anc, _flags, addr = self.recv.recvmsg(RECV_SIZE, 256, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return None
        return _ipv4(data) if self.family == 4 else _ipv6(data, anc, addr)

    # ---- setup -----------------------------------------------------------------------------

    def _receiver(self) -> socket.socket:
        af = socket.AF_INET if self.family == 4 else socket.AF_INET6
        s = socket.socket(af, socket.SOCK_RAW, PROTO_VRRP)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.ifname.encode())
            if self.family == 4:
                s.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)  # only the groups joined here
                mreq = struct.pack("4s4si", GROUP4.packed, b"\0" * 4, self.ifindex)
                s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
            else:
                s.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVHOPLIMIT, 1)
                s.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
                mreq = struct.pack("16si", GROUP6.packed, self.ifindex)
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
            s.setblocking(False)
        except OSError:
            s.close()
            raise
        return s

    def _sender(self) -> socket.socket:
        af = socket.AF_INET if self.family == 4 else socket.AF_INET6
        s = socket.socket(af, socket.SOCK_RAW, PROTO_VRRP)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.ifname.encode())
            if self.family == 4:
                s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, TOS_CS6)
                s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, TTL)
                s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, TTL)
                s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
                s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                             struct.pack("4s4si", b"\0" * 4, self.source.packed, self.ifindex))
                s.bind((str(self.source), 0))
            else:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, TOS_CS6)
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, TTL)
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, TTL)
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, self.ifindex)
                scope = self.ifindex if self.source.is_link_local else 0
                s.bind((str(self.source), 0, 0, scope))
        except OSError:
            s.close()
            raise
        return s


def _ipv4(data: bytes) -> Packet | None:
    """An IPv4 raw socket hands over the IP header too: TTL and addresses come from it."""
    if len(data) < 20 or data[0] >> 4 != 4:
        return None
    ihl = (data[0] & 0x0F) * 4
    total = struct.unpack_from("!H", data, 2)[0]
    if ihl < 20 or len(data) < ihl or data[9] != PROTO_VRRP:
        return None
    payload = data[ihl:min(len(data), total)] if total >= ihl else data[ihl:]
    return Packet(payload, IPv4Address(data[12:16]), IPv4Address(data[16:20]), data[8])


def _ipv6(data: bytes, ancillary: list, addr: tuple) -> Packet | None:
    """An IPv6 raw socket hands over the payload only: hop limit and destination come as ancillary data."""
    hops, dst = None, None
    for level, kind, value in ancillary:
        if level == socket.IPPROTO_IPV6 and kind == IPV6_HOPLIMIT and len(value) >= 4:
            hops = struct.unpack("i", value[:4])[0]
        elif level == socket.IPPROTO_IPV6 and kind == IPV6_PKTINFO and len(value) >= 16:
            dst = IPv6Address(value[:16])
    if hops is None or dst is None:
        return None
    source = ip_address(addr[0].split("%")[0])
    return Packet(data, source, dst, hops)
