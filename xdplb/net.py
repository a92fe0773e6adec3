"""Netlink, through pyroute2: the only module that talks to the kernel's routing and neighbour tables.

For DR the data plane rewrites MACs to a backend's next hop. The next hop is resolved here, ahead of
traffic, so a packet for a VIP never waits on ARP/ND and never falls back to the kernel.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pyroute2 import IPRoute, netns

NUD_VALID = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80  # reachable stale delay probe noarp permanent
NTF_USE = 0x01
IFA_F_NODAD = 0x02


class NexthopError(RuntimeError):
    """A backend's next hop cannot be resolved (no route, or no ARP/ND answer)."""


@dataclass(frozen=True)
class Nexthop:
    ifindex: int
    smac: str   # our MAC on ifindex
    dmac: str   # the next hop's MAC
    src: str | None = None  # our address towards the backend (the route's preferred source): TUN's outer source
    mtu: int = 0            # the egress interface's MTU (0: unknown, no check): what TUN must fit in


def mac_bytes(mac: str) -> bytes:
    raw = bytes.fromhex(mac.replace(":", ""))
    if len(raw) != 6:
        raise ValueError(f"not a MAC address: {mac}")
    return raw


def _neighbour(ipr: IPRoute, dst: str, ifindex: int) -> str | None:
    for n in ipr.get_neighbours(dst=dst, ifindex=ifindex):
        if n["state"] & NUD_VALID and n.get_attr("NDA_LLADDR"):
            return n.get_attr("NDA_LLADDR")
    return None


def resolve_nexthop(address: ipaddress.IPv4Address | ipaddress.IPv6Address, timeout: float = 2.0) -> Nexthop:
    """Route lookup, then the neighbour entry of the gateway (or of the address when on-link),
    asking the kernel to resolve it (NTF_USE) and waiting up to `timeout` seconds."""
    with IPRoute() as ipr:
        try:
            route = ipr.route("get", dst=str(address))[0]
        except Exception as e:  # pyroute2 raises NetlinkError with the errno
            raise NexthopError(f"no route to backend {address}: {e}") from e
        oif = route.get_attr("RTA_OIF")
        via = route.get_attr("RTA_GATEWAY") or str(address)
        link = ipr.get_links(oif)[0]
        smac, mtu = link.get_attr("IFLA_ADDRESS"), link.get_attr("IFLA_MTU") or 0
        src = route.get_attr("RTA_PREFSRC")
        deadline = time.monotonic() + timeout
        while True:
            dmac = _neighbour(ipr, via, oif)
            if dmac:
                return Nexthop(oif, smac, dmac, src, mtu)
            if time.monotonic() > deadline:
                raise NexthopError(f"next hop {via} of backend {address} did not answer ARP/ND")
            ipr.neigh("replace", dst=via, ifindex=oif, flags=NTF_USE, state=0)
            time.sleep(0.05)


@contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Run the block inside a network namespace (sockets opened there, BPF devmap/attach there)."""
    netns.pushns(name)
    try:
        yield
    finally:
        netns.popns()


def enter_netns(name: str) -> None:
    """Moves the calling thread into a network namespace for the rest of its life: setns acts on one
    thread, so the others stay where they are. For a worker thread; in_netns's way back is one stack
    per process (pyroute2's pushns/popns), which threads cannot share."""
    netns.setns(name, flags=0)  # flags=0: the namespace must exist (pyroute2 creates it by default)


def create_netns(name: str) -> None:
    netns.create(name)
    with in_netns(name), IPRoute() as ipr:
        ipr.link("set", index=1, state="up")


def remove_netns(name: str) -> None:
    if name in netns.listnetns():
        netns.remove(name)


@dataclass(frozen=True)
class Link:
    name: str
    ifindex: int
    mac: str


def add_veth(name: str, peer: str) -> tuple[Link, Link]:
    """A veth pair in the current namespace, both ends up."""
    with IPRoute() as ipr:
        ipr.link("add", ifname=name, kind="veth", peer=peer)
        links = []
        for ifname in (name, peer):
            idx = ipr.link_lookup(ifname=ifname)[0]
            ipr.link("set", index=idx, state="up")
            links.append(Link(ifname, idx, ipr.get_links(idx)[0].get_attr("IFLA_ADDRESS")))
    return links[0], links[1]


# uapi/linux/if_link.h XDP_ATTACHED_*, as a number or as pyroute2's names for them
XDP_ATTACHED = {1: "native", 2: "generic", 3: "offload", "xdp": "native", "xdpgeneric": "generic",
                "xdpoffload": "offload"}


def xdp_mode(ifname: str) -> str | None:
    """How an XDP program is attached to an interface of the current namespace, or None."""
    with IPRoute() as ipr:
        link = ipr.link("get", ifname=ifname)[0]
        xdp = link.get_attr("IFLA_XDP")
        attached = xdp.get_attr("IFLA_XDP_ATTACHED") if xdp else 0
    return XDP_ATTACHED.get(attached)


def move_link(ifname: str, namespace: str) -> None:
    """Move an interface of the current namespace into another one."""
    with IPRoute() as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname=ifname)[0], net_ns_fd=namespace)


def configure_link(ifname: str, *cidrs: str) -> Link:
    """Bring an interface of the current namespace up with these addresses."""
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=ifname)[0]
        for cidr in cidrs:
            addr, _, plen = cidr.partition("/")
            # IPv6: usable at once, no duplicate address detection (we own the segment)
            flags = IFA_F_NODAD if ":" in addr else 0
            ipr.addr("add", index=idx, address=addr, prefixlen=int(plen), flags=flags)
        ipr.link("set", index=idx, state="up")
        return Link(ifname, idx, ipr.get_links(idx)[0].get_attr("IFLA_ADDRESS"))


def set_link_up(ifname: str, up: bool) -> None:
    """An interface of the current namespace administratively up or down."""
    with IPRoute() as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname=ifname)[0], state="up" if up else "down")


def add_route(dst: str, gateway: str) -> None:
    with IPRoute() as ipr:
        ipr.route("add", dst=dst, gateway=gateway)


def add_bridge(name: str) -> None:
    """A bridge in the current namespace, up (a lab segment)."""
    with IPRoute() as ipr:
        ipr.link("add", ifname=name, kind="bridge")
        ipr.link("set", index=ipr.link_lookup(ifname=name)[0], state="up")


def plug(name: str, peer: str, bridge: str, namespace: str, mac: str) -> None:
    """A veth from a bridge of the current namespace to a host: `peer` stays on the bridge, `name`
    goes into `namespace` with the given MAC (brought up there by the host's role script)."""
    with IPRoute() as ipr:
        ipr.link("add", ifname=name, kind="veth", peer=peer)
        idx = ipr.link_lookup(ifname=name)[0]
        ipr.link("set", index=idx, address=mac)
        pidx = ipr.link_lookup(ifname=peer)[0]
        ipr.link("set", index=pidx, master=ipr.link_lookup(ifname=bridge)[0], state="up")
        ipr.link("set", index=idx, net_ns_fd=namespace)


def namespace_pids(name: str) -> list[int]:
    """Processes living in a namespace (never this one)."""
    return [pid for pid in netns.ns_pids().get(name, []) if pid != os.getpid()]


def addresses(ifname: str) -> list[str]:
    """The global addresses of an interface of the current namespace, as CIDR strings."""
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=ifname)
        if not idx:
            return []
        return [f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}" for a in ipr.get_addr(index=idx[0])
                if a["scope"] == 0]


def local_addresses() -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Every global address of the current namespace, on any interface (loopback's VIPs too): the
    addresses the kernel takes as its own."""
    with IPRoute() as ipr:
        return [ipaddress.ip_address(a.get_attr("IFA_LOCAL") or a.get_attr("IFA_ADDRESS"))
                for a in ipr.get_addr() if a["scope"] == 0]


def list_netns() -> list[str]:
    return list(netns.listnetns())


# ---- VRRP: the VIPs moving between directors -------------------------------------------------

IFF_UP, IFF_LOWER_UP = 0x1, 0x10000
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
RT_SCOPE_LINK = 253
AF = {4: socket.AF_INET, 6: socket.AF_INET6}


@dataclass(frozen=True)
class LinkState:
    ifindex: int
    mac: str
    up: bool  # administratively up with carrier: frames can leave


def link_state(ifname: str) -> LinkState | None:
    """An interface of the current namespace, or None when there is none by that name."""
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=ifname)
        if not idx:
            return None
        link = ipr.get_links(idx[0])[0]
        flags = link["flags"]
        return LinkState(idx[0], link.get_attr("IFLA_ADDRESS"), bool(flags & IFF_UP and flags & IFF_LOWER_UP))


def primary_address(ifname: str, family: int, exclude: frozenset = frozenset()) -> IPAddress | None:
    """The address an interface speaks from: its first global IPv4 address, or its IPv6 link-local
    address (RFC 5798 5.1.2.1), leaving out `exclude` (the VIPs it may hold)."""
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=ifname)
        if not idx:
            return None
        want_scope = 0 if family == 4 else RT_SCOPE_LINK
        for a in ipr.get_addr(index=idx[0], family=AF[family]):
            addr = ipaddress.ip_address(a.get_attr("IFA_LOCAL") or a.get_attr("IFA_ADDRESS"))
            if a["scope"] == want_scope and addr not in exclude:
                return addr
    return None


def set_addresses(addresses: list[tuple[str, ipaddress.IPv4Interface | ipaddress.IPv6Interface]],
                  present: bool) -> list[str]:
    """Adds or removes (interface, address) pairs in the current namespace, over one netlink socket
    (a failover waits on this); adding one that is there, or removing one that is not, is no error.
    What could not be done, one line each: the others are done all the same."""
    problems = []
    with IPRoute() as ipr:
        for ifname, interface in addresses:
            try:
                _set_address(ipr, ifname, interface, present)
            except Exception as e:  # pyroute2's NetlinkError, or the interface gone
                problems.append(f"{'add' if present else 'remove'} {interface} on {ifname}: {e}")
    return problems


def _set_address(ipr: IPRoute, ifname: str, interface: ipaddress.IPv4Interface | ipaddress.IPv6Interface,
                 present: bool) -> None:
    idx = ipr.link_lookup(ifname=ifname)
    if not idx:
        raise OSError(f"no interface {ifname}")
    there = any(ipaddress.ip_address(a.get_attr("IFA_ADDRESS")) == interface.ip
                and a["prefixlen"] == interface.network.prefixlen
                for a in ipr.get_addr(index=idx[0], family=AF[interface.version]))
    if there != present:
        flags = IFA_F_NODAD if interface.version == 6 else 0
        ipr.addr("add" if present else "del", index=idx[0], address=str(interface.ip),
                 prefixlen=interface.network.prefixlen, flags=flags)
