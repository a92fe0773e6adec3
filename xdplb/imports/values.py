"""The values both importers read (numbers, ports, addresses, persistence netmasks), each refused
with a sentence the caller prefixes with the line."""

from __future__ import annotations

import ipaddress
import re

from xdplb.model import IPAddress

_NUMBER = re.compile(r"[0-9]+")
COUNT_MAX = 2**31 - 1  # ipvsadm's INT_MAX for thresholds, xdplb's Count


class Invalid(ValueError):
    """A value the importer refuses."""


def integer(text: str, low: int, high: int, what: str) -> int:
    if not _NUMBER.fullmatch(text):
        raise Invalid(f"{what} {text!r} is not a number")
    value = int(text)
    if not low <= value <= high:
        raise Invalid(f"{what} {value} is out of range ({low}-{high})")
    return value


def port(text: str, what: str = "port") -> int:
    return integer(text, 0, 65535, what)


def address(text: str, what: str = "address") -> IPAddress:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise Invalid(f"{what} {text!r} is not an IP address") from None


def prefix(text: str, version: int) -> int | None:
    """A persistence netmask of an IPv`version` service, dotted (IPv4) or a prefix length, as a
    prefix length; None for the whole address (what xdplb writes for /32 and /128)."""
    max_len = 32 if version == 4 else 128
    if "." in text:
        if version != 4:
            raise Invalid(f"netmask {text}: a dotted netmask on an IPv6 service (give a prefix length)")
        try:
            length = ipaddress.IPv4Network(f"0.0.0.0/{text}").prefixlen
        except ValueError:
            raise Invalid(f"netmask {text} is not a contiguous netmask") from None
    else:
        length = integer(text, 0, max_len, "netmask")
    return None if length == max_len else length


def address_range(text: str, limit: int) -> list[IPAddress]:
    """keepalived's VIP ranges: an address, A.B.C.D-E (the last byte; the last 16-bit group, in hex,
    for IPv6), A.B.C.D-E.F.G.H, or A.B.C.D/nn (every address of the prefix), both ends included."""
    try:
        if "/" in text:
            net = ipaddress.ip_network(text, strict=False)
            first, last = net.network_address, net.broadcast_address
        elif "-" in text:
            start, _, end = text.partition("-")
            first = ipaddress.ip_address(start)
            last = ipaddress.ip_address(end) if ("." in end or ":" in end) else _last_part(first, end)
        else:
            first = last = ipaddress.ip_address(text)
    except ValueError:
        raise Invalid(f"{text!r} is not an address, range or prefix") from None
    if last.version != first.version or last < first:
        raise Invalid(f"range {text}: its end is before its start")
    count = int(last) - int(first) + 1
    if count > limit:
        raise Invalid(f"range {text} holds {count} addresses, more than {limit}")
    return [first + i for i in range(count)]


def _last_part(first: IPAddress, end: str) -> IPAddress:
    """`first` with its last byte (IPv4, decimal) or 16-bit group (IPv6, hex) replaced by `end`."""
    bits, base = (8, 10) if first.version == 4 else (16, 16)
    value = int(end, base)  # ValueError for what is not a number
    if value >= 1 << bits:
        raise ValueError(end)
    return ipaddress.ip_address((int(first) >> bits << bits) | value)
