"""Fifty operators at once, through a real server (uvicorn on a Unix socket): every change is
serialized, none is lost, read-modify-write with If-Match retries instead of overwriting, and the end
state is the same in memory, in the state file and in the data plane's maps."""

from __future__ import annotations

import threading

import httpx
import numpy as np
import pytest

from tests.conftest import API_TOKEN
from xdplb.api.context import ApiContext
from xdplb.api.main import create_app
from xdplb.apiserver import ApiServer
from xdplb.store import Store

pytestmark = pytest.mark.api

WRITERS = 50
SID = "tcp:10.100.0.100:80"
SEED = {"protocol": "tcp", "vip": "10.100.0.100", "port": 80, "scheduler": "mh", "ring_size": 4099,
        "backends": [{"address": "10.100.1.1"}]}


@pytest.fixture
def server(manager, tmp_path):
    sock = tmp_path / "api.sock"
    srv = ApiServer(create_app(ApiContext(manager, API_TOKEN)), f"unix:{sock}").start()
    try:
        yield sock
    finally:
        srv.stop()


def _client(sock) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)), base_url="http://xdplb", timeout=60,
                        headers={"Authorization": f"Bearer {API_TOKEN}"})


def _add_backend(sock, i: int, results: list) -> None:
    with _client(sock) as c:
        results[i] = c.post(f"/v1/services/{SID}/backends", json={"address": f"10.100.2.{i + 1}", "weight": 1 + i % 5})


def _read_modify_write(sock, i: int, results: list) -> None:
    """GET the whole configuration, add a backend to the UDP service in it, PUT it back with If-Match;
    again on 412."""
    with _client(sock) as c:
        for attempt in range(1, 500):
            got = c.get("/v1/config")
            services = [{k: v for k, v in s.items() if k != "id"} for s in got.json()["services"]]
            udp = next(s for s in services if s["protocol"] == "udp")
            udp["backends"].append({"address": f"10.100.3.{i + 1}"})
            r = c.put("/v1/config", json={"services": services}, headers={"If-Match": got.headers["etag"]})
            if r.status_code != 412:
                results[i] = (r, attempt)
                return


def _storm(target, sock) -> list:
    results: list = [None] * WRITERS
    threads = [threading.Thread(target=target, args=(sock, i, results)) for i in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def _assert_consistent(manager) -> None:
    """Memory, file and maps agree: the state file holds what the manager holds, the data plane's
    record is that state, a reconciler pass over it writes nothing, and each service's Maglev rows
    in the map are the ones its record says."""
    dp = manager.dp
    assert Store(manager.store.dir).load() == manager.state
    assert {s.key: s for s in dp.services} == {s.key: s for s in manager.state.services}
    assert sum(manager.reconciler.apply(manager.state.services, manager.state.timeouts).written.values()) == 0
    for svc in manager.state.services:
        record = dp._services[svc.key]
        rows = dp._read_rows("rings", record.id * dp.sizes.ring_max, svc.ring_size)
        assert np.array_equal(rows, record.ring)


def test_fifty_concurrent_writers_end_in_one_consistent_state(manager, server):
    with _client(server) as c:
        assert c.post("/v1/services", json=SEED).status_code == 201
        assert c.post("/v1/services", json={**SEED, "protocol": "udp", "port": 53}).status_code == 201
    start = manager.version

    added = _storm(_add_backend, server)
    assert all(r.status_code == 201 for r in added), [r.text for r in added if r.status_code != 201][:3]
    versions = sorted(int(r.headers["etag"].strip('"')) for r in added)
    assert versions == list(range(start + 1, start + WRITERS + 1))  # one version each, none lost
    assert len(manager.service(("tcp", manager.state.services[0].vip, 80)).backends) == WRITERS + 1

    rmw = _storm(_read_modify_write, server)
    assert all(r.status_code == 200 for r, _ in rmw), [r.text for r, _ in rmw if r.status_code != 200][:3]
    assert max(attempts for _, attempts in rmw) > 1  # writers did collide, and retried instead of overwriting
    udp = next(s for s in manager.state.services if s.protocol == "udp")
    assert {str(b.address) for b in udp.backends} == {"10.100.1.1", *(f"10.100.3.{i + 1}" for i in range(WRITERS))}
    assert manager.version == start + 2 * WRITERS
    _assert_consistent(manager)
