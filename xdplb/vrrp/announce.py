"""What a new VRRP master sends so that its neighbours move the virtual addresses to it at once instead of
when their ARP/ND entries for the old master expire: a gratuitous ARP per IPv4 address, an unsolicited
Neighbor Advertisement (RFC 4861 7.2.6) per IPv6 address.

The frames come from the interface's own MAC, as keepalived's without use_vmac: the addresses move to this
host's MAC, the one its kernel answers ARP/ND for afterwards. They go out through one raw AF_PACKET socket;
the MAC and the link-local source are read through netlink at each announcement, so a MAC changed since
start (a bond's failover) is the one announced.
"""

from __future__ import annotations

import logging
import socket
import struct
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv6Address
from types import TracebackType

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from xdplb.net import mac_bytes
from xdplb.vrrp.packet import internet_checksum, pseudo_header

log = logging.getLogger(__name__)

ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
BROADCAST = "ff:ff:ff:ff:ff:ff"
ALL_NODES = IPv6Address("ff02::1")
ALL_NODES_MAC = "33:33:00:00:00:01"
ETH_MIN_FRAME = 60  # without the FCS: a shorter frame is a runt unless the driver pads it, and some do not

ARPHRD_ETHER, ARPOP_REQUEST = 1, 1
PROTO_ICMPV6 = 58
ND_NEIGHBOR_ADVERT = 136
ND_OPT_TARGET_LL_ADDR = 2
NA_OVERRIDE = 0x20000000  # the O flag: replace the cached MAC (R and S stay 0: not a router, not an answer)
HOP_LIMIT = 255           # RFC 4861 7.1.2: receivers drop ND that may have crossed a router
IFA_F_TENTATIVE, IFA_F_DADFAILED = 0x40, 0x08

_ETHER = struct.Struct("!6s6sH")
# hardware type, protocol type, their lengths, operation, sender MAC and IP, target MAC and IP
_ARP = struct.Struct("!HHBBH6s4s6s4s")
_IPV6 = struct.Struct("!IHBB16s16s")
# type, code, checksum, flags, target, then the option: type, length in units of 8 bytes, MAC
_NA = struct.Struct("!BBHI16sBB6s")


def garp_frame(src_mac: str, address: IPv4Address) -> bytes:
    """A gratuitous ARP for `address` from `src_mac`, broadcast. A request with sender = target = the address
    and a zero target MAC, as keepalived and `arping -U` send it: every Linux neighbour updates an entry it
    already has from it (a reply would only do so with arp_accept); padded to the Ethernet minimum."""
    mac = mac_bytes(src_mac)
    arp = _ARP.pack(ARPHRD_ETHER, 0x0800, 6, 4, ARPOP_REQUEST, mac, address.packed, bytes(6), address.packed)
    frame = _ETHER.pack(mac_bytes(BROADCAST), mac, ETH_P_ARP) + arp
    return frame.ljust(ETH_MIN_FRAME, b"\0")


def unsolicited_na_frame(src_mac: str, source: IPv6Address, address: IPv6Address) -> bytes:
    """An unsolicited Neighbor Advertisement (RFC 4861 7.2.6) for `address` to all nodes, from `source`
    (the interface's link-local address), with Override set so that caches holding the old master's MAC
    take `src_mac`, given as the Target Link-Layer Address option."""
    mac = mac_bytes(src_mac)
    message = _NA.pack(ND_NEIGHBOR_ADVERT, 0, 0, NA_OVERRIDE, address.packed, ND_OPT_TARGET_LL_ADDR, 1, mac)
    checksum = internet_checksum(pseudo_header(source, ALL_NODES, len(message), PROTO_ICMPV6) + message)
    message = message[:2] + struct.pack("!H", checksum) + message[4:]
    ip = _IPV6.pack(6 << 28, len(message), PROTO_ICMPV6, HOP_LIMIT, source.packed, ALL_NODES.packed)
    return _ETHER.pack(mac_bytes(ALL_NODES_MAC), mac, ETH_P_IPV6) + ip + message


class Announcer:
    """Sends the announcements of one interface of the current network namespace, the namespace the
    object is made in (netlink look-ups at send time are made in the calling thread's: call `announce`
    from that namespace too). For one thread; the socket receives nothing (protocol 0)."""

    def __init__(self, ifname: str) -> None:
        self.ifname = ifname
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            self._sock.bind((ifname, 0))  # OSError now if the interface does not exist: a configuration error
        except OSError:
            self._sock.close()
            raise

    def announce(self, addresses: Iterable[IPv4Address | IPv6Address]) -> int:
        """One frame per address; returns how many were sent. Never raises for the interface (gone, down,
        no MAC): the speaker must keep running, so failures are logged and the count says what went out."""
        addresses = list(addresses)
        if not addresses:
            return 0
        try:
            mac, link_local = self._interface(need_link_local=any(a.version == 6 for a in addresses))
        except (OSError, NetlinkError, LookupError) as e:
            log.warning("%s: cannot announce %d addresses: %s", self.ifname, len(addresses), e)
            return 0
        return self._send(self._frames(addresses, mac, link_local))

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Announcer:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def _interface(self, need_link_local: bool) -> tuple[str, IPv6Address | None]:
        """The interface's MAC, and its usable link-local address if asked (None when it has none)."""
        with IPRoute() as ipr:
            found = ipr.link_lookup(ifname=self.ifname)
            if not found:
                raise LookupError("no such interface")
            link = ipr.get_links(found[0])[0]
            if link["ifi_type"] != ARPHRD_ETHER:  # ARP and ND options as built here are Ethernet's
                raise LookupError(f"not an Ethernet interface (type {link['ifi_type']})")
            return link.get_attr("IFLA_ADDRESS"), _link_local(ipr, found[0]) if need_link_local else None

    def _frames(self, addresses: list[IPv4Address | IPv6Address], mac: str,
                link_local: IPv6Address | None) -> list[tuple[bytes, int]]:
        frames = []
        skipped = [str(a) for a in addresses if a.version == 6 and link_local is None]
        if skipped:
            log.warning("%s has no usable link-local address (none, or still tentative): not announcing %s",
                        self.ifname, ", ".join(skipped))
        for address in addresses:
            if isinstance(address, IPv4Address):
                frames.append((garp_frame(mac, address), ETH_P_ARP))
            elif link_local is not None:
                frames.append((unsolicited_na_frame(mac, link_local, address), ETH_P_IPV6))
        return frames

    def _send(self, frames: list[tuple[bytes, int]]) -> int:
        """Sends by interface name, not through the bound index, so that an interface deleted and made
        again (same name) still gets the frames; stops at the first error, which would likely repeat."""
        for sent, (frame, ethertype) in enumerate(frames):
            try:
                self._sock.sendto(frame, (self.ifname, ethertype))
            except OSError as e:
                log.warning("%s: announced %d of %d addresses, then: %s", self.ifname, sent, len(frames), e)
                return sent
        log.debug("%s: announced %d addresses", self.ifname, len(frames))
        return len(frames)


def _link_local(ipr: IPRoute, ifindex: int) -> IPv6Address | None:
    """The first link-local address of the interface that has passed duplicate address detection: RFC 4862
    forbids sending from a tentative one."""
    for a in ipr.get_addr(index=ifindex, family=socket.AF_INET6):
        address = IPv6Address(a.get_attr("IFA_ADDRESS"))
        flags = a.get_attr("IFA_FLAGS") or a["flags"]
        if address.is_link_local and not flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED):
            return address
    return None
