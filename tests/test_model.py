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
    (dict(method="nat"), "method"),
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
