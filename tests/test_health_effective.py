"""What health verdicts do to a service (xdplb/health/effective.py): pure, table by table."""

from __future__ import annotations

import ipaddress

import pytest

from xdplb.health.effective import Verdict, effective
from xdplb.model import Service

pytestmark = [pytest.mark.unit, pytest.mark.health]

A, B, C, SORRY = (ipaddress.ip_address(f"10.100.0.{n}") for n in (11, 12, 13, 99))


def _service(**kw) -> Service:
    data = {"protocol": "tcp", "vip": "10.100.0.100", "port": 80, "check": {"type": "tcp"},
            "backends": [{"address": str(A), "weight": 3}, {"address": str(B), "weight": 2},
                         {"address": str(C), "weight": 1}], **kw}
    return Service.model_validate(data)


def _weights(svc: Service) -> dict:
    return {b.address: b.weight for b in svc.backends}


def test_a_service_without_checks_is_untouched():
    svc = _service(check=None)
    out = effective(svc, {A: Verdict(False)})
    assert out.service is svc and out.quorum


def test_down_leaves_the_tables_or_drops_to_weight_zero():
    down = {B: Verdict(False)}
    assert _weights(effective(_service(), down).service) == {A: 3, C: 1}
    assert _weights(effective(_service(on_down="keep"), down).service) == {A: 3, B: 0, C: 1}
    inhibit = _service(backends=[{"address": str(A)}, {"address": str(B), "inhibit_on_failure": True}])
    assert _weights(effective(inhibit, down).service) == {A: 1, B: 0}


def test_a_dynamic_weight_replaces_the_configured_one_while_up():
    out = effective(_service(), {A: Verdict(True, 7), C: Verdict(True, 0)})
    assert _weights(out.service) == {A: 7, B: 2, C: 0} and out.live_weight == 9


def test_only_checked_backends_can_go_down():
    svc = _service(check=None, backends=[{"address": str(A), "check": {"type": "tcp"}}, {"address": str(B)}])
    assert _weights(effective(svc, {A: Verdict(False), B: Verdict(False)}).service) == {B: 1}


def test_all_down_sends_the_traffic_to_the_sorry_server():
    svc = _service(sorry_server={"address": str(SORRY)})
    out = effective(svc, dict.fromkeys((A, B, C), Verdict(False)))
    assert _weights(out.service) == {SORRY: 1} and out.sorry and not out.quorum
    assert not effective(_service(), dict.fromkeys((A, B, C), Verdict(False))).service.backends  # no sorry server


@pytest.mark.parametrize(("had", "live_up", "holds"), [
    (True, {A}, True),         # 3 >= 4 - 1: held
    (True, {C}, False),        # 1 < 3: lost
    (False, {A}, False),       # 3 < 4 + 1: not regained yet (hysteresis)
    (False, {A, B}, True),     # 5 >= 5: regained
])
def test_quorum_with_hysteresis(had, live_up, holds):
    svc = _service(quorum={"weight": 4, "hysteresis": 1}, sorry_server={"address": str(SORRY)})
    verdicts = {b: Verdict(b in live_up) for b in (A, B, C)}
    out = effective(svc, verdicts, had_quorum=had)
    assert out.quorum is holds and out.sorry is (not holds)
    assert _weights(out.service) == ({b: w for b, w in {A: 3, B: 2, C: 1}.items() if b in live_up} if holds
                                     else {SORRY: 1})


def test_a_port_0_service_needs_a_port_for_its_checks():
    with pytest.raises(ValueError, match="port-0 service needs its own port"):
        _service(port=0)
    assert _service(port=0, check={"type": "tcp", "port": 80}).check.port == 80
