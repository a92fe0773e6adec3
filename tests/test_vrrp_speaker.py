"""Real VRRP speakers exchanging real adverts between network namespaces: no mocks.

The LAN is a bridge in a namespace of its own (`sw`); every host (`a`, `b`, and `x`, a forger) is a
namespace plugged into it by a veth whose host end is named `front`. The bridge lets a test act on
one host's link without the others noticing: deleting a host's port kills its `front` (the host dies,
seen from the LAN, with no chance of a priority 0 advert), taking a port off the bridge isolates a host
whose link stays up (split brain). Each speaker runs in a thread of this process that entered its
host's namespace; the tests steer and watch it through its control socket only.

Deadlines are generous and nothing asserts speed, except the graceful shutdown, where the take-over
time is what proves the priority 0 advert was honoured."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path

import pytest

from xdplb import net
from xdplb.vrrp.config import HaSettings, Instance
from xdplb.vrrp.control import SpeakerClient, SpeakerError
from xdplb.vrrp.packet import (
    GROUP4,
    PROTO_VRRP,
    Advert,
    AdvertError,
    decode,
    encode,
    internet_checksum,
    master_down_interval,
    pseudo_header,
)
from xdplb.vrrp.speaker import Speaker

pytestmark = pytest.mark.ha

PREFIX = f"xdplb-test-vrrp-{os.getpid()}"
HOSTS = {"a": "10.97.0.2", "b": "10.97.0.3", "x": "10.97.0.9"}
VIP, VIP6 = "10.97.0.100/32", "fd00:97::100/128"
VRID = 51
INTERVAL = 0.1   # master-down ~0.36 s at priority 100: quick, yet far above a thread's scheduling hiccups
WAIT = 10.0      # the generous deadline of every wait


# ---- the LAN ---------------------------------------------------------------------------------


def ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def wait_for(predicate: Callable[[], object], what: str, timeout: float = WAIT) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s: {what}")
        time.sleep(0.02)


class Node:
    """A speaker in its own thread, inside a host's namespace."""

    def __init__(self, lan: Lan, host: str, settings: HaSettings, sock: Path) -> None:
        self.lan, self.host, self.ns = lan, host, lan.ns(host)
        self.speaker = Speaker(settings, sock)
        self.client = SpeakerClient(sock, timeout=3.0)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, name=f"speaker-{host}", daemon=True)

    def _main(self) -> None:
        try:
            net.enter_netns(self.ns)
            self.speaker.open()
            self.speaker.run()
        except BaseException as e:  # reported by the test, not lost in the thread
            self.error = e

    def start(self) -> Node:
        self.thread.start()
        wait_for(lambda: self._check() or self.client.alive(), f"the speaker of {self.host} answers")
        return self

    def _check(self) -> None:
        if self.error is not None:
            raise AssertionError(f"the speaker of {self.host} failed: {self.error!r}") from self.error

    def stop(self) -> None:
        """speaker.stop(), the select loop woken at once (as a signal does), the thread joined."""
        self.speaker.stop()
        with contextlib.suppress(OSError):
            os.write(self.speaker._wake_w, b"\0")
        self.thread.join(WAIT)
        assert not self.thread.is_alive(), f"the speaker of {self.host} did not stop"
        self._check()

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    def status(self) -> dict:
        self._check()
        return self.client.status()["instances"][0]

    @property
    def state(self) -> str:
        return self.status()["state"]

    def vips(self) -> set[str]:
        """The VRRP addresses on this host's `front` (its own address left out)."""
        return self.lan.addresses(self.host) & {VIP, VIP6}


class Lan:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.nodes: list[Node] = []
        self.namespaces: list[str] = []

    def ns(self, host: str) -> str:
        return f"{PREFIX}-{host}"

    def up(self) -> None:
        self._netns("sw")
        ip("-n", self.ns("sw"), "link", "add", "br0", "type", "bridge", "forward_delay", "0", "mcast_snooping", "0")
        ip("-n", self.ns("sw"), "link", "set", "br0", "up")
        for host in HOSTS:
            self._netns(host)
            self.plug(host)

    def _netns(self, host: str) -> None:
        name = self.ns(host)
        net.remove_netns(name)  # a leftover of a killed run
        ip("netns", "add", name)
        self.namespaces.append(name)
        ip("-n", name, "link", "set", "lo", "up")

    def plug(self, host: str) -> None:
        """The host's `front`, on the bridge, with its address; no DAD (its link-local is usable at once)."""
        ns = self.ns(host)
        ip("-n", self.ns("sw"), "link", "add", f"p-{host}", "type", "veth", "peer", "name", "front", "netns", ns)
        ip("-n", self.ns("sw"), "link", "set", f"p-{host}", "master", "br0", "up")
        subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.front.accept_dad=0"], check=True)
        ip("-n", ns, "addr", "add", f"{HOSTS[host]}/24", "dev", "front")
        ip("-n", ns, "link", "set", "front", "up")

    def unplug(self, host: str) -> None:
        """The host's port deleted, and with it its `front`: it dies, as the LAN sees it."""
        ip("-n", self.ns("sw"), "link", "del", f"p-{host}")

    def isolate(self, host: str) -> None:
        """The host's port off the bridge: its link stays up, nothing reaches it or comes from it."""
        ip("-n", self.ns("sw"), "link", "set", f"p-{host}", "nomaster")

    def join(self, host: str) -> None:
        ip("-n", self.ns("sw"), "link", "set", f"p-{host}", "master", "br0")

    def addresses(self, host: str) -> set[str]:
        with net.in_netns(self.ns(host)):
            return set(net.addresses("front"))

    def link_local(self, host: str) -> IPv6Address:
        out = ip("-n", self.ns(host), "-6", "-o", "addr", "show", "dev", "front", "scope", "link")
        return IPv6Address(out.split()[3].split("/")[0])

    def speaker(self, host: str, start: bool = True, **instance: object) -> Node:
        node = Node(self, host, HaSettings(instances=[make_instance(**instance)]), self.tmp_path / f"{host}.sock")
        self.nodes.append(node)
        return node.start() if start else node

    def down(self) -> None:
        for node in self.nodes:
            if node.running:
                with contextlib.suppress(Exception):
                    node.stop()
        for name in self.namespaces:
            net.remove_netns(name)


def make_instance(**kw: object) -> Instance:
    fields: dict = {"name": "vi", "interface": "front", "vrid": VRID, "priority": 100, "advert_interval": INTERVAL,
                    "addresses": [VIP], "excluded_addresses": [VIP6],
                    "garp_repeat": 1, "garp_delay": 0, "garp_refresh": 0}
    fields.update(kw)
    return Instance(**fields)


@pytest.fixture
def lan(tmp_path: Path) -> Iterator[Lan]:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    the_lan = Lan(tmp_path)
    try:
        the_lan.up()
        yield the_lan
    finally:
        the_lan.down()


@pytest.fixture
def pair(lan: Lan) -> tuple[Node, Node]:
    """a (priority 150) master, b (100) backup, settled."""
    a = lan.speaker("a", priority=150)
    b = lan.speaker("b", priority=100)
    settled(a, b)
    return a, b


def settled(master: Node, backup: Node) -> None:
    """`master` is master with the VIPs, `backup` is backup, knows it and holds none."""
    wait_for(lambda: master.state == "master" and backup.state == "backup"
             and backup.status()["master"] == master.status()["source"],
             f"{master.host} master, {backup.host} backup")
    wait_for(lambda: master.vips() == {VIP, VIP6} and not backup.vips(), f"the VIPs on {master.host} only")


def transitions(node: Node) -> list[tuple[str, str]]:
    return [(t["from"], t["to"]) for t in node.status()["transitions"]]


def stays(predicate: Callable[[], bool], what: str, seconds: float = 1.0) -> None:
    """`predicate` holds all along `seconds` (several master-down intervals)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        assert predicate(), what
        time.sleep(0.05)


# ---- election and failover -------------------------------------------------------------------


def test_election_the_higher_priority_is_master_and_holds_the_vips(pair):
    a, b = pair
    sa, sb = a.status(), b.status()
    assert (sa["state"], sb["state"]) == ("master", "backup")
    assert sa["source"] == HOSTS["a"] and sb["source"] == HOSTS["b"]
    assert (sb["master"], sb["master_priority"]) == (HOSTS["a"], 150)
    assert (sa["master"], sa["master_priority"]) == (HOSTS["a"], 150)
    assert a.vips() == {VIP, VIP6}                    # the excluded IPv6 address moves too
    assert b.vips() == set()
    assert sa["counters"]["adverts_sent"] > 0 and sb["counters"]["adverts_received"] > 0
    assert sb["counters"].get("adverts_sent", 0) == 0  # a backup is silent
    stays(lambda: a.state == "master" and b.state == "backup", "a stable election")


def test_failover_when_the_master_dies(lan, pair):
    a, b = pair
    lan.unplug("a")   # its front vanishes: no priority 0 can reach b
    wait_for(lambda: b.state == "master", "b master after a's death")
    wait_for(lambda: b.vips() == {VIP, VIP6}, "the VIPs on b")
    assert b.status()["master"] == HOSTS["b"]
    sa = wait_for(lambda: (s := a.status())["state"] == "fault" and s, "a in fault, its interface gone")
    assert any("front" in f for f in sa["faults"])
    # a new front (another ifindex): a speaks from it again and preempts
    lan.plug("a")
    settled(a, b)
    assert a.status()["faults"] == []


def test_graceful_shutdown_hands_over_within_the_skew_time(lan):
    interval = 0.3
    a = lan.speaker("a", priority=150, advert_interval=interval)
    b = lan.speaker("b", priority=100, advert_interval=interval)
    settled(a, b)
    before = len(transitions(b))
    stopped = time.time()
    a.stop()
    assert not a.vips()                                # released on the way out
    wait_for(lambda: b.state == "master", "b master after a's shutdown")
    took = b.status()["transitions"][-1]["at"] - stopped
    assert transitions(b)[before:] == [("backup", "master")]
    # Without the priority 0 advert b would wait out its master-down interval from a's last advert,
    # sent at most one interval before the stop; with it, b waits its skew time (0.18 s).
    master_down = master_down_interval(round(interval * 100), 100)
    assert took < master_down - interval, f"b took over {took:.3f} s after the stop"
    wait_for(lambda: b.vips() == {VIP, VIP6}, "the VIPs on b")


def test_the_higher_priority_preempts_when_it_returns(lan, pair):
    a, b = pair
    a.stop()
    wait_for(lambda: b.state == "master", "b master")
    a2 = lan.speaker("a", priority=150)
    settled(a2, b)
    assert transitions(a2) == [("init", "backup"), ("backup", "master")]


def test_nopreempt_keeps_the_current_master(lan):
    b = lan.speaker("b", priority=100)
    wait_for(lambda: b.state == "master", "b master alone")
    a = lan.speaker("a", priority=150, preempt=False)
    wait_for(lambda: a.status()["master"] == HOSTS["b"], "a hears b")
    stays(lambda: a.state == "backup" and b.state == "master", "b kept as master")
    assert b.vips() == {VIP, VIP6} and not a.vips()
    # preempt off still takes over from a dead master
    lan.unplug("b")
    wait_for(lambda: a.state == "master", "a master after b's death")


def test_split_brain_heals_to_the_higher_priority(lan):
    lan.isolate("a")
    lan.isolate("b")
    a = lan.speaker("a", priority=150)
    b = lan.speaker("b", priority=100)
    wait_for(lambda: a.state == "master" and b.state == "master", "both master, cut off")
    wait_for(lambda: a.vips() == {VIP, VIP6} and b.vips() == {VIP, VIP6}, "the VIPs on both")
    lan.join("a")
    lan.join("b")
    settled(a, b)
    stays(lambda: [a.state, b.state].count("master") == 1, "one master")
    # the winner heard the loser's last advert and announced the VIPs again for the neighbours
    assert a.status()["counters"].get("lower_priority_masters", 0) >= 1


def test_a_cut_and_mended_link_leaves_one_master(lan, pair):
    a, b = pair
    lan.isolate("b")
    wait_for(lambda: b.state == "master", "b master, cut off")
    assert a.state == "master"
    lan.join("b")
    settled(a, b)
    assert transitions(b)[-2:] == [("backup", "master"), ("master", "backup")]


# ---- operator controls -----------------------------------------------------------------------


def test_hand_over_moves_mastership_and_it_stays_until_auto(pair):
    a, b = pair
    result = a.client.failover("hand-over")
    assert result["instances"][0]["override"] == "hand-over"
    settled(b, a)
    stays(lambda: b.state == "master" and a.state == "backup", "no preemption back")
    assert a.status()["effective_priority"] == 1
    a.client.failover("auto")
    settled(a, b)


def test_take_over_on_the_backup(pair):
    a, b = pair
    status = b.client.failover("take-over")["instances"][0]
    assert status["state"] == "master" and status["effective_priority"] == 151
    settled(b, a)
    assert a.status()["master_priority"] == 151
    stays(lambda: b.state == "master" and a.state == "backup", "b kept as master")
    b.client.failover("auto")                         # its own 100 again: a preempts
    settled(a, b)


def test_maintenance_on_the_master_hands_over_and_holds(pair):
    a, b = pair
    status = a.client.maintenance(True)["instances"][0]
    assert status["maintenance"] and status["effective_priority"] == 0
    wait_for(lambda: b.state == "master" and a.state == "backup", "b master, a backup")
    wait_for(lambda: b.vips() == {VIP, VIP6} and not a.vips(), "the VIPs on b only")
    stays(lambda: a.state == "backup" and b.state == "master", "a in maintenance, never master")
    a.client.maintenance(False)
    settled(a, b)


def test_a_backup_in_maintenance_knows_the_master(pair):
    a, b = pair
    a.client.maintenance(True)
    wait_for(lambda: b.state == "master", "b master")
    wait_for(lambda: a.status()["master"] == HOSTS["b"], "a knows b is master", timeout=2.0)


def test_maintenance_keeps_a_lone_backup_from_mastership(lan, pair):
    b = pair[1]
    b.client.maintenance(True)
    lan.unplug("a")
    stays(lambda: b.state == "backup" and not b.vips(), "b in maintenance stays backup", seconds=1.0)
    b.client.maintenance(False)
    wait_for(lambda: b.state == "master", "b master once out of maintenance")


def test_priority_change_through_the_control_socket(pair):
    a, b = pair
    assert b.client.priority(200)["instances"][0]["priority"] == 200
    settled(b, a)
    assert a.status()["master_priority"] == 200
    a.client.priority(250)
    settled(a, b)
    assert b.status()["master_priority"] == 250


# ---- tracking --------------------------------------------------------------------------------


def add_tracked(lan: Lan, host: str) -> None:
    """A second interface of the host, a veth pair of its own, both ends up."""
    ns = lan.ns(host)
    ip("-n", ns, "link", "add", "trk", "type", "veth", "peer", "name", "trk-p")
    ip("-n", ns, "link", "set", "trk", "up")
    ip("-n", ns, "link", "set", "trk-p", "up")


def test_tracked_interface_down_with_weight_zero_is_a_fault(lan):
    add_tracked(lan, "a")
    a = lan.speaker("a", priority=150, track_interfaces=[{"name": "trk", "weight": 0}])
    b = lan.speaker("b", priority=100)
    settled(a, b)
    ip("-n", lan.ns("a"), "link", "set", "trk", "down")
    sa = wait_for(lambda: (s := a.status())["state"] == "fault" and s, "a in fault")
    assert any("trk" in f for f in sa["faults"])
    wait_for(lambda: b.state == "master" and b.vips() == {VIP, VIP6}, "b master")
    assert not a.vips()
    ip("-n", lan.ns("a"), "link", "set", "trk", "up")
    settled(a, b)                                      # out of fault, a preempts again
    assert a.status()["faults"] == []


def test_tracked_interface_with_a_weight_lowers_the_priority(lan):
    add_tracked(lan, "a")
    a = lan.speaker("a", priority=150, track_interfaces=[{"name": "trk", "weight": -60}])
    b = lan.speaker("b", priority=100)
    settled(a, b)
    ip("-n", lan.ns("a"), "link", "set", "trk", "down")
    wait_for(lambda: a.status()["effective_priority"] == 90, "a at 150 - 60")
    settled(b, a)                                      # b (100) preempts a (90)
    sa = a.status()
    assert sa["priority"] == 150 and sa["degraded"] and sa["faults"] == []
    assert b.status()["master_priority"] == 100 and a.status()["master_priority"] == 100
    ip("-n", lan.ns("a"), "link", "set", "trk", "up")
    settled(a, b)


def test_tracked_service_down_is_a_fault(pair_with_service):
    a, b = pair_with_service
    status = a.client.services_down(["tcp:10.97.0.100:80"])
    assert status["services_down"] == ["tcp:10.97.0.100:80"]
    wait_for(lambda: a.state == "fault", "a in fault")
    wait_for(lambda: b.state == "master" and b.vips() == {VIP, VIP6}, "b master")
    assert not a.vips()
    a.client.services_down(["tcp:10.97.0.99:80"])      # another service: not tracked
    settled(a, b)


@pytest.fixture
def pair_with_service(lan: Lan) -> tuple[Node, Node]:
    a = lan.speaker("a", priority=150, track_services=[{"service": "tcp:10.97.0.100:80", "weight": 0}])
    b = lan.speaker("b", priority=100)
    settled(a, b)
    return a, b


# ---- forged and malformed adverts ------------------------------------------------------------


def forger(lan: Lan, ttl: int) -> socket.socket:
    """A raw VRRP socket on host x (10.97.0.9), sending with this TTL."""
    with net.in_netns(lan.ns("x")):
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, PROTO_VRRP)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"front")
    s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(HOSTS["x"]))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
    s.bind((HOSTS["x"], 0))
    return s


def advert(priority: int, destination: IPv4Address = GROUP4) -> bytes:
    return encode(Advert(VRID, priority, round(INTERVAL * 100), (IPv4Address(VIP.split("/")[0]),)),
                  IPv4Address(HOSTS["x"]), destination)


def bad_checksum(message: bytes) -> bytes:
    forged = bytearray(message)
    forged[6] ^= 0x5A
    return bytes(forged)


def version_2(message: bytes, destination: IPv4Address = GROUP4) -> bytes:
    """A well-formed checksum over a message whose version says 2."""
    forged = bytearray(message)
    forged[0] = 2 << 4 | 1
    forged[6:8] = b"\0\0"
    covered = pseudo_header(IPv4Address(HOSTS["x"]), destination, len(forged), PROTO_VRRP) + forged
    forged[6:8] = internet_checksum(bytes(covered)).to_bytes(2, "big")
    return bytes(forged)


FORGED = {  # case: (TTL, message, the invalid counter it must raise)
    "ttl-64": (64, lambda: advert(254), "ttl"),
    "ttl-254-higher-priority": (254, lambda: advert(254), "ttl"),
    "bad-checksum": (255, lambda: bad_checksum(advert(254)), "checksum"),
    "version-2": (255, lambda: version_2(advert(254)), "version"),
}


@pytest.mark.parametrize("case", FORGED)
def test_a_forged_or_malformed_advert_is_counted_and_ignored(lan, pair, case):
    a, b = pair
    ttl, message, reason = FORGED[case]
    payload = message()
    if reason in ("checksum", "version"):             # the forgery is the one meant
        with pytest.raises(AdvertError) as e:
            decode(payload, IPv4Address(HOSTS["x"]), GROUP4)
        assert e.value.reason == reason
    before = {n.host: (len(transitions(n)), n.status()["counters"]["invalid"].get(reason, 0)) for n in (a, b)}
    with forger(lan, ttl) as s:
        for _ in range(5):
            s.sendto(payload, (str(GROUP4), 0))
            time.sleep(INTERVAL / 2)
    wait_for(lambda: all(n.status()["counters"]["invalid"].get(reason, 0) >= before[n.host][1] + 5 for n in (a, b)),
             f"5 more invalid.{reason} on a and b")
    stays(lambda: a.state == "master" and b.state == "backup", "no transition", seconds=0.5)
    for n in (a, b):
        assert len(transitions(n)) == before[n.host][0]
    assert b.status()["master"] == HOSTS["a"]


def test_a_valid_forged_advert_is_obeyed(lan, pair):
    """The control of the test above: the same path with TTL 255 and a good checksum does reach both."""
    a, b = pair
    with forger(lan, 255) as s:
        deadline = time.monotonic() + WAIT
        while a.state == "master":
            assert time.monotonic() < deadline, "a never heard the forged advert"
            s.sendto(advert(254), (str(GROUP4), 0))
            time.sleep(INTERVAL / 2)
        for _ in range(3):  # a stepped down with a last advert of its own, which b heard after x's
            s.sendto(advert(254), (str(GROUP4), 0))
            time.sleep(INTERVAL / 2)
        sa, sb = a.status(), b.status()
    assert (sa["state"], sa["master"], sa["master_priority"]) == ("backup", HOSTS["x"], 254)
    assert sb["master"] == HOSTS["x"]
    settled(a, b)                                     # the forger silent: a is master again


# ---- IPv6 ------------------------------------------------------------------------------------


def test_ipv6_election_and_failover(lan):
    v6 = {"addresses": [VIP6], "excluded_addresses": []}
    a = lan.speaker("a", priority=150, **v6)
    b = lan.speaker("b", priority=100, **v6)
    ll_a, ll_b = lan.link_local("a"), lan.link_local("b")
    wait_for(lambda: a.state == "master" and b.state == "backup", "a master, b backup")
    sa, sb = a.status(), b.status()
    assert sa["family"] == 6
    assert ip_address(sa["source"]) == ll_a and ip_address(sb["source"]) == ll_b
    assert (ip_address(sb["master"]), sb["master_priority"]) == (ll_a, 150)
    wait_for(lambda: VIP6 in a.vips() and VIP6 not in b.vips(), "the VIP on a only")
    lan.unplug("a")
    wait_for(lambda: b.state == "master" and VIP6 in b.vips(), "b master with the VIP")


# ---- unicast peers ---------------------------------------------------------------------------


def test_unicast_peers_election_failover_and_strangers_ignored(lan):
    a = lan.speaker("a", priority=150, unicast_peers=[HOSTS["b"]])
    b = lan.speaker("b", priority=100, unicast_peers=[HOSTS["a"]])
    settled(a, b)
    # a well-formed advert of higher priority from x, not a peer, sent to each of them
    before = {n.host: (len(transitions(n)), n.status()["counters"]["invalid"].get("source", 0)) for n in (a, b)}
    with forger(lan, 255) as s:
        for _ in range(5):
            for n in (a, b):
                dst = IPv4Address(HOSTS[n.host])
                s.sendto(advert(254, dst), (str(dst), 0))
            time.sleep(INTERVAL / 2)
    wait_for(lambda: all(n.status()["counters"]["invalid"].get("source", 0) >= before[n.host][1] + 5
                         for n in (a, b)), "5 more invalid.source on a and b")
    stays(lambda: a.state == "master" and b.state == "backup", "no transition", seconds=0.5)
    assert [len(transitions(n)) for n in (a, b)] == [before["a"][0], before["b"][0]]
    lan.unplug("a")
    wait_for(lambda: b.state == "master" and b.vips() == {VIP, VIP6}, "b master after a's death")


# ---- the control protocol --------------------------------------------------------------------


def raw_request(node: Node, data: bytes) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(3.0)
        s.connect(str(node.client.path))
        s.sendall(data)
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = s.recv(65536)
            assert chunk, "closed without an answer"
            answer += chunk
    return json.loads(answer)


def snapshot(node: Node) -> tuple:
    s = node.status()
    return (s["state"], s["priority"], s["effective_priority"], s["override"], s["maintenance"],
            len(s["transitions"]))


def test_control_errors_change_nothing(pair):
    a, b = pair
    before = snapshot(a), snapshot(b)
    for data in (b"{not json\n", b"[1, 2]\n", b'"status"\n', b"\xff\xfe\n"):
        answer = raw_request(a, data)
        assert answer["ok"] is False and answer["status"] == 400, (data, answer)
    refused = [
        ({"op": "nope"}, 400),
        ({}, 400),
        ({"op": "priority", "priority": "200"}, 400),
        ({"op": "priority", "priority": 200.0}, 400),
        ({"op": "priority", "priority": True}, 400),
        ({"op": "priority", "priority": None}, 400),
        ({"op": "priority", "priority": 0}, 400),
        ({"op": "priority", "priority": 256}, 400),
        ({"op": "priority", "priority": 200, "instance": "nobody"}, 404),
        ({"op": "failover", "action": "steal"}, 400),
        ({"op": "maintenance", "on": "yes"}, 400),
        ({"op": "services", "down": "tcp:10.97.0.100:80"}, 400),
        ({"op": "services", "down": [1]}, 400),
    ]
    for request, status in refused:
        answer = raw_request(a, json.dumps(request).encode() + b"\n")
        assert answer["ok"] is False and answer["status"] == status, (request, answer)
        assert answer["error"]
    with pytest.raises(SpeakerError) as e:
        b.client.failover("hand-over")                 # a backup has nothing to hand over
    assert e.value.status == 409
    with pytest.raises(SpeakerError) as e:
        a.client.priority(300)
    assert e.value.status == 400
    assert (snapshot(a), snapshot(b)) == before
    stays(lambda: a.state == "master" and b.state == "backup", "nothing moved", seconds=0.3)


def test_a_slow_client_does_not_stop_the_adverts(pair):
    a, b = pair
    sent = a.status()["counters"]["adverts_sent"]
    before = len(transitions(b))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent, \
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as halfway:
        silent.connect(str(a.client.path))
        halfway.connect(str(a.client.path))
        halfway.sendall(b'{"op": "sta')                # never finished
        stays(lambda: b.state == "backup" and a.state == "master", "b backup while clients hang", seconds=1.5)
        assert a.status()["counters"]["adverts_sent"] >= sent + 5
    assert len(transitions(b)) == before


def test_the_speaker_command_ends_cleanly_on_sigterm(tmp_path):
    """`xdplb speaker` with an instance whose interface does not exist: it runs (that instance in
    fault, sending nothing), answers on its socket, and SIGTERM ends it with status 0."""
    state = tmp_path / "state"
    config = tmp_path / "xdplb.yaml"
    config.write_text(f"director: {{name: t, interfaces: [xdplb-nope], state_dir: {state}}}\n"
                      "ha:\n  instances:\n    - {name: VI_1, interface: xdplb-nope, vrid: 51, "
                      "addresses: [10.97.0.100/32]}\n")
    proc = subprocess.Popen([sys.executable, "-m", "xdplb.cli", "speaker", "-c", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        client = SpeakerClient(state / "vrrp.sock")
        deadline = time.monotonic() + 20
        while not client.alive():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.poll() else "late"
            time.sleep(0.05)
        inst = client.status()["instances"][0]
        assert (inst["state"], inst["faults"]) == ("fault", ["interface xdplb-nope missing"])
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    assert "error" not in out.lower()
    assert not (state / "vrrp.sock").exists()
