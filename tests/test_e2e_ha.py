"""High availability end to end: lb1 (VRRP priority 150) and lb2 (100) in a lab of their own where no
director holds the VIPs statically; their speakers elect the one that does. A client's traffic goes
router -> VIP (ARP) -> the master's XDP balancer -> rs1..rs3 (DR, mh: both directors place a flow
alike, so connections survive a failover without sync).

lb1's death is a dead host, not a dead daemon: its cables out (bridge ports down) or its namespace
deleted. The interruption is measured with a UDP datagram every millisecond through the VIP.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import time
from collections.abc import Callable, Iterator

import pytest

from tests.halab import INTERVAL, SERVERS, TAKEOVER_DEADLINE, lab_without_vips, through, wait_for
from xdplb import net
from xdplb.lab import BY_NAME, VIP4, Director, Lab
from xdplb.labclients import UdpProbe, address_of, dr_service, ha_settings, http_names, stream, url
from xdplb.labha import holds_vip, mac, router_mac_for_vip, vrrp_state
from xdplb.vrrp.packet import GROUP4, PROTO_VRRP, Advert, encode, internet_checksum, pseudo_header

pytestmark = [pytest.mark.ha, pytest.mark.lab]

HTTP = dr_service("tcp", 80, scheduler="mh")
NOTIFY = "notify.log"


@pytest.fixture(scope="module")
def ha_lab() -> Iterator[Lab]:
    with lab_without_vips("xh") as lab:
        yield lab


@pytest.fixture(scope="module")
def pair(ha_lab: Lab) -> Iterator[tuple[Director, Director]]:
    # lb1 gives up 60 of its 150 when its HTTP service loses its quorum; lb2's transitions go to a log
    lb1 = Director(ha_lab, "lb1", ha=ha_settings(150, track_services=[{"service": HTTP.id, "weight": -60}]))
    log = ha_lab.state_dir / NOTIFY
    lb2 = Director(ha_lab, "lb2", ha=ha_settings(100, notify=["/bin/sh", "-c", f'echo "$*" >> {log}', "notify"]))
    try:
        for d in (lb1, lb2):
            d.attach()
            for svc in (HTTP, dr_service("udp", 9000, scheduler="mh"), dr_service("tcp", 80, version=6)):
                d.set_service(svc)
        wait_for("lb1 master", lambda: vrrp_state(lb1) == "master" and vrrp_state(lb2) == "backup")
        yield lb1, lb2
    finally:
        for d in (lb1, lb2):
            d.close()


@pytest.fixture
def ha(pair: tuple[Director, Director]) -> Iterator[tuple[Director, Director]]:
    """The pair as a test finds it: both up, lb1 master; put back so after the test."""
    lb1, lb2 = pair
    yield lb1, lb2
    lab = lb1.lab
    for rs in SERVERS:
        lab.set_nginx(rs, True)
    if lb1.running and lb1.services[0].check:
        lb1.set_service(HTTP)
    lab.cut("lb1", connected=True)
    lab.cut("lb2", connected=True)
    lab.exec("lb2", ["nft", "delete", "table", "inet", "xdplb_test"])
    for d in (lb1, lb2):
        if lab.ns(d.host) not in net.list_netns():
            lab.rebuild(d.host)
        if not d.running:
            d.start()
        d.speaker.failover("auto")
        d.speaker.maintenance(False)
    wait_for("lb1 master again", lambda: vrrp_state(lb1) == "master" and vrrp_state(lb2) == "backup")


def transitions(director: Director) -> int:
    return len(director.vrrp()["transitions"])


# ---- election ---------------------------------------------------------------------------------

def test_lb1_is_master_and_holds_the_vips(ha):
    lb1, lb2 = ha
    lab = lb1.lab
    assert holds_vip(lab, "lb1") and not holds_vip(lab, "lb2")
    s1, s2 = lb1.vrrp(), lb2.vrrp()
    assert (s1["effective_priority"], s2["effective_priority"]) == (150, 100)
    assert s2["master"] == BY_NAME["lb1"].address("front") and s2["master_priority"] == 150
    assert set(http_names(lab, url(4), 6)) <= SERVERS
    assert router_mac_for_vip(lab) == mac("lb1")


# ---- a dead lb1 -------------------------------------------------------------------------------

def takeover(lab: Lab, lb1: Director, lb2: Director, kill: Callable[[], None]) -> dict:
    """Kills lb1 as `kill` says while the probe runs; lb2 must take over. The probe's result."""
    with UdpProbe(lab) as probe:
        time.sleep(0.3)
        kill()
        wait_for("lb2 master", lambda: vrrp_state(lb2) == "master", TAKEOVER_DEADLINE)
        wait_for("the router sends the VIP to lb2", lambda: router_mac_for_vip(lab) == mac("lb2"),
                 TAKEOVER_DEADLINE)
        time.sleep(0.5)
    assert holds_vip(lab, "lb2")
    r = through(probe, " through lb2")
    print(f"interruption {r['longest_gap'] * 1000:.0f} ms ({r['sent'] - r['answered']} of {r['sent']} lost)")
    assert r["longest_gap"] < TAKEOVER_DEADLINE
    # nothing got through before lb2 was master: a backup's balancer does not forward frames the
    # switch floods for dead lb1's MAC (the HA lab's ports, like a NIC's filter, keep them away)
    assert r["longest_gap"] > 2 * INTERVAL, r
    return r


def notified(lab: Lab) -> list[str]:
    path = lab.state_dir / NOTIFY
    return path.read_text().splitlines() if path.exists() else []


def test_links_down_lb2_takes_over_and_lb1_preempts_back(ha):
    lb1, lb2 = ha
    lab = lb1.lab
    hooks_before = len(notified(lab))
    takeover(lab, lb1, lb2, lambda: lab.cut("lb1"))
    names = http_names(lab, url(4), 9)  # new connections, through lb2
    assert set(names) <= SERVERS and sum(names.values()) == 9
    names6 = http_names(lab, url(6), 3)  # the IPv6 VIP moved too, announced by unsolicited NA
    assert set(names6) <= SERVERS and sum(names6.values()) == 3
    wait_for("lb2's notify hook", lambda: "INSTANCE VI_1 MASTER 100" in notified(lab)[hooks_before:])
    assert lb2.vrrp()["counters"]["became_master"] >= 1
    lab.cut("lb1", connected=True)
    wait_for("lb1 preempts", lambda: vrrp_state(lb1) == "master" and vrrp_state(lb2) == "backup", TAKEOVER_DEADLINE * 2)
    wait_for("the router sends the VIP to lb1", lambda: router_mac_for_vip(lab) == mac("lb1"))
    assert not holds_vip(lab, "lb2")
    assert set(http_names(lab, url(4), 3)) <= SERVERS
    wait_for("lb2's notify hook", lambda: "INSTANCE VI_1 BACKUP 100" in notified(lab)[hooks_before:])


def test_deleted_namespace_lb2_takes_over_and_a_rebuilt_lb1_preempts(ha):
    lb1, lb2 = ha
    lab = lb1.lab
    takeover(lab, lb1, lb2, lambda: lab.destroy("lb1"))
    assert set(http_names(lab, url(4), 3)) <= SERVERS
    lab.rebuild("lb1")
    lb1.start()  # its daemon starts a new speaker, which starts as backup and preempts
    wait_for("lb1 preempts", lambda: vrrp_state(lb1) == "master" and vrrp_state(lb2) == "backup", TAKEOVER_DEADLINE * 3)
    assert set(http_names(lab, url(4), 3)) <= SERVERS


def test_mh_connections_survive_a_failover(ha):
    lb1, lb2 = ha
    lab = lb1.lab
    known = {c.client for c in lb2.dp.connections()}
    download = stream(lab, rate="200k")  # 1 MB over 5 s
    time.sleep(1.0)
    lab.cut("lb1")
    wait_for("lb2 master", lambda: vrrp_state(lb2) == "master", TAKEOVER_DEADLINE)
    out, _ = download.communicate(timeout=30)
    size, code, server = out.split()
    assert (int(size), code) == (1 << 20, "200"), out
    assert server in SERVERS
    picked_up = [c.backend for c in lb2.dp.connections() if c.client not in known and c.virtual[1] == 80]
    assert picked_up == [address_of(server)], "lb2 picked the flow up mid-stream, to the same server"


def test_a_tracked_service_losing_its_quorum_lowers_the_priority(ha):
    """lb1 checks its HTTP service; with every server's nginx stopped the quorum is lost, lb1's daemon
    tells its speaker, which advertises 150 - 60 = 90, and lb2 (100) preempts it."""
    lb1, lb2 = ha
    lab = lb1.lab
    check = {"type": "tcp", "interval": 0.2, "timeout": 0.5, "rise": 1, "fall": 1}
    lb1.set_service(dr_service("tcp", 80, scheduler="mh", check=check))
    for rs in SERVERS:
        lab.set_nginx(rs, False)
    wait_for("lb2 preempts", lambda: vrrp_state(lb2) == "master" and vrrp_state(lb1) == "backup", 10)
    s1 = lb1.vrrp()
    assert s1["effective_priority"] == 90 and any(HTTP.id in d for d in s1["degraded"]), s1
    for rs in SERVERS:
        lab.set_nginx(rs, True)
    wait_for("lb1 preempts back", lambda: vrrp_state(lb1) == "master" and vrrp_state(lb2) == "backup", 10)
    assert lb1.vrrp()["effective_priority"] == 150


# ---- no failover --------------------------------------------------------------------------------

def test_a_daemon_crash_on_lb1_causes_no_failover(ha):
    lb1, lb2 = ha
    lab = lb1.lab
    before = (transitions(lb1), transitions(lb2))
    speaker_pid = lb1.vrrp_pid()
    with UdpProbe(lab) as probe:
        lb1.kill(signal.SIGKILL)
        time.sleep(1.0)  # three master-down intervals
        assert vrrp_state(lb1) == "master" and vrrp_state(lb2) == "backup"
        lb1.start()  # finds its speaker running, and leaves it be
        time.sleep(0.3)
    assert lb1.vrrp_pid() == speaker_pid
    assert (transitions(lb1), transitions(lb2)) == before
    assert probe.result["answered"] >= probe.result["sent"] - 5, probe.result


def test_a_crashed_speaker_is_started_again_by_the_daemon(ha):
    """The speaker killed: lb2 takes over; lb1's daemon starts a new speaker within its refresh
    period, which releases the VIPs the dead one left, and preempts lb2."""
    lb1, lb2 = ha
    lab = lb1.lab
    dead = lb1.vrrp_pid()
    os.kill(dead, signal.SIGKILL)
    wait_for("lb2 master", lambda: vrrp_state(lb2) == "master", TAKEOVER_DEADLINE)
    wait_for("a new speaker on lb1, master again",
             lambda: vrrp_state(lb1) == "master" and vrrp_state(lb2) == "backup", 20)
    assert lb1.vrrp_pid() != dead
    assert holds_vip(lab, "lb1") and not holds_vip(lab, "lb2")
    assert set(http_names(lab, url(4), 3)) <= SERVERS


def test_maintenance_outlives_a_crashed_speaker(ha):
    """The operator's maintenance is kept in the state directory: the new speaker stays out of the
    election instead of taking the VIPs back."""
    lb1, lb2 = ha
    lb1.speaker.maintenance(True)
    wait_for("lb2 master", lambda: vrrp_state(lb2) == "master", TAKEOVER_DEADLINE)
    dead = lb1.vrrp_pid()
    os.kill(dead, signal.SIGKILL)
    wait_for("a new speaker on lb1", lambda: vrrp_state(lb1) is not None and lb1.vrrp_pid() != dead, 20)
    time.sleep(1.0)  # more than a master-down interval
    s1 = lb1.vrrp()
    assert (s1["state"], s1["maintenance"]) == ("backup", True)
    assert vrrp_state(lb2) == "master" and not holds_vip(lb1.lab, "lb1")


def test_a_reload_that_changes_the_ha_section_is_refused(ha):
    lb1, _ = ha
    before = lb1.vrrp()
    lb1.ha = ha_settings(120)
    try:
        status = lb1._apply()
    finally:
        lb1.ha = ha_settings(150, track_services=[{"service": HTTP.id, "weight": -60}])
        lb1._write_config()
    assert "the ha section" in status["reload_error"]
    after = lb1.vrrp()
    assert (after["priority"], after["state"], after["transitions"]) == (150, "master", before["transitions"])


def test_a_split_brain_resolves_to_the_higher_priority(ha):
    lb1, lb2 = ha
    lab = lb1.lab
    deaf = "table inet xdplb_test {\nchain input {\ntype filter hook input priority 0;\nip protocol vrrp drop\n}\n}\n"
    lab.exec("lb2", ["nft", "-f", "-"], check=True, input=deaf)  # lb2 stops hearing lb1: both masters
    wait_for("both master", lambda: vrrp_state(lb1) == "master" and vrrp_state(lb2) == "master", TAKEOVER_DEADLINE)
    lab.exec("lb2", ["nft", "delete", "table", "inet", "xdplb_test"], check=True)
    wait_for("lb2 steps down", lambda: vrrp_state(lb2) == "backup", TAKEOVER_DEADLINE)
    assert vrrp_state(lb1) == "master"
    assert holds_vip(lab, "lb1") and not holds_vip(lab, "lb2")
    wait_for("the router sends the VIP to lb1", lambda: router_mac_for_vip(lab) == mac("lb1"), 10)


# ---- bad adverts --------------------------------------------------------------------------------

FORGE = r"""
import socket, sys
ttl, data = int(sys.argv[1]), bytes.fromhex(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
for _ in range(5):
    s.sendto(data, (sys.argv[3], 0))
"""


def sealed(message: bytes, src: ipaddress.IPv4Address) -> bytes:
    """The message with a right checksum, whatever else is wrong with it."""
    zeroed = message[:6] + b"\0\0" + message[8:]
    checksum = internet_checksum(pseudo_header(src, GROUP4, len(zeroed), PROTO_VRRP) + zeroed)
    return zeroed[:6] + checksum.to_bytes(2, "big") + zeroed[8:]


def test_forged_and_malformed_adverts_change_nothing(ha):
    lb1, lb2 = ha
    lab = lb1.lab
    src = ipaddress.IPv4Address(BY_NAME["rs1"].address("front"))
    good = encode(Advert(51, 254, 10, (ipaddress.IPv4Address(VIP4),)), src, GROUP4)
    bad_checksum = good[:6] + bytes([good[6] ^ 0xFF]) + good[7:]
    version2 = sealed(bytes([0x21]) + good[1:], src)
    cases = [(64, good, "ttl"), (255, bad_checksum, "checksum"), (255, version2, "version"),
             (255, good[:5], "short")]
    before = (transitions(lb1), transitions(lb2))
    invalid_before = lb2.vrrp()["counters"]["invalid"]
    for ttl, data, _ in cases:
        lab.exec("rs1", ["python3", "-c", FORGE, str(ttl), data.hex(), str(GROUP4)], check=True)
    # through the router from the client: TTL 255 arrives as 254, off-link
    lab.exec("client", ["python3", "-c", FORGE, "255", good.hex(), BY_NAME["lb2"].address("front")], check=True)
    time.sleep(0.5)
    invalid = lb2.vrrp()["counters"]["invalid"]
    for _, _, reason in cases:
        assert invalid.get(reason, 0) > invalid_before.get(reason, 0), (reason, invalid)
    assert (transitions(lb1), transitions(lb2)) == before
    assert vrrp_state(lb1) == "master" and vrrp_state(lb2) == "backup"


# ---- operator -----------------------------------------------------------------------------------

def test_hand_over_and_take_over(ha):
    lb1, lb2 = ha
    lab = lb1.lab
    lb1.speaker.failover("hand-over")
    wait_for("lb2 master", lambda: vrrp_state(lb2) == "master" and vrrp_state(lb1) == "backup", TAKEOVER_DEADLINE)
    time.sleep(3 * INTERVAL * 3)
    assert vrrp_state(lb2) == "master", "lb1 preempted back after a hand-over"
    assert set(http_names(lab, url(4), 3)) <= SERVERS
    lb1.speaker.failover("take-over")
    wait_for("lb1 master", lambda: vrrp_state(lb1) == "master" and vrrp_state(lb2) == "backup", TAKEOVER_DEADLINE)


def test_maintenance_moves_the_vips_and_keeps_them_away(ha):
    lb1, lb2 = ha
    lb1.speaker.maintenance(True)
    wait_for("lb2 master", lambda: vrrp_state(lb2) == "master", TAKEOVER_DEADLINE)
    assert lb1.vrrp()["effective_priority"] == 0 and not holds_vip(lb1.lab, "lb1")
    lb1.speaker.maintenance(False)
    wait_for("lb1 preempts", lambda: vrrp_state(lb1) == "master" and vrrp_state(lb2) == "backup", TAKEOVER_DEADLINE * 2)

