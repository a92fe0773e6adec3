"""Validation of services and backends: bad input is refused with a message that names it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from xdplb.model import Backend, Service

pytestmark = [pytest.mark.datapath, pytest.mark.unit]

GOOD = dict(protocol="tcp", vip="10.100.0.100", port=80)


@pytest.mark.parametrize(("change", "message"), [
    (dict(vip="10.100.0.300"), "vip"),
    (dict(port=65536), "port"),
    (dict(port=-1), "port"),
    (dict(protocol="sctp"), "protocol"),
    (dict(scheduler="lblc"), "scheduler"),
    (dict(method="fullnat"), "method"),
    (dict(backends=[{"address": "10.0.0.1", "port": 8080}]), "needs NAT"),
    (dict(method="tun", backends=[{"address": "10.0.0.1", "port": 8080}]), "TUN cannot change the port"),
    (dict(port=0, backends=[{"address": "10.0.0.1", "port": 80}]), "needs NAT"),
    (dict(backends=[{"address": "10.0.0.1", "upper_threshold": 10, "lower_threshold": 10}]), "below"),
    (dict(backends=[{"address": "10.0.0.1", "lower_threshold": 5}]), "needs an upper"),
    (dict(persistence={"timeout": 0}), "timeout"),
    (dict(persistence={"netmask": 33}), "does not fit"),
    (dict(persistence={"netmask": "255.0.255.0"}), "netmask"),
    (dict(endpoints=[{"protocol": "tcp", "vip": "10.100.0.100", "port": 443}]), "needs a fwmark"),
    (dict(fwmark=1, endpoints=[{"protocol": "tcp", "vip": "fd00::1", "port": 443}]), "IPv6"),
    (dict(fwmark=1, endpoints=[{"protocol": "tcp", "vip": "10.100.0.100", "port": 80}]), "twice"),
    (dict(ring_size=65536), "prime"),
    (dict(backends=[{"address": "fd00::1"}]), "IPv6"),
    (dict(backends=[{"address": "10.0.0.1"}, {"address": "10.0.0.1"}]), "twice"),
    (dict(backends=[{"address": "10.0.0.1", "weight": 65536}]), "weight"),
    (dict(sched_flags=["mh-port"]), "needs scheduler mh"),
    (dict(colour="red"), "colour"),
])
def test_bad_service_is_refused(change, message):
    with pytest.raises(ValidationError, match=message):
        Service(**{**GOOD, **change})


def test_good_service():
    svc = Service(**GOOD, scheduler="mh", sched_flags=["mh-port"],
                  backends=[{"address": "10.100.0.11", "weight": 0}, {"address": "10.100.0.12"}])
    assert svc.key == (svc.protocol, svc.vip, 80)
    assert svc.backends[1] == Backend(address="10.100.0.12", weight=1)
    assert str(svc) == "TCP 10.100.0.100:80 mh"


def test_nat_may_map_ports_and_netmasks_read_like_ipvsadm():
    svc = Service(**GOOD, method="nat", persistence={"timeout": 60, "netmask": "255.255.255.0"},
                  backends=[{"address": "10.200.0.21", "port": 8080}])
    assert svc.backends[0].port == 8080
    assert svc.persistence.netmask == 24


def test_multi_port_service_is_named_by_its_fwmark():
    svc = Service(**GOOD, fwmark=7, endpoints=[{"protocol": "tcp", "vip": "10.100.0.100", "port": 443}])
    assert svc.key == ("fwm", 7)
    assert [ep[2] for ep in svc.all_endpoints] == [80, 443]
    assert str(svc) == "FWM 7 wrr"
