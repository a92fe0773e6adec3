"""Persistence templates (ipvsadm -p timeout -M netmask) and multi-port services with real frames:
a client network keeps its backend across connections and, on a multi-port service, across its
ports; a template expires after its timeout unless a live connection still uses it."""

from __future__ import annotations

import pytest

from tests import packets as pk
from xdplb.datapath import ConfigError
from xdplb.model import Endpoint

pytestmark = pytest.mark.datapath


def configure(dp, version=4, **kw):
    bes = pk.backends(4, version)
    svc = pk.service(version=version, scheduler=kw.pop("scheduler", "rr"), backends=bes, **kw)
    dp.set_service(svc, pk.nexthops(bes))
    return svc


def backend(dp, src, sport, dport=80, version=4):
    res = dp.run(pk.tcp(src=src, sport=sport, dport=dport, version=version))
    assert res.verdict == "TX"
    return pk.backend_of(res.frame)


@pytest.mark.parametrize(("version", "netmask", "same", "other"), [
    (4, None, "10.99.1.5", "10.99.1.6"),
    (4, 24, "10.99.1.200", "10.99.2.5"),
    (4, "255.255.0.0", "10.99.77.1", "10.98.1.5"),
    (6, 64, "2001:db8:1:1::99", "2001:db8:1:2::5"),
    (6, None, "2001:db8:1:1::5", "2001:db8:1:1::6"),
])
def test_client_network_sticks_to_one_backend(dp, one_cpu, version, netmask, same, other):
    """rr would spread these connections over four backends; persistence keeps the network on one."""
    first = "10.99.1.5" if version == 4 else "2001:db8:1:1::5"
    configure(dp, version, persistence={"timeout": 300, "netmask": netmask})
    chosen = backend(dp, first, 20000, version=version)
    assert {backend(dp, first, 20001 + i, version=version) for i in range(8)} == {chosen}
    assert {backend(dp, same, 20100 + i, version=version) for i in range(8)} == {chosen}
    others = {backend(dp, other, 20200 + i, version=version) for i in range(8)}
    assert len(others) == 1 and others != {chosen}  # its own template, from rr's next pick


def test_without_persistence_rr_spreads_the_same_client(dp, one_cpu):
    configure(dp)
    assert len({backend(dp, "10.99.1.5", 20300 + i) for i in range(8)}) == 4


def test_template_expires_after_its_timeout_unless_in_use(dp, one_cpu):
    configure(dp, persistence={"timeout": 60})
    chosen = backend(dp, "10.99.1.5", 21000)
    dp.run(pk.tcp(src="10.99.1.5", sport=21000, flags="A"))  # a live connection uses the template
    dp.shift_clock(61)
    dp.run(pk.tcp(src="10.99.1.5", sport=21000, flags="A"))
    assert dp.sweep().templates_expired == 0      # kept: it still controls a connection
    assert backend(dp, "10.99.1.5", 21001) == chosen
    dp.run(pk.tcp(src="10.99.1.5", sport=21000, flags="FA"))
    dp.run(pk.tcp(src="10.99.1.5", sport=21001, flags="R"))
    dp.shift_clock(dp.timeouts.tcpfin + 61)
    report = dp.sweep()
    assert report.expired >= 2 and report.templates_expired == 1
    assert sum(1 for _ in dp.maps["persist"].items_lookup_batch()) == 0


def test_expired_template_is_not_used_before_the_sweep(dp, one_cpu):
    configure(dp, persistence={"timeout": 30})
    chosen = backend(dp, "10.99.1.5", 21100)
    dp.shift_clock(31)
    got = {backend(dp, "10.99.1.5", 21101 + i) for i in range(4)}
    assert got != {chosen}  # rr again for the first, then the new template holds
    assert len(got) <= 2


def test_template_to_a_removed_backend_is_replaced(dp):
    svc = configure(dp, scheduler="wlc", persistence={"timeout": 300})
    chosen = backend(dp, "10.99.1.5", 21200)
    left = tuple(b for i, b in enumerate(svc.backends) if pk.backend_mac(i) != chosen)
    dp.set_service(svc.model_copy(update={"backends": left}))
    again = backend(dp, "10.99.1.5", 21201)
    assert again != chosen
    assert backend(dp, "10.99.1.5", 21202) == again


def test_port_zero_service_with_persistence_keeps_the_client_across_ports(dp, one_cpu):
    configure(dp, port=0, persistence={"timeout": 300})
    chosen = backend(dp, "10.99.1.5", 21300, dport=21)
    assert {backend(dp, "10.99.1.5", 21301 + i, dport=p) for i, p in enumerate((20, 80, 443, 8080))} == {chosen}


def test_multi_port_service_shares_backends_state_and_persistence(dp, one_cpu):
    extra = (Endpoint(protocol="tcp", vip=pk.VIP4, port=443), Endpoint(protocol="udp", vip=pk.VIP4, port=443))
    svc = configure(dp, fwmark=1, endpoints=extra, persistence={"timeout": 300})
    chosen = backend(dp, "10.99.1.5", 21400, dport=80)
    assert backend(dp, "10.99.1.5", 21401, dport=443) == chosen
    res = dp.run(pk.udp(src="10.99.1.5", sport=21402, dport=443))
    assert pk.backend_of(res.frame) == chosen
    stats = dp.service_stats(svc.key)
    assert stats["conns"] == 3
    assert sum(a + i for a, i in dp.backend_counts(svc.key).values()) == 3
    assert dp.simulate(pk.tcp(dport=8443)).verdict == "PASS"


def test_multi_port_endpoints_follow_updates_and_conflicts_are_refused(dp):
    svc = configure(dp, fwmark=2, endpoints=(Endpoint(protocol="tcp", vip=pk.VIP4, port=443),))
    assert dp.simulate(pk.tcp(dport=443)).verdict == "TX"
    moved = svc.model_copy(update={"endpoints": (Endpoint(protocol="tcp", vip=pk.VIP4, port=8443),)})
    dp.set_service(moved)
    assert dp.simulate(pk.tcp(dport=443)).verdict == "PASS"
    assert dp.simulate(pk.tcp(dport=8443)).verdict == "TX"
    clash = pk.service(port=8443, backends=pk.backends(1))
    with pytest.raises(ConfigError, match="already belongs"):
        dp.set_service(clash, pk.nexthops(clash.backends))
    dp.remove_service(moved.key)
    assert dp.simulate(pk.tcp(dport=80)).verdict == "PASS"
    assert dp.simulate(pk.tcp(dport=8443)).verdict == "PASS"


def test_nat_is_refused_until_built(dp):
    svc = pk.service(method="nat", backends=pk.backends(1))
    with pytest.raises(ConfigError, match="not available yet"):
        dp.set_service(svc, pk.nexthops(svc.backends))
    assert dp.services == []
