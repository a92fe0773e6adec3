"""The rate estimator: IPVS's (2 s samples, each moving the average a quarter of the way), and the
rates the API shows for frames really counted by the data plane."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests import packets as pk
from tests.conftest import API_TOKEN
from xdplb.api.context import ApiContext
from xdplb.api.main import create_app
from xdplb.rates import RateEstimator


def _counters(n: int) -> dict[str, int]:
    return {"conns": n, "in_pkts": 10 * n, "out_pkts": 0, "in_bytes": 1000 * n, "out_bytes": 0}


@pytest.mark.unit
def test_the_average_moves_a_quarter_of_the_way_like_ipvs():
    totals = iter([0, 200, 400, 400, 400])
    current: dict = {}
    est = RateEstimator(lambda: current)
    for _ in range(5):
        current = {("tcp:10.0.0.1:80", None): _counters(next(totals))}
        est.sample(2.0)
        if _ == 1:
            assert est.rates("tcp:10.0.0.1:80") == {"cps": 100.0, "inpps": 1000.0, "outpps": 0.0,
                                                    "inbps": 100000.0, "outbps": 0.0}
    # 100, then 100, then 0 -> 75, then 0 -> 56.25
    assert est.rates("tcp:10.0.0.1:80")["cps"] == 56.25
    assert est.rates("tcp:10.0.0.9:80") == dict.fromkeys(("cps", "inpps", "outpps", "inbps", "outbps"), 0.0)


@pytest.mark.unit
def test_a_removed_service_is_forgotten_and_starts_afresh():
    current = {("udp:10.0.0.1:53", None): _counters(0)}
    est = RateEstimator(lambda: current)
    est.sample(2.0)
    current = {("udp:10.0.0.1:53", None): _counters(50)}
    est.sample(2.0)
    assert est.rates("udp:10.0.0.1:53")["cps"] == 25.0
    current = {}
    est.sample(2.0)
    current = {("udp:10.0.0.1:53", None): _counters(0)}  # added again: its counters start at zero
    est.sample(2.0)
    assert est.rates("udp:10.0.0.1:53")["cps"] == 0.0


@pytest.mark.api
def test_the_api_shows_rates_of_real_frames(manager):
    manager.add_service(_service())
    est = RateEstimator(manager.counters, interval=0.2)
    est.sample(1.0)
    for i in range(40):
        manager.dp.run(pk.tcp(sport=31000 + i))
    est.sample(2.0)  # 40 connections over 2 s
    app = create_app(ApiContext(manager, API_TOKEN, rates=est))
    with TestClient(app) as c:
        [row] = c.get("/v1/stats").json()
    assert row["rates"]["cps"] == 20.0 and row["rates"]["inpps"] == 20.0
    assert sum(b["rates"]["cps"] for b in row["backends"]) == 20.0


def _service():
    from xdplb.model import Service

    return Service.model_validate({"protocol": "tcp", "vip": "10.100.0.100", "port": 80, "ring_size": 4099,
                                   "backends": [{"address": "10.100.1.11"}, {"address": "10.100.1.12"}]})
