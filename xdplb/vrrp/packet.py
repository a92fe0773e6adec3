"""VRRPv3 advertisements (RFC 5798 section 5, unchanged by RFC 9568): the codec, the receive checks that need
the IP header, the timers of section 6.1, and the whole Ethernet frame for a raw (AF_PACKET) socket.

The message follows the IP header directly (IPv4 protocol / IPv6 next header 112). Its checksum (5.2.8)
covers an IP pseudo-header. For IPv4 some VRRPv3 implementations leave the pseudo-header out, as VRRPv2 did;
keepalived includes it (its `old_unicast_checksum` only concerns which destination versions before 1.3.6
put in it when unicasting). So the variant is chosen on send, and on receive either is accepted for IPv4
and the one that matched is reported: the speaker can answer a peer in its own dialect.
"""

from __future__ import annotations

import struct
from collections.abc import Collection
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Literal

from xdplb.net import mac_bytes

IPAddress = IPv4Address | IPv6Address

PROTO_VRRP = 112
VERSION = 3
TYPE_ADVERTISEMENT = 1
TTL = 255          # 5.1.1.3, 5.1.2.3: anything less crossed a router, or was sent from off-link to forge
TOS_CS6 = 0xC0     # DSCP CS6 (network control), as keepalived marks its adverts
GROUP4 = IPv4Address("224.0.0.18")
GROUP6 = IPv6Address("ff02::12")
HEADER_LEN = 8
MAX_INTERVAL_CS = 0x0FFF  # 12 bits; the 4 bits above are reserved

# version|type, VRID, priority, count of addresses, reserved|max advertisement interval, checksum
_HEADER = struct.Struct("!BBBBHH")
_ETHERTYPE = {4: 0x0800, 6: 0x86DD}
_ADDRESS_LEN = {4: 4, 6: 16}
_DF = 0x4000

Reason = Literal["short", "version", "type", "vrid", "interval", "count", "family", "checksum", "ttl", "other_vrid"]


@dataclass(frozen=True)
class Advert:
    vrid: int
    priority: int
    interval_cs: int  # max advertisement interval, centiseconds
    addresses: tuple[IPv4Address, ...] | tuple[IPv6Address, ...]
    version: int = VERSION


@dataclass(frozen=True)
class Received:
    advert: Advert
    pseudo_header: bool  # which checksum variant matched (always True for IPv6)


class AdvertError(ValueError):
    """An advertisement to drop; `reason` is one short word, fit for a counter's label."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason: Reason = reason


def encode(advert: Advert, source: IPAddress, destination: IPAddress, pseudo_header: bool = True) -> bytes:
    """The VRRP message (what follows the IP header). `pseudo_header=False` is the VRRPv2-style IPv4
    checksum some implementations use; IPv6 always has the pseudo-header. ValueError on out-of-range fields."""
    family = _family(source, destination)
    if not pseudo_header and family == 6:
        raise ValueError("an IPv6 checksum always covers the pseudo-header")
    _check_fields(advert, family)
    header = _HEADER.pack(VERSION << 4 | TYPE_ADVERTISEMENT, advert.vrid, advert.priority,
                          len(advert.addresses), advert.interval_cs, 0)
    message = header + b"".join(a.packed for a in advert.addresses)
    covered = _vrrp_pseudo_header(source, destination, len(message)) + message if pseudo_header else message
    return message[:6] + struct.pack("!H", internet_checksum(covered)) + message[8:]


def decode(payload: bytes, source: IPAddress, destination: IPAddress) -> Received:
    """Parses the VRRP message of a packet from `source` to `destination` (the IP header's addresses);
    `payload` must end where the IP length says (no Ethernet padding). Raises AdvertError only.

    The checksum is checked first, right after the length: a corrupted packet then counts as "checksum"
    whatever it hit, and the field reasons count only intact packets, i.e. what a peer really sent.
    Accepting both IPv4 variants has a price: a corruption that shifts the sum by exactly the pseudo-header's
    own sum passes as the other variant (for one bit flipped: when that sum is ±2^k modulo 0xFFFF)."""
    family = _family(source, destination)
    if len(payload) < HEADER_LEN:
        raise AdvertError("short", f"{len(payload)} bytes")
    pseudo_header = _checksum_variant(payload, source, destination)
    version_type, vrid, priority, count, interval, _ = _HEADER.unpack_from(payload)
    if version_type >> 4 != VERSION:
        raise AdvertError("version", f"version {version_type >> 4}")
    if version_type & 0x0F != TYPE_ADVERTISEMENT:
        raise AdvertError("type", f"type {version_type & 0x0F}")
    if vrid == 0:
        raise AdvertError("vrid", "VRID 0")
    interval &= MAX_INTERVAL_CS  # reserved bits: ignored on receive
    if interval == 0:
        raise AdvertError("interval", "max advertisement interval 0")
    addresses = _addresses(payload[HEADER_LEN:], count, family)
    return Received(Advert(vrid, priority, interval, addresses), pseudo_header)


def validate(received: Received, ttl: int, expect_vrid: int,
             expect_addresses: Collection[IPAddress | str] | None = None) -> list[str]:
    """The receive checks of RFC 5798 7.1 that need the IP header or our configuration. Raises AdvertError
    for a packet to drop: "ttl" (TTL / hop limit not 255), "other_vrid" (another virtual router's: on a
    shared segment a normal sight, to count rather than to log). An address list unlike ours is accepted
    (the RFC: MAY log, as a misconfiguration) and returned as warnings, not logged here: a backup gets one
    advert per interval, so the speaker logs them when they change."""
    if ttl != TTL:
        raise AdvertError("ttl", f"TTL/hop limit {ttl}, not {TTL}")
    if received.advert.vrid != expect_vrid:
        raise AdvertError("other_vrid", f"VRID {received.advert.vrid}, ours is {expect_vrid}")
    if expect_addresses is None:
        return []
    return _address_warnings(received.advert.addresses, {ip_address(a) for a in expect_addresses})


def skew_time(master_adver_interval_cs: int, priority: int) -> float:
    """Seconds; RFC 5798 6.1: ((256 - Priority) * Master_Adver_Interval) / 256 centiseconds, so the
    backup with the best priority claims mastership first and the others hear it before they would."""
    _check_timer_args(master_adver_interval_cs, priority)
    return (256 - priority) * master_adver_interval_cs / 25600  # one division: exact where it can be


def master_down_interval(master_adver_interval_cs: int, priority: int) -> float:
    """Seconds; RFC 5798 6.1: 3 * Master_Adver_Interval + Skew_Time."""
    _check_timer_args(master_adver_interval_cs, priority)
    return (3 * 256 + 256 - priority) * master_adver_interval_cs / 25600


def virtual_mac(vrid: int, family: int) -> str:
    """The virtual router MAC (RFC 5798 7.3): 00-00-5E-00-01-{VRID} for IPv4, 00-00-5E-00-02-{VRID} for IPv6;
    `family` is the IP version, 4 or 6."""
    _check_range("VRID", vrid, 1, 255)
    if family not in _ADDRESS_LEN:
        raise ValueError(f"family {family}: give 4 or 6")
    return f"00:00:5e:00:{1 if family == 4 else 2:02x}:{vrid:02x}"


def multicast_mac(group: IPAddress) -> str:
    """The Ethernet address of an IP multicast group: 01:00:5e + its low 23 bits (RFC 1112), or 33:33 + its
    low 32 bits (RFC 2464)."""
    if not group.is_multicast:
        raise ValueError(f"{group} is not a multicast group: give the peer's MAC")
    if group.version == 4:
        raw = b"\x01\x00\x5e" + bytes([group.packed[1] & 0x7F]) + group.packed[2:]
    else:
        raw = b"\x33\x33" + group.packed[-4:]
    return ":".join(f"{b:02x}" for b in raw)


def build_frame(advert: Advert, source: IPAddress, destination: IPAddress, src_mac: str | None = None,
                pseudo_header: bool = True, *, dst_mac: str | None = None) -> bytes:
    """The whole Ethernet frame, for a raw AF_PACKET socket. The source MAC is the virtual router MAC
    (RFC 5798 7.3) unless `src_mac` is given (keepalived without use_vmac sends from the interface's own MAC);
    the destination MAC is the group's, or `dst_mac` for a unicast peer (required then)."""
    message = encode(advert, source, destination, pseudo_header)
    smac = src_mac or virtual_mac(advert.vrid, source.version)
    dmac = dst_mac or multicast_mac(destination)
    if source.version == 4:
        ip = _ipv4_header(source, destination, len(message))
    else:
        ip = _ipv6_header(source, destination, len(message))
    return mac_bytes(dmac) + mac_bytes(smac) + struct.pack("!H", _ETHERTYPE[source.version]) + ip + message


def _family(source: IPAddress, destination: IPAddress) -> int:
    if source.version != destination.version:
        raise ValueError(f"{source} and {destination} are not of one family")
    return source.version


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ValueError(f"{name} {value} is out of range {low}..{high}")


def _check_fields(advert: Advert, family: int) -> None:
    if advert.version != VERSION:
        raise ValueError(f"version {advert.version}: only VRRPv3 is spoken")
    _check_range("VRID", advert.vrid, 1, 255)
    _check_range("priority", advert.priority, 0, 255)
    _check_range("max advertisement interval (cs)", advert.interval_cs, 1, MAX_INTERVAL_CS)
    _check_range("count of addresses", len(advert.addresses), 1, 255)
    strangers = [str(a) for a in advert.addresses if a.version != family]
    if strangers:
        raise ValueError(f"addresses {', '.join(strangers)} are not IPv{family} like the packet")


def _check_timer_args(interval_cs: int, priority: int) -> None:
    _check_range("master advertisement interval (cs)", interval_cs, 1, MAX_INTERVAL_CS)
    _check_range("priority", priority, 0, 255)


def _ones_sum(data: bytes) -> int:
    """The 16-bit one's complement sum (RFC 1071), carries folded back in."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def internet_checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071): the one's complement of the one's complement sum. Public because
    other messages over IP (ICMPv6 for neighbour advertisements) share it."""
    return ~_ones_sum(data) & 0xFFFF


def pseudo_header(source: IPAddress, destination: IPAddress, length: int, next_header: int) -> bytes:
    """The IP pseudo-header an upper-layer checksum covers; `next_header` is the protocol number
    (112 for VRRP, 58 for ICMPv6)."""
    if source.version == 4:  # RFC 768/793 layout: zero, protocol, 16-bit length
        return source.packed + destination.packed + struct.pack("!BBH", 0, next_header, length)
    return source.packed + destination.packed + struct.pack("!I3xB", length, next_header)  # RFC 8200 8.1


def _vrrp_pseudo_header(source: IPAddress, destination: IPAddress, length: int) -> bytes:
    return pseudo_header(source, destination, length, PROTO_VRRP)


def _checksum_variant(payload: bytes, source: IPAddress, destination: IPAddress) -> bool:
    """True when the checksum covers the pseudo-header, False for the IPv4 one without it; a sum over
    a message that includes its own correct checksum folds to 0xFFFF."""
    if _ones_sum(_vrrp_pseudo_header(source, destination, len(payload)) + payload) == 0xFFFF:
        return True
    if source.version == 4 and _ones_sum(payload) == 0xFFFF:
        return False
    raise AdvertError("checksum")


def _addresses(data: bytes, count: int, family: int) -> tuple[IPv4Address, ...] | tuple[IPv6Address, ...]:
    size, other = _ADDRESS_LEN[family], 6 if family == 4 else 4
    if count == 0 or len(data) != count * size:
        if count and len(data) == count * _ADDRESS_LEN[other]:
            raise AdvertError("family", f"{count} IPv{other} addresses in an IPv{family} packet")
        raise AdvertError("count", f"{count} addresses in {len(data)} bytes")
    chunks = [data[i:i + size] for i in range(0, len(data), size)]
    if family == 4:
        return tuple(IPv4Address(c) for c in chunks)
    return tuple(IPv6Address(c) for c in chunks)


def _address_warnings(got: tuple[IPAddress, ...], want: set[IPAddress]) -> list[str]:
    warnings = []
    if missing := want - set(got):
        warnings.append(f"the advertisement lacks {', '.join(sorted(map(str, missing)))}")
    if extra := set(got) - want:
        warnings.append(f"the advertisement has unexpected {', '.join(sorted(map(str, extra)))}")
    if len(set(got)) != len(got):
        warnings.append("the advertisement repeats an address")
    return warnings


def _ipv4_header(source: IPv4Address, destination: IPv4Address, payload_len: int) -> bytes:
    # ID 0 with DF: an atomic datagram (RFC 6864); at most 1048 bytes, it never needs fragmenting.
    header = struct.pack("!BBHHHBBH4s4s", 0x45, TOS_CS6, 20 + payload_len, 0, _DF, TTL, PROTO_VRRP, 0,
                         source.packed, destination.packed)
    return header[:10] + struct.pack("!H", internet_checksum(header)) + header[12:]


def _ipv6_header(source: IPv6Address, destination: IPv6Address, payload_len: int) -> bytes:
    first_word = 6 << 28 | TOS_CS6 << 20  # version, traffic class, flow label 0
    return struct.pack("!IHBB16s16s", first_word, payload_len, PROTO_VRRP, TTL, source.packed, destination.packed)
