"""keepalived and xdplb's VRRPv3 speaker as one virtual router (issue 9): keepalived's VRRP in one
director's namespace, xdplb's speaker in the other's, VRID 51 on front, advert interval 0.1 s, the
VIPs of test_e2e_ha (VIP4/32 advertised, VIP6/128 excluded). Both directors run xdplb's daemon, the
XDP balancer with the same mh services, so whichever holds the VIP forwards; only who speaks VRRP
for it differs. Election, preemption and failover, in both directions:

    TestKeepalivedOutranksXdplb   keepalived on lb1 (priority 150), xdplb on lb2 (100)
    TestXdplbOutranksKeepalived   xdplb on lb1 (150), keepalived on lb2 (100)

keepalived (xdplb.labha.Keepalived) runs in the foreground (`--dont-fork`): the test owns its parent
process, and its VRRP child is in the same process group (a crash kills the group at once: SIGKILL
to the parent alone would make the child stop gracefully, by PR_SET_PDEATHSIG). Its state is read from its namespace
(does it hold the VIP on front?) and from its console log ("(VI_1) Entering MASTER STATE"); xdplb's
from its speaker's status. What keepalived logs about the other's adverts ("received lower priority
(100) advert from 10.100.0.3", "Invalid VRRPv3 checksum") shows that it parsed them, not only that
the priorities came out right.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.halab import INTERVAL, SERVERS, TAKEOVER_DEADLINE, lab_without_vips, through, wait_for
from xdplb import net
from xdplb.lab import BY_NAME, VIP4, VIP6, Director, Lab
from xdplb.labclients import UdpProbe, dr_service, ha_settings, http_names, url
from xdplb.labha import KEEPALIVED, Keepalived, holds_vip, mac, router_mac_for_vip, vrrp_state
from xdplb.vrrp.config import HaSettings
from xdplb.vrrp.packet import master_down_interval, skew_time

pytestmark = [pytest.mark.ha, pytest.mark.lab]

QUICK = 1.0  # a graceful hand-over (priority 0: the backup's skew time, ~0.06 s) is well within this
LB1, LB2 = BY_NAME["lb1"].address("front"), BY_NAME["lb2"].address("front")
BAD_CHECKSUM = "Invalid VRRPv3 checksum"
SERVICES = (dr_service("tcp", 80, scheduler="mh"), dr_service("udp", 9000, scheduler="mh"),
            dr_service("tcp", 80, version=6, scheduler="mh"))  # the IPv6 VIP, excluded, moves along


@dataclass
class Pair:
    lab: Lab
    keepalived: Keepalived
    balancer: Director      # the keepalived host's balancer: xdplb's daemon without a speaker
    xdplb: Director         # the other director: xdplb's daemon and speaker
    xdplb_priority: int


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    if not os.access(KEEPALIVED, os.X_OK):
        pytest.skip("no keepalived")
    with lab_without_vips("xk") as lab:
        yield lab


@contextlib.contextmanager
def pair(lab: Lab, ka_host: str, ka_priority: int, xd_priority: int) -> Iterator[Pair]:
    """Both balancers up, xdplb's speaker master on its own; then keepalived joins."""
    xd_host = "lb2" if ka_host == "lb1" else "lb1"
    p = Pair(lab, Keepalived(lab, ka_host, ka_priority, INTERVAL), Director(lab, ka_host),
             Director(lab, xd_host, ha=ha_settings(xd_priority)), xd_priority)
    try:
        for d in (p.balancer, p.xdplb):
            d.attach()
            for svc in SERVICES:
                d.set_service(svc)
        wait_for(f"xdplb on {xd_host} master alone", lambda: vrrp_state(p.xdplb) == "master")
        p.keepalived.start()
        yield p
    finally:
        try:
            p.keepalived.stop()
        finally:
            for d in (p.balancer, p.xdplb):
                with contextlib.suppress(Exception):
                    d.close()
            drop_vips(lab)


def drop_vips(lab: Lab) -> None:
    """What a crashed keepalived left behind."""
    for host in ("lb1", "lb2"):
        if lab.ns(host) in net.list_netns():
            for address in (f"{VIP4}/32", f"{VIP6}/128"):
                lab.exec(host, ["ip", "addr", "del", address, "dev", "front"])


def restore(p: Pair, settled: Callable[[], bool], what: str) -> None:
    """Back to the pair as a test finds it: cables in, xdplb's daemon and speaker (with the class's
    settings) and keepalived running, and the election settled."""
    lab, xd = p.lab, p.xdplb
    for host in ("lb1", "lb2"):
        lab.cut(host, connected=True)
    wanted = ha_settings(p.xdplb_priority)
    if xd.ha != wanted or not xd.speaker.alive():
        restart_xdplb(xd, wanted)
    elif not xd.running:
        xd.start()
    if not p.keepalived.running:
        p.keepalived.start()
    wait_for(what, settled, TAKEOVER_DEADLINE * 3)


def restart_xdplb(xd: Director, ha: HaSettings) -> None:
    """xdplb's speaker shut down (if it runs) and a daemon started with `ha`: it starts a new speaker."""
    if xd.speaker.alive():
        xd.speaker.shutdown()
        wait_for("the speaker gone", lambda: not xd.speaker.alive())
    xd.kill()
    xd.ha = ha
    xd.start()


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def no_checksum_errors(p: Pair) -> None:
    bad = [line for line in p.keepalived.log(0).splitlines() if BAD_CHECKSUM in line]
    assert not bad, f"keepalived rejected xdplb's adverts: {bad[:3]}"
    assert p.xdplb.vrrp()["counters"]["invalid"] == {}, "xdplb rejected keepalived's adverts"


# ---- keepalived outranks xdplb --------------------------------------------------------------------

@pytest.fixture(scope="class")
def ka_lb1(lab: Lab) -> Iterator[Pair]:
    with pair(lab, "lb1", 150, 100) as p:
        yield p


def keepalived_master(p: Pair) -> bool:
    return (p.keepalived.state() == "master" and holds_vip(p.lab, "lb1") and vrrp_state(p.xdplb) == "backup"
            and not holds_vip(p.lab, "lb2"))


@pytest.fixture
def k1(ka_lb1: Pair) -> Iterator[Pair]:
    restore(ka_lb1, lambda: keepalived_master(ka_lb1), "keepalived on lb1 master, xdplb on lb2 backup")
    yield ka_lb1
    restore(ka_lb1, lambda: keepalived_master(ka_lb1), "keepalived on lb1 master again")


class TestKeepalivedOutranksXdplb:
    def test_keepalived_preempts_xdplb_and_xdplb_follows_it(self, k1: Pair) -> None:
        lab, lb2 = k1.lab, k1.xdplb
        s = lb2.vrrp()
        assert (s["state"], s["master"], s["master_priority"]) == ("backup", LB1, 150)
        assert s["counters"]["adverts_received"] > 0 and not s["counters"].get("address_mismatch")
        # xdplb was master first (the fixture) and stepped down on keepalived's advert
        assert any(t["from"] == "master" and t["to"] == "backup" and t["reason"].startswith(f"{LB1} advertises")
                   for t in s["transitions"]), s["transitions"]
        # keepalived parsed xdplb's adverts before it preempted: its checksum, its fields
        assert f"received lower priority (100) advert from {LB2}" in k1.keepalived.log(0)
        no_checksum_errors(k1)
        assert set(http_names(lab, url(4), 6)) <= SERVERS  # the router asks who has the VIP: lb1 answers
        assert set(http_names(lab, url(6), 3)) <= SERVERS
        assert router_mac_for_vip(lab) == mac("lb1")

    def test_keepalived_crash_xdplb_takes_over_and_a_new_keepalived_preempts(self, k1: Pair) -> None:
        lab, lb2, ka = k1.lab, k1.xdplb, k1.keepalived
        with UdpProbe(lab) as probe:
            time.sleep(0.3)
            start = time.monotonic()
            ka.kill()
            wait_for("xdplb on lb2 master", lambda: vrrp_state(lb2) == "master", TAKEOVER_DEADLINE)
            took = time.monotonic() - start
            wait_for("the router sends the VIP to lb2", lambda: router_mac_for_vip(lab) == mac("lb2"),
                     TAKEOVER_DEADLINE)
            time.sleep(0.5)
        r = through(probe)  # hardly a gap: lb1 keeps the VIP a crashed keepalived left, and its balancer
        last = lb2.vrrp()["transitions"][-1]
        assert last["to"] == "master" and last["reason"].startswith("no advert from the master"), last
        print(f"\nkeepalived SIGKILLed: xdplb master in {ms(took)} "
              f"(master-down interval {ms(master_down_interval(10, 100))}); "
              f"longest UDP gap {ms(r['longest_gap'])}")
        assert holds_vip(lab, "lb2")
        assert set(http_names(lab, url(4), 6)) <= SERVERS

        ka.start()  # it removes the VIPs the crash left, starts as backup and preempts
        took = wait_for("keepalived preempts", lambda: keepalived_master(k1), TAKEOVER_DEADLINE * 2)
        wait_for("the router sends the VIP to lb1", lambda: router_mac_for_vip(lab) == mac("lb1"))
        print(f"keepalived restarted: master again in {ms(took)}")
        assert f"received lower priority (100) advert from {LB2}" in ka.log()
        s = lb2.vrrp()
        assert (s["master"], s["master_priority"]) == (LB1, 150)
        no_checksum_errors(k1)
        assert set(http_names(lab, url(4), 6)) <= SERVERS

    def test_keepalived_stopping_hands_over_at_once(self, k1: Pair) -> None:
        lab, lb2, ka = k1.lab, k1.xdplb, k1.keepalived
        with UdpProbe(lab) as probe:
            time.sleep(0.3)
            start = time.monotonic()
            ka.terminate()  # priority 0: the backup's skew time, not master-down
            wait_for("xdplb on lb2 master", lambda: vrrp_state(lb2) == "master", TAKEOVER_DEADLINE)
            took = time.monotonic() - start
            wait_for("the router sends the VIP to lb2", lambda: router_mac_for_vip(lab) == mac("lb2"),
                     TAKEOVER_DEADLINE)
            time.sleep(0.5)
        ka.stop()
        r = through(probe)
        print(f"\nkeepalived SIGTERM: xdplb master in {ms(took)} (skew {ms(skew_time(10, 100))}, "
              f"master-down interval {ms(master_down_interval(10, 100))}); longest UDP gap {ms(r['longest_gap'])}")
        assert "sent 0 priority" in ka.log()
        last = lb2.vrrp()["transitions"][-1]
        # after a priority 0 advert the master is forgotten: "no master seen"; a timeout would name it
        assert (last["to"], last["reason"]) == ("master", "no master seen"), last
        assert took < QUICK
        assert not holds_vip(lab, "lb1") and holds_vip(lab, "lb2")
        assert set(http_names(lab, url(4), 6)) <= SERVERS


# ---- xdplb outranks keepalived --------------------------------------------------------------------

@pytest.fixture(scope="class")
def ka_lb2(lab: Lab) -> Iterator[Pair]:
    with pair(lab, "lb2", 100, 150) as p:
        yield p


def xdplb_master(p: Pair) -> bool:
    return (vrrp_state(p.xdplb) == "master" and holds_vip(p.lab, "lb1") and p.keepalived.state() == "backup"
            and not holds_vip(p.lab, "lb2"))


@pytest.fixture
def k2(ka_lb2: Pair) -> Iterator[Pair]:
    restore(ka_lb2, lambda: xdplb_master(ka_lb2), "xdplb on lb1 master, keepalived on lb2 backup")
    yield ka_lb2
    restore(ka_lb2, lambda: xdplb_master(ka_lb2), "xdplb on lb1 master again")


def keepalived_took_over(p: Pair, cause: Callable[[], None], what: str) -> float:
    """keepalived on lb2 must take over after `cause` while the probe runs; how long it took."""
    lab = p.lab
    with UdpProbe(lab) as probe:
        time.sleep(0.3)
        start = time.monotonic()
        cause()
        wait_for("keepalived on lb2 master", lambda: p.keepalived.state() == "master" and holds_vip(lab, "lb2"),
                 TAKEOVER_DEADLINE)
        took = time.monotonic() - start
        wait_for("the router sends the VIP to lb2", lambda: router_mac_for_vip(lab) == mac("lb2"),
                 TAKEOVER_DEADLINE)
        time.sleep(0.5)
    r = through(probe)
    print(f"\n{what}: keepalived master in {ms(took)} (skew {ms(skew_time(10, 100))}, master-down interval "
          f"{ms(master_down_interval(10, 100))}); longest UDP gap {ms(r['longest_gap'])}")
    assert set(http_names(lab, url(4), 6)) <= SERVERS
    return took


def xdplb_preempted(p: Pair, since: int) -> None:
    lab = p.lab
    took = wait_for("xdplb preempts keepalived", lambda: xdplb_master(p), TAKEOVER_DEADLINE * 2)
    wait_for("the router sends the VIP to lb1", lambda: router_mac_for_vip(lab) == mac("lb1"))
    print(f"xdplb back: master again in {ms(took)}")
    assert f"Master received advert from {LB1} with higher priority 150, ours 100" in p.keepalived.log(since)
    assert set(http_names(lab, url(4), 6)) <= SERVERS


class TestXdplbOutranksKeepalived:
    def test_xdplb_is_master_and_keepalived_stays_backup(self, k2: Pair) -> None:
        lab, lb1, ka = k2.lab, k2.xdplb, k2.keepalived
        since = ka.mark()
        time.sleep(3 * master_down_interval(10, 100))  # a keepalived deaf to xdplb would be master by now
        assert "Entering" not in ka.log(since) and ka.state() == "backup"
        assert holds_vip(lab, "lb1") and not holds_vip(lab, "lb2")
        s = lb1.vrrp()
        assert (s["state"], s["effective_priority"], s["master"]) == ("master", 150, LB1)
        no_checksum_errors(k2)
        assert set(http_names(lab, url(4), 6)) <= SERVERS  # the router asks who has the VIP: lb1 answers
        assert set(http_names(lab, url(6), 3)) <= SERVERS
        assert router_mac_for_vip(lab) == mac("lb1")

    def test_xdplb_shut_down_keepalived_takes_over_and_a_new_speaker_preempts(self, k2: Pair) -> None:
        lab, lb1, ka = k2.lab, k2.xdplb, k2.keepalived
        since = ka.mark()
        took = keepalived_took_over(k2, lb1.speaker.shutdown, "xdplb's speaker shut down (priority 0)")
        assert "Backup received priority 0 advertisement" in ka.log(since)
        assert took < QUICK
        assert not holds_vip(lab, "lb1")
        lb1.kill()
        lb1.start()  # no speaker answers: the daemon starts one, as backup; it preempts
        xdplb_preempted(k2, since)
        no_checksum_errors(k2)

    def test_lb1_cables_out_keepalived_takes_over_and_xdplb_preempts_back(self, k2: Pair) -> None:
        lab, ka = k2.lab, k2.keepalived
        since = ka.mark()
        keepalived_took_over(k2, lambda: lab.cut("lb1"), "lb1's cables out")
        assert "Backup received priority 0 advertisement" not in ka.log(since)
        lab.cut("lb1", connected=True)
        xdplb_preempted(k2, since)
        no_checksum_errors(k2)

    def test_without_the_pseudo_header_keepalived_rejects_xdplb(self, k2: Pair) -> None:
        """pseudo_header=False (RFC 9568 style peers) against keepalived: it drops every advert of xdplb
        as a bad checksum, so both are master. xdplb accepts keepalived's, either way."""
        lab, lb1, ka = k2.lab, k2.xdplb, k2.keepalived
        since = ka.mark()
        restart_xdplb(lb1, ha_settings(150, pseudo_header=False))
        wait_for("split brain", lambda: vrrp_state(lb1) == "master" and ka.state() == "master"
                 and BAD_CHECKSUM in ka.log(since), TAKEOVER_DEADLINE * 2)
        time.sleep(1.0)
        assert vrrp_state(lb1) == "master" and ka.state() == "master"
        assert holds_vip(lab, "lb1") and holds_vip(lab, "lb2")
        assert f"Master received advert from {LB1}" not in ka.log(since)
        s = lb1.vrrp()
        assert s["counters"]["invalid"] == {} and s["counters"]["lower_priority_masters"] >= 1, s["counters"]
        print(f"\npseudo_header=False: keepalived logged {ka.log(since).count(BAD_CHECKSUM)} checksum errors; "
              "split brain")


def test_nothing_left_behind(lab: Lab) -> None:
    """After both classes: no keepalived of this lab's, no VIP on a director."""
    for host in ("lb1", "lb2"):
        assert not holds_vip(lab, host)
        pids = net.namespace_pids(lab.ns(host))
        assert "keepalived" not in {command(pid) for pid in pids}


def command(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None
