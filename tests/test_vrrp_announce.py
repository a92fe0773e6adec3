"""A new master's announcements: the frames against scapy (the independent oracle, checksum included), then
for real between two namespaces: the peer's kernel moves the virtual addresses to the sender's MAC, the
failover case of a neighbour that had the old master's; and an interface that goes away is logged, not raised."""

from __future__ import annotations

import logging
import os
import random
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

import pytest
from pyroute2 import IPRoute
from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6NDOptDstLLAddr, IPv6, in6_chksum
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Padding

from xdplb.net import add_veth, configure_link, create_netns, in_netns, move_link, remove_netns
from xdplb.vrrp.announce import Announcer, garp_frame, unsolicited_na_frame

pytestmark = pytest.mark.ha

MAC = "02:00:00:64:00:02"
OLD_MAC = "02:00:00:64:00:99"  # the old master's, in the peer's cache before the failover
LINK_LOCAL = IPv6Address("fe80::2")
VIP4, VIP6 = IPv4Address("10.100.0.100"), IPv6Address("fd00:100::100")
NUD_STALE = 0x04
NUD_VALID = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80
ETH_P_ALL = 0x0003


# ---- the frames, decoded by scapy


def test_garp_is_a_broadcast_request_for_the_address_from_our_mac():
    frame = garp_frame(MAC, VIP4)
    pkt = Ether(frame)
    assert (pkt.dst, pkt.src, pkt.type) == ("ff:ff:ff:ff:ff:ff", MAC, 0x0806)
    arp = pkt[ARP]
    assert (arp.hwtype, arp.ptype, arp.hwlen, arp.plen, arp.op) == (1, 0x0800, 6, 4, 1)
    assert (arp.hwsrc, arp.psrc, arp.hwdst, arp.pdst) == (MAC, str(VIP4), "00:00:00:00:00:00", str(VIP4))
    assert len(frame) == 60 and pkt[Padding].load == bytes(18)  # the Ethernet minimum, zero padded


def test_garp_equals_scapys_own():
    expected = Ether(dst="ff:ff:ff:ff:ff:ff", src=MAC) / ARP(op=1, hwsrc=MAC, psrc=str(VIP4),
                                                            hwdst="00:00:00:00:00:00", pdst=str(VIP4))
    assert garp_frame(MAC, VIP4) == bytes(expected).ljust(60, b"\0")


def test_na_is_an_unsolicited_override_to_all_nodes():
    pkt = Ether(unsolicited_na_frame(MAC, LINK_LOCAL, VIP6))
    assert (pkt.dst, pkt.src, pkt.type) == ("33:33:00:00:00:01", MAC, 0x86DD)
    ip = pkt[IPv6]
    assert (ip.src, ip.dst, ip.hlim, ip.nh, ip.plen, ip.tc, ip.fl) == (str(LINK_LOCAL), "ff02::1", 255, 58, 32, 0, 0)
    na = pkt[ICMPv6ND_NA]
    assert (na.type, na.code, na.R, na.S, na.O, na.tgt) == (136, 0, 0, 0, 1, str(VIP6))
    option = pkt[ICMPv6NDOptDstLLAddr]  # type 2: the Target Link-Layer Address
    assert (option.type, option.len, option.lladdr) == (2, 1, MAC)
    assert not option.payload


@pytest.mark.parametrize("seed", range(20))
def test_na_checksum_is_scapys(seed):
    rng = random.Random(seed)
    mac = ":".join(f"{b:02x}" for b in [0x02, *rng.randbytes(5)])
    source = IPv6Address("fe80::") + rng.getrandbits(64)
    address = IPv6Address(rng.getrandbits(128))
    frame = unsolicited_na_frame(mac, source, address)
    pkt = Ether(frame)
    ours = pkt[ICMPv6ND_NA].cksum
    del pkt[ICMPv6ND_NA].cksum
    assert Ether(bytes(pkt))[ICMPv6ND_NA].cksum == ours
    assert in6_chksum(58, pkt[IPv6], bytes(Ether(frame)[ICMPv6ND_NA])) == 0  # sums to zero with it in place
    assert frame == bytes(Ether(dst="33:33:00:00:00:01", src=mac) / IPv6(src=str(source), dst="ff02::1", hlim=255)
                          / ICMPv6ND_NA(R=0, S=0, O=1, tgt=str(address)) / ICMPv6NDOptDstLLAddr(lladdr=mac))


def test_a_malformed_mac_is_refused():
    with pytest.raises(ValueError):
        garp_frame("02:00:00:64:00", VIP4)
    with pytest.raises(ValueError):
        unsolicited_na_frame("02:00:00:64:00:02:03", LINK_LOCAL, VIP6)


# ---- for real, between two namespaces


@dataclass(frozen=True)
class Pair:
    sender: str   # the namespace of the new master, holding "ann-a"
    peer: str     # its neighbour's, holding "ann-b"
    mac: str      # ann-a's


def _sysctl(path: str, value: int) -> None:
    """A sysctl of the current namespace: /proc/sys/net follows the namespace of whoever opens it."""
    with open(f"/proc/sys/net/{path}", "w") as f:
        f.write(str(value))


def _wait_for(predicate: Callable[[], object], timeout: float = 3.0) -> object:
    deadline = time.monotonic() + timeout
    while not (result := predicate()) and time.monotonic() < deadline:
        time.sleep(0.02)
    return result


def _link_local(ifname: str) -> IPv6Address | None:
    with IPRoute() as ipr:
        for a in ipr.get_addr(index=ipr.link_lookup(ifname=ifname)[0], family=socket.AF_INET6):
            address = IPv6Address(a.get_attr("IFA_ADDRESS"))
            if address.is_link_local and not (a.get_attr("IFA_FLAGS") or a["flags"]) & 0x40:  # tentative
                return address
    return None


def _neighbour(ifname: str, address: IPv4Address | IPv6Address) -> tuple[str | None, int]:
    """The MAC and NUD state of an entry of the current namespace's neighbour table; (None, 0) if none."""
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    with IPRoute() as ipr:
        index = ipr.link_lookup(ifname=ifname)[0]
        for n in ipr.get_neighbours(family=family, dst=str(address), ifindex=index):
            return n.get_attr("NDA_LLADDR"), n["state"]
    return None, 0


def _add_stale(ifname: str, address: IPv4Address | IPv6Address, mac: str) -> None:
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    with IPRoute() as ipr:
        ipr.neigh("add", family=family, dst=str(address), lladdr=mac, state=NUD_STALE,
                  ifindex=ipr.link_lookup(ifname=ifname)[0])


def _learned(pair: Pair, address: IPv4Address | IPv6Address) -> tuple[str | None, int]:
    """The peer's entry for the address once it holds the sender's MAC (or what it holds at the timeout)."""
    with in_netns(pair.peer):
        _wait_for(lambda: _neighbour("ann-b", address)[0] == pair.mac)
        return _neighbour("ann-b", address)


def _announce(pair: Pair, *addresses: IPv4Address | IPv6Address) -> int:
    with in_netns(pair.sender), Announcer("ann-a") as announcer:
        return announcer.announce(addresses)


def _make_netns(name: str) -> None:
    remove_netns(name)
    create_netns(name)
    with in_netns(name):
        _sysctl("ipv6/conf/default/accept_dad", 0)  # link-local addresses usable at once, for interfaces to come


@pytest.fixture
def pair() -> Iterator[Pair]:
    """Two namespaces joined by a veth; both removed afterwards, whatever happened (the veth goes with them)."""
    if os.geteuid() != 0:
        pytest.skip("namespaces need root")
    prefix = f"xdplb-test-ann-{os.getpid()}"
    sender, peer = f"{prefix}-a", f"{prefix}-b"
    try:
        _make_netns(sender)
        _make_netns(peer)
        with in_netns(sender):
            add_veth("ann-a", "ann-b")
            move_link("ann-b", peer)
            link = configure_link("ann-a", "10.100.0.2/24", "fd00:100::2/64")
        with in_netns(peer):
            configure_link("ann-b", "10.100.0.3/24", "fd00:100::3/64")
        with in_netns(sender):
            assert _wait_for(lambda: _link_local("ann-a")), "ann-a got no link-local address"
        yield Pair(sender, peer, link.mac)
    finally:
        remove_netns(sender)
        remove_netns(peer)


def test_garp_moves_an_existing_entry_to_the_new_master(pair):
    with in_netns(pair.peer):
        _add_stale("ann-b", VIP4, OLD_MAC)
        assert _neighbour("ann-b", VIP4)[0] == OLD_MAC
    assert _announce(pair, VIP4) == 1
    mac, state = _learned(pair, VIP4)
    assert mac == pair.mac and state & NUD_VALID


def test_garp_creates_an_entry_where_arp_accept_is_set(pair):
    with in_netns(pair.peer):
        _sysctl("ipv4/conf/ann-b/arp_accept", 1)
        assert _neighbour("ann-b", VIP4) == (None, 0)
    assert _announce(pair, VIP4) == 1
    mac, state = _learned(pair, VIP4)
    assert mac == pair.mac and state & NUD_VALID


def test_na_overrides_an_existing_entry(pair):
    with in_netns(pair.peer):
        _add_stale("ann-b", VIP6, OLD_MAC)
        assert _neighbour("ann-b", VIP6)[0] == OLD_MAC
    assert _announce(pair, VIP6) == 1
    mac, state = _learned(pair, VIP6)
    assert mac == pair.mac and state == NUD_STALE  # unsolicited: stale until confirmed (RFC 4861 7.2.5)


def test_na_creates_an_entry_on_a_router_accepting_untracked_na(pair):
    with in_netns(pair.peer):  # RFC 9131: a router may learn from an NA it did not ask for
        _sysctl("ipv6/conf/ann-b/forwarding", 1)
        _sysctl("ipv6/conf/ann-b/accept_untracked_na", 1)
    assert _announce(pair, VIP6) == 1
    mac, state = _learned(pair, VIP6)
    assert mac == pair.mac and state & NUD_VALID


def test_the_exact_frames_arrive(pair):
    with in_netns(pair.peer):
        capture = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    with capture:
        capture.bind(("ann-b", 0))
        capture.settimeout(0.2)
        with in_netns(pair.sender):
            expected = {garp_frame(pair.mac, VIP4), unsolicited_na_frame(pair.mac, _link_local("ann-a"), VIP6)}
        assert _announce(pair, VIP4, VIP6) == 2
        assert _receive(capture, expected) == expected


def _receive(sock: socket.socket, wanted: set[bytes], timeout: float = 3.0) -> set[bytes]:
    """Which of the wanted frames arrive within the timeout (the peer's own ND and MLD are let pass)."""
    seen: set[bytes] = set()
    deadline = time.monotonic() + timeout
    while seen != wanted and time.monotonic() < deadline:
        try:
            frame = sock.recv(2048)
        except TimeoutError:
            continue
        seen |= {frame} & wanted
    return seen


def test_ipv6_is_skipped_without_a_link_local_address(pair, caplog):
    with in_netns(pair.sender), IPRoute() as ipr:
        ipr.addr("del", index=ipr.link_lookup(ifname="ann-a")[0], address=str(_link_local("ann-a")), prefixlen=64)
    with in_netns(pair.peer):
        _sysctl("ipv4/conf/ann-b/arp_accept", 1)
    with caplog.at_level(logging.WARNING, logger="xdplb.vrrp.announce"):
        assert _announce(pair, VIP6, VIP4) == 1
    assert f"ann-a has no usable link-local address (none, or still tentative): not announcing {VIP6}" in caplog.text
    assert _learned(pair, VIP4)[0] == pair.mac  # the IPv4 address after it still went


def test_a_link_down_is_logged_and_counted(pair, caplog):
    with in_netns(pair.sender), IPRoute() as ipr, Announcer("ann-a") as announcer:
        ipr.link("set", index=ipr.link_lookup(ifname="ann-a")[0], state="down")
        with caplog.at_level(logging.WARNING, logger="xdplb.vrrp.announce"):
            assert announcer.announce([VIP4, VIP6]) == 0
    assert "ann-a: announced 0 of" in caplog.text


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("namespaces need root")
    name = f"xdplb-test-ann-{os.getpid()}-x"
    try:
        _make_netns(name)
        yield name
    finally:
        remove_netns(name)


def test_a_vanished_interface_is_logged_not_raised_and_its_successor_used(netns, caplog):
    with in_netns(netns):
        add_veth("ann-x", "ann-y")
        with Announcer("ann-x") as announcer:
            with IPRoute() as ipr:
                ipr.link("del", ifname="ann-x")
            with caplog.at_level(logging.WARNING, logger="xdplb.vrrp.announce"):
                assert announcer.announce([VIP4, VIP6]) == 0
            assert "ann-x: cannot announce 2 addresses: no such interface" in caplog.text
            add_veth("ann-x", "ann-y")  # made again under the same name: sent by name, it gets the frames
            assert announcer.announce([VIP4]) == 1


def test_a_missing_interface_is_refused_at_once(netns):
    with in_netns(netns), pytest.raises(OSError):
        Announcer("ann-none")


def test_nothing_to_announce_sends_nothing(netns):
    with in_netns(netns):
        add_veth("ann-x", "ann-y")
        with Announcer("ann-x") as announcer:
            assert announcer.announce([]) == 0
