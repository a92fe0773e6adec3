"""VRRPv3 advertisements: round trips, checksums against scapy's own VRRPv3 layer (the independent oracle),
every malformed input as an AdvertError, the RFC 5798 timers, the frame, and one real keepalived advert."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path

import pytest
from scapy.layers.inet import IP, in4_chksum
from scapy.layers.inet6 import IPv6, in6_chksum
from scapy.layers.l2 import Ether, getmacbyip
from scapy.layers.vrrp import VRRP, VRRPv3
from scapy.utils import checksum as scapy_checksum
from scapy.utils6 import in6_getnsmac

from xdplb.vrrp.packet import (
    GROUP4,
    GROUP6,
    Advert,
    AdvertError,
    Received,
    build_frame,
    decode,
    encode,
    master_down_interval,
    multicast_mac,
    skew_time,
    validate,
    virtual_mac,
)

SRC4, PEER4 = IPv4Address("10.100.0.2"), IPv4Address("10.100.0.3")
SRC6, PEER6 = IPv6Address("fe80::2"), IPv6Address("fe80::3")
ENDS = {4: (SRC4, GROUP4), 6: (SRC6, GROUP6)}
REASONS = {"short", "version", "type", "vrid", "interval", "count", "family", "checksum"}


def addrs4(n: int) -> tuple[IPv4Address, ...]:
    return tuple(IPv4Address("10.100.0.100") + i for i in range(n))


def addrs6(n: int) -> tuple[IPv6Address, ...]:
    return (IPv6Address("fe80::100"), *(IPv6Address("fd00:100::100") + i for i in range(n - 1)))


def addrs(family: int, n: int) -> tuple[IPv4Address, ...] | tuple[IPv6Address, ...]:
    return addrs4(n) if family == 4 else addrs6(n)


def scapy_message(advert: Advert, source, destination) -> bytes:
    """The same advertisement built by scapy, whose VRRPv3 layer sums the pseudo-header itself."""
    ends = {"src": str(source), "dst": str(destination)}
    ip = IP(**ends) if source.version == 4 else IPv6(**ends)
    vrrp = VRRPv3(vrid=advert.vrid, priority=advert.priority, adv=advert.interval_cs,
                  addrlist=[str(a) for a in advert.addresses])
    return bytes(ip / vrrp)[20 if source.version == 4 else 40:]


def raw(family: int = 4, version_type: int = 0x31, vrid: int = 1, priority: int = 100, count: int = 1,
        word: int = 100, body: bytes | None = None, pseudo_header: bool = True) -> bytes:
    """Any message at all, with a correct checksum computed by scapy (not by the code under test)."""
    source, destination = ENDS[family]
    body = addrs(family, 1)[0].packed if body is None else body
    message = struct.pack("!BBBBHH", version_type, vrid, priority, count, word, 0) + body
    if not pseudo_header:
        ck = scapy_checksum(message)
    elif family == 4:
        ck = in4_chksum(112, IP(src=str(source), dst=str(destination)), message)
    else:
        ck = in6_chksum(112, IPv6(src=str(source), dst=str(destination)), message)
    return message[:6] + struct.pack("!H", ck) + message[8:]


# -- round trips and the oracle ------------------------------------------------------------------------------

@pytest.mark.unit
@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("n", [1, 2, 7, 255])
@pytest.mark.parametrize(("priority", "interval"), [(100, 100), (0, 1), (255, 4095)])
def test_round_trip(family, n, priority, interval):
    advert = Advert(vrid=42, priority=priority, interval_cs=interval, addresses=addrs(family, n))
    source, destination = ENDS[family]
    message = encode(advert, source, destination)
    assert len(message) == 8 + n * (4 if family == 4 else 16)
    assert decode(message, source, destination) == Received(advert, pseudo_header=True)


@pytest.mark.unit
@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize(("vrid", "priority", "interval", "n"),
                         [(1, 100, 100, 1), (42, 150, 25, 3), (255, 255, 4095, 20)])
@pytest.mark.parametrize("unicast", [False, True])
def test_bytes_match_scapy(family, vrid, priority, interval, n, unicast):
    source, destination = ENDS[family]
    if unicast:  # the pseudo-header holds the peer's address then, not the group's
        destination = PEER4 if family == 4 else PEER6
    advert = Advert(vrid, priority, interval, addrs(family, n))
    assert encode(advert, source, destination) == scapy_message(advert, source, destination)


@pytest.mark.unit
def test_ipv4_without_pseudo_header_is_accepted_and_reported():
    advert = Advert(7, 100, 100, addrs4(3))
    message = encode(advert, SRC4, GROUP4, pseudo_header=False)
    header = message[:6] + b"\0\0" + message[8:]
    assert struct.unpack("!H", message[6:8])[0] == scapy_checksum(header)  # VRRPv2's way: the message alone
    assert message != encode(advert, SRC4, GROUP4)
    assert decode(message, SRC4, GROUP4) == Received(advert, pseudo_header=False)


@pytest.mark.unit
def test_ipv6_requires_the_pseudo_header():
    message = raw(6, pseudo_header=False)
    with pytest.raises(AdvertError) as e:
        decode(message, SRC6, GROUP6)
    assert e.value.reason == "checksum"
    with pytest.raises(ValueError, match="pseudo-header"):
        encode(Advert(1, 100, 100, addrs6(1)), SRC6, GROUP6, pseudo_header=False)


@pytest.mark.unit
def test_reserved_bits_are_ignored_on_receive():
    received = decode(raw(word=0xF000 | 100), SRC4, GROUP4)
    assert received.advert.interval_cs == 100
    assert encode(received.advert, SRC4, GROUP4)[4] & 0xF0 == 0  # and zero on send


# -- malformed input -----------------------------------------------------------------------------------------

VRRPV2 = bytes(IP(src=str(SRC4), dst=str(GROUP4)) / VRRP(vrid=1, priority=100, addrlist=[str(addrs4(1)[0])]))[20:]

MALFORMED = [
    ("empty", 4, b"", "short"),
    ("seven-bytes", 4, raw()[:7], "short"),
    ("vrrpv2", 4, VRRPV2, "version"),
    ("version-2", 4, raw(version_type=0x21), "version"),
    ("version-4-v6", 6, raw(6, version_type=0x41), "version"),
    ("type-0", 4, raw(version_type=0x30), "type"),
    ("type-2", 6, raw(6, version_type=0x32), "type"),
    ("vrid-0", 4, raw(vrid=0), "vrid"),
    ("vrid-0-v6", 6, raw(6, vrid=0), "vrid"),
    ("interval-0", 4, raw(word=0), "interval"),
    ("interval-0-reserved-set", 4, raw(word=0xF000), "interval"),
    ("count-0", 4, raw(count=0, body=b""), "count"),
    ("count-0-with-address", 4, raw(count=0), "count"),
    ("count-2-one-address", 4, raw(count=2), "count"),
    ("address-cut", 4, raw(body=b"\x0a\x64\x00"), "count"),
    ("address-extra-bytes", 4, raw(body=bytes(6)), "count"),
    ("v6-count-2-one-address", 6, raw(6, count=2), "count"),
    ("v6-address-in-v4", 4, raw(body=addrs6(1)[0].packed), "family"),
    ("v4-address-in-v6", 6, raw(6, body=addrs4(1)[0].packed), "family"),
    ("four-v4-addresses-in-v6", 6, raw(6, count=4, body=b"".join(a.packed for a in addrs4(4))), "family"),
    ("checksum-zero", 4, raw()[:6] + b"\0\0" + raw()[8:], "checksum"),
    ("checksum-v6-as-v4", 6, raw(4)[:8] + addrs6(1)[0].packed, "checksum"),
]


@pytest.mark.unit
@pytest.mark.parametrize(("family", "payload", "reason"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed(family, payload, reason):
    with pytest.raises(AdvertError) as e:
        decode(payload, *ENDS[family])
    assert e.value.reason == reason


def _variants() -> list[tuple[int, bytes]]:
    return [(4, encode(Advert(42, 150, 100, addrs4(3)), SRC4, GROUP4)),
            (4, encode(Advert(42, 150, 100, addrs4(3)), SRC4, GROUP4, pseudo_header=False)),
            (6, encode(Advert(42, 150, 100, addrs6(2)), SRC6, GROUP6))]


@pytest.mark.unit
@pytest.mark.parametrize(("family", "message"), _variants(), ids=["v4", "v4-no-pseudo", "v6"])
def test_truncated_at_every_length(family, message):
    for length in range(len(message)):
        with pytest.raises(AdvertError) as e:
            decode(message[:length], *ENDS[family])
        # a cut that drops only zero bytes keeps a sum without pseudo-header intact: the length check catches it
        assert e.value.reason in ({"short"} if length < 8 else {"checksum", "count"}), length


@pytest.mark.unit
@pytest.mark.parametrize(("family", "message"), _variants(), ids=["v4", "v4-no-pseudo", "v6"])
def test_any_flipped_bit_is_a_checksum_error(family, message):
    # For IPv4 this holds because these addresses' pseudo-header sum is no power of two modulo 0xFFFF
    # (else the flip would pass as the other checksum variant: see decode's docstring).
    for bit in range(len(message) * 8):
        flipped = bytearray(message)
        flipped[bit // 8] ^= 0x80 >> bit % 8
        with pytest.raises(AdvertError) as e:
            decode(bytes(flipped), *ENDS[family])
        assert e.value.reason == "checksum", bit


@pytest.mark.unit
def test_random_bytes_raise_only_advert_errors():
    rng = random.Random(5798)
    base = _variants()
    for _ in range(3000):
        family, message = rng.choice(base)
        junk = bytearray(message[:rng.randrange(len(message) + 8)] + rng.randbytes(rng.randrange(8)))
        for _ in range(rng.randrange(4)):
            if junk:
                junk[rng.randrange(len(junk))] = rng.randrange(256)
        try:
            decode(bytes(junk), *ENDS[family])
        except AdvertError as e:
            assert e.reason in REASONS


@pytest.mark.unit
@pytest.mark.parametrize(("advert", "source", "destination", "match"), [
    (Advert(0, 100, 100, addrs4(1)), SRC4, GROUP4, "VRID"),
    (Advert(256, 100, 100, addrs4(1)), SRC4, GROUP4, "VRID"),
    (Advert(1, -1, 100, addrs4(1)), SRC4, GROUP4, "priority"),
    (Advert(1, 256, 100, addrs4(1)), SRC4, GROUP4, "priority"),
    (Advert(1, 100, 0, addrs4(1)), SRC4, GROUP4, "interval"),
    (Advert(1, 100, 4096, addrs4(1)), SRC4, GROUP4, "interval"),
    (Advert(1, 100, 100, ()), SRC4, GROUP4, "count"),
    (Advert(1, 100, 100, addrs4(256)), SRC4, GROUP4, "count"),
    (Advert(1, 100, 100, addrs6(1)), SRC4, GROUP4, "not IPv4"),
    (Advert(1, 100, 100, addrs4(1), version=2), SRC4, GROUP4, "VRRPv3"),
    (Advert(1, 100, 100, addrs4(1)), SRC4, GROUP6, "one family"),
])
def test_encode_refuses_out_of_range_fields(advert, source, destination, match):
    with pytest.raises(ValueError, match=match):
        encode(advert, source, destination)


# -- receive checks and timers -------------------------------------------------------------------------------

@pytest.mark.unit
def test_validate():
    received = decode(encode(Advert(42, 100, 100, addrs4(2)), SRC4, GROUP4), SRC4, GROUP4)
    assert validate(received, 255, 42) == []
    assert validate(received, 255, 42, {"10.100.0.100", IPv4Address("10.100.0.101")}) == []
    for ttl, vrid, reason in [(254, 42, "ttl"), (64, 42, "ttl"), (255, 41, "other_vrid")]:
        with pytest.raises(AdvertError) as e:
            validate(received, ttl, vrid)
        assert e.value.reason == reason


@pytest.mark.unit
def test_validate_warns_on_other_addresses_but_accepts():
    received = Received(Advert(42, 100, 100, (ip_address("10.100.0.100"), ip_address("10.100.0.100"),
                                              ip_address("10.100.0.7"))), True)
    warnings = validate(received, 255, 42, {"10.100.0.100", "10.100.0.101"})
    assert warnings == ["the advertisement lacks 10.100.0.101", "the advertisement has unexpected 10.100.0.7",
                        "the advertisement repeats an address"]


@pytest.mark.unit
def test_timers_rfc_example():
    assert skew_time(100, 100) == 0.609375  # (256 - 100) * 100 / 256 = 60.9375 cs
    assert master_down_interval(100, 100) == 3.609375
    assert skew_time(100, 255) == 0.00390625 and master_down_interval(100, 255) == 3.00390625
    assert master_down_interval(4095, 1) == pytest.approx(3 * 40.95 + 255 * 40.95 / 256)
    for args in [(0, 100), (4096, 100), (100, 256), (100, -1)]:
        with pytest.raises(ValueError):
            master_down_interval(*args)


@pytest.mark.unit
def test_macs():
    assert virtual_mac(1, 4) == "00:00:5e:00:01:01"
    assert virtual_mac(255, 6) == "00:00:5e:00:02:ff"
    for vrid, family in [(0, 4), (256, 6), (1, 5)]:
        with pytest.raises(ValueError):
            virtual_mac(vrid, family)
    assert multicast_mac(GROUP4) == getmacbyip(str(GROUP4))
    assert multicast_mac(IPv4Address("239.129.2.3")) == getmacbyip("239.129.2.3")  # the 24th bit is dropped
    assert multicast_mac(GROUP6) == in6_getnsmac(GROUP6.packed)
    with pytest.raises(ValueError, match="peer's MAC"):
        multicast_mac(PEER4)


# -- the frame -----------------------------------------------------------------------------------------------

@pytest.mark.unit
@pytest.mark.parametrize("family", [4, 6])
def test_build_frame_parsed_by_scapy(family):
    source, destination = ENDS[family]
    advert = Advert(42, 150, 100, addrs(family, 2))
    frame = build_frame(advert, source, destination)
    pkt = Ether(frame)
    assert pkt.src == virtual_mac(42, family)
    assert pkt.dst == ("01:00:5e:00:00:12" if family == 4 else "33:33:00:00:00:12")
    if family == 4:
        ip = pkt[IP]
        assert (ip.ttl, ip.tos, ip.proto, ip.len, ip.flags) == (255, 0xC0, 112, len(frame) - 14, "DF")
        del ip.chksum
    else:
        ip = pkt[IPv6]
        assert (ip.hlim, ip.tc, ip.nh, ip.plen, ip.fl) == (255, 0xC0, 112, len(frame) - 54, 0)
    assert (ip.src, ip.dst) == (str(source), str(destination))
    vrrp = pkt[VRRPv3]
    assert (vrrp.version, vrrp.type, vrrp.vrid, vrrp.priority, vrrp.adv, vrrp.ipcount) == (3, 1, 42, 150, 100, 2)
    assert vrrp.addrlist == [str(a) for a in advert.addresses]
    del vrrp.chksum
    assert bytes(pkt) == frame  # scapy recomputes both checksums (IPv4 header, VRRP) and finds ours


@pytest.mark.unit
def test_build_frame_unicast_and_own_mac():
    advert = Advert(42, 150, 100, addrs4(1))
    frame = build_frame(advert, SRC4, PEER4, "02:00:00:00:00:02", dst_mac="02:00:00:00:00:03")
    pkt = Ether(frame)
    assert (pkt.src, pkt.dst, pkt[IP].dst) == ("02:00:00:00:00:02", "02:00:00:00:00:03", str(PEER4))
    assert decode(frame[34:], SRC4, PEER4).advert == advert
    assert decode(build_frame(advert, SRC4, GROUP4, pseudo_header=False)[34:], SRC4, GROUP4).pseudo_header is False
    with pytest.raises(ValueError, match="peer's MAC"):
        build_frame(advert, SRC4, PEER4)


# -- a real keepalived ---------------------------------------------------------------------------------------

KEEPALIVED_CONF = """
global_defs {
    vrrp_version 3
    router_id xdplb-test
}
vrrp_instance VI_1 {
    state MASTER
    interface %s
    virtual_router_id 42
    priority 255
    advert_int 1
    virtual_ipaddress {
        10.77.0.100/24
    }
}
"""
ETH_P_IP = 0x0800


@contextmanager
def _keepalived(ns: str, ifname: str, workdir: Path) -> Iterator[Path]:
    """keepalived's VRRP process in a namespace; stopped by its pid file (the parent takes the child along).
    Priority 255 makes it master at once instead of after the master down interval."""
    conf, pidfile, log = workdir / "keepalived.conf", workdir / "keepalived.pid", workdir / "keepalived.log"
    conf.write_text(KEEPALIVED_CONF % ifname)
    with open(log, "wb") as out:
        proc = subprocess.Popen(["ip", "netns", "exec", ns, "keepalived", "--dont-fork", "--log-console",
                                 "--no-syslog", "--vrrp", f"--pid={pidfile}", f"--vrrp_pid={workdir / 'vrrp.pid'}",
                                 "-f", str(conf)], stdout=out, stderr=subprocess.STDOUT)
    try:
        yield log
    finally:
        try:
            os.kill(int(pidfile.read_text()), signal.SIGTERM)
        except (OSError, ValueError):
            proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _first_vrrp_frame(sock: socket.socket, timeout: float) -> bytes | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            frame = sock.recv(2048)
        except TimeoutError:
            continue
        if len(frame) > 34 and frame[23] == 112:
            return frame
    return None


@pytest.mark.ha
def test_real_keepalived_advert_decodes(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("namespaces need root")
    if shutil.which("keepalived") is None:
        pytest.skip("keepalived is not installed")
    from xdplb.net import add_veth, configure_link, create_netns, in_netns, remove_netns

    ns = f"xdplbvrrp-{os.getpid()}"
    remove_netns(ns)
    create_netns(ns)
    try:
        with in_netns(ns):
            add_veth("kv-b", "kv-a")
            link = configure_link("kv-a", "10.77.0.2/24")
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
        with sock:
            sock.bind(("kv-b", 0))
            sock.settimeout(0.5)
            with _keepalived(ns, "kv-a", tmp_path) as log:
                frame = _first_vrrp_frame(sock, timeout=10)
            assert frame is not None, f"no advert from keepalived:\n{log.read_text()}"
    finally:
        remove_netns(ns)
    pkt = Ether(frame)
    ip = pkt[IP]
    payload = bytes(ip)[ip.ihl * 4:ip.len]
    received = decode(payload, ip_address(ip.src), ip_address(ip.dst))
    assert received == Received(Advert(42, 255, 100, (IPv4Address("10.77.0.100"),)), pseudo_header=True)
    assert validate(received, ip.ttl, 42, {"10.77.0.100"}) == []
    # keepalived marks CS6 and, through its raw IP socket, sends from the interface's MAC, not the virtual one
    assert (ip.tos, ip.dst, pkt.dst, pkt.src) == (0xC0, str(GROUP4), multicast_mac(GROUP4), link.mac)
