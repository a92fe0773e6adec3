"""The REST API against a real data plane: every change is in the maps when the call returns, and
every refused change leaves maps, state and version as they were."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from scapy.layers.l2 import Ether

from tests import packets as pk
from tests.conftest import API_TOKEN, maps_snapshot
from xdplb.api.context import ApiContext
from xdplb.api.main import create_app
from xdplb.store import Store

pytestmark = pytest.mark.api

SID = "tcp:10.100.0.100:80"
SVC = {"protocol": "tcp", "vip": "10.100.0.100", "port": 80, "scheduler": "wrr",
       "backends": [{"address": "10.100.1.11", "weight": 3}, {"address": "10.100.1.12", "weight": 1}]}
SVC6 = {"protocol": "udp", "vip": "2001:db8::100", "port": 53, "scheduler": "mh",
        "backends": [{"address": "2001:db8:1::11"}]}


def _unchanged(api: TestClient, manager, action) -> object:
    """Runs a request that must be refused; proves it changed neither the maps nor the state."""
    before_maps, before_state = maps_snapshot(manager.dp), manager.state
    before_file = Store(manager.store.dir).load()
    r = action(api)
    assert 400 <= r.status_code < 500, r.text
    assert maps_snapshot(manager.dp) == before_maps
    assert manager.state == before_state
    assert Store(manager.store.dir).load() == before_file
    body = r.json()
    assert body["errors"] and body["detail"]
    return r


def test_service_lifecycle_reaches_the_data_plane_and_the_store(api, manager):
    r = api.post("/v1/services", json=SVC)
    assert r.status_code == 201 and r.json()["diff"]["added"] == [SID]
    version = int(r.headers["etag"].strip('"'))
    assert version == manager.version == Store(manager.store.dir).load().version
    [svc] = manager.dp.services
    assert svc.id == SID and [b.weight for b in svc.backends] == [3, 1]
    assert api.get(f"/v1/services/{SID}").json()["id"] == SID

    r = api.put(f"/v1/services/{SID}", json={**SVC, "scheduler": "wlc"})
    assert r.json()["diff"]["changed"][SID]["fields"] == {"scheduler": ["wrr", "wlc"]}
    assert manager.dp.services[0].scheduler == "wlc"

    assert api.delete(f"/v1/services/{SID}").status_code == 200
    assert manager.dp.services == [] and Store(manager.store.dir).load().services == []
    assert api.get(f"/v1/services/{SID}").status_code == 404


def test_backends_add_patch_drain_remove(api, manager):
    api.post("/v1/services", json=SVC)
    base = f"/v1/services/{SID}/backends"
    assert api.post(base, json={"address": "10.100.1.13", "weight": 2}).status_code == 201
    assert api.patch(f"{base}/10.100.1.13", json={"weight": 5}).json()["diff"]["changed"][SID]["backends"] == {
        "added": [], "removed": [], "changed": {"10.100.1.13": {"weight": [2, 5]}}}
    assert api.post(f"{base}/10.100.1.11/drain").status_code == 200
    weights = {str(b.address): b.weight for b in manager.dp.services[0].backends}
    assert weights == {"10.100.1.11": 0, "10.100.1.12": 1, "10.100.1.13": 5}
    assert api.get(f"{base}/10.100.1.13").json()["weight"] == 5
    # a drained backend takes no new connection: every new flow goes to the two others
    got = {pk.backend_of(manager.dp.run(pk.tcp(sport=20000 + i)).frame) for i in range(40)}
    assert pk.backend_mac(int(__import__("ipaddress").ip_address("10.100.1.11")) % 200) not in got
    assert api.delete(f"{base}/10.100.1.13").status_code == 200
    assert [str(b.address) for b in manager.dp.services[0].backends] == ["10.100.1.11", "10.100.1.12"]
    assert api.delete(f"{base}/10.100.1.13").status_code == 404


def test_whole_config_dry_run_then_apply(api, manager):
    api.post("/v1/services", json=SVC)
    doc = {"services": [SVC6, {**SVC, "backends": SVC["backends"][:1]}], "timeouts": {"tcp": 600}}
    before = maps_snapshot(manager.dp)
    r = api.put("/v1/config", params={"dry_run": True}, json=doc)
    diff = r.json()["diff"]
    assert r.json()["dry_run"] and diff["added"] == ["udp:[2001:db8::100]:53"]
    assert diff["changed"][SID]["backends"]["removed"] == ["10.100.1.12"]
    assert diff["timeouts"] == {"tcp": [900, 600]}
    assert maps_snapshot(manager.dp) == before and r.json()["version"] == manager.version

    r = api.put("/v1/config", json=doc)
    assert r.status_code == 200 and not r.json()["dry_run"]
    assert {s.id for s in manager.dp.services} == {SID, "udp:[2001:db8::100]:53"}
    assert manager.dp.timeouts.tcp == 600
    got = api.get("/v1/config")
    assert got.headers["etag"] == f'"{manager.version}"' and len(got.json()["services"]) == 2


def test_all_or_nothing_when_one_service_cannot_be_placed(api, manager):
    api.post("/v1/services", json=SVC)
    unroutable = {**SVC6, "backends": [{"address": "2001:db8:1::11"}], "vip": "2001:db8::101"}
    bad = {"protocol": "tcp", "vip": "10.100.0.101", "port": 80, "backends": [{"address": "192.0.2.7"}]}
    r = _unchanged(api, manager, lambda c: c.put("/v1/config", json={"services": [unroutable, bad]}))
    assert r.status_code == 422 and "no route to backend 192.0.2.7" in r.json()["detail"]


BAD_REQUESTS = [
    ("bad address", "post", "/v1/services", {**SVC, "vip": "10.100.0.300"}, 422, "is not an IPv4 or IPv6 address"),
    ("port out of range", "post", "/v1/services", {**SVC, "port": 65536}, 422, "less than or equal to 65535"),
    ("unknown scheduler", "post", "/v1/services", {**SVC, "scheduler": "lblc"}, 422, "Input should be 'rr'"),
    ("duplicate service", "post", "/v1/services", SVC, 409, "exists already"),
    ("weight out of range", "post", f"/v1/services/{SID}/backends", {"address": "10.100.1.20", "weight": 70000},
     422, "less than or equal to 65535"),
    ("wrong family", "post", f"/v1/services/{SID}/backends", {"address": "2001:db8:1::20"}, 422,
     "only TUN crosses families"),
    ("port mapping in DR", "post", f"/v1/services/{SID}/backends", {"address": "10.100.1.20", "port": 8080},
     422, "port mapping (80 -> 8080) needs NAT"),
    ("port mapping in TUN", "put", f"/v1/services/{SID}",
     {**SVC, "method": "tun", "backends": [{"address": "10.100.1.20", "port": 81}]}, 422, "needs NAT"),
    ("a backend twice", "post", f"/v1/services/{SID}/backends", {"address": "10.100.1.11"}, 409, "exists already"),
    ("unknown field", "post", "/v1/services", {**SVC, "port": 81, "weight": 3}, 422, "Extra inputs"),
    ("two services on one endpoint", "put", "/v1/config",
     {"services": [SVC, {**SVC, "fwmark": 9, "port": 81, "endpoints": [{"protocol": "tcp", "vip": "10.100.0.100",
                                                                         "port": 80}]}]}, 422, "listens on"),
    ("id and body disagree", "put", f"/v1/services/{SID}", {**SVC, "port": 81}, 422, "own id is"),
    ("no such service", "delete", "/v1/services/tcp:10.9.9.9:80", None, 404, "no service"),
    ("not a service id", "get", "/v1/services/http:foo", None, 404, "not tcp or udp"),
    ("NAT is not there yet", "post", "/v1/services", {**SVC, "port": 82, "method": "nat"}, 422, "not available yet"),
    ("a ring that is not prime", "post", "/v1/services", {**SVC, "port": 83, "ring_size": 100}, 422, "prime"),
    ("bad JSON", "post", "/v1/services", "{", 422, "JSON"),
    ("bad If-Match", "delete", f"/v1/services/{SID}", None, 400, "not an ETag"),
]


@pytest.mark.parametrize(("what", "method", "path", "body", "status", "message"), BAD_REQUESTS,
                         ids=[b[0] for b in BAD_REQUESTS])
def test_bad_input_is_refused_with_a_message_and_changes_nothing(api, manager, what, method, path, body, status,
                                                                  message):
    api.post("/v1/services", json=SVC)
    headers = {"If-Match": "seven"} if what == "bad If-Match" else {}
    kw = {"content": body, "headers": {**headers, "Content-Type": "application/json"}} if isinstance(body, str) \
        else {"json": body, "headers": headers} if body is not None else {"headers": headers}
    r = _unchanged(api, manager, lambda c: c.request(method.upper(), path, **kw))
    assert r.status_code == status, r.text
    assert message in r.json()["detail"], r.json()


def test_authentication(api, manager):
    no_token = {"Authorization": ""}
    r = _unchanged(api, manager, lambda c: c.post("/v1/services", json=SVC, headers=no_token))
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    r = _unchanged(api, manager, lambda c: c.post("/v1/services", json=SVC, headers={"Authorization": "Bearer x"}))
    assert r.status_code == 403
    assert api.get("/v1/services", headers=no_token).status_code == 200  # reads are open by default

    app = create_app(ApiContext(manager, API_TOKEN, auth_reads=True))
    with TestClient(app) as anonymous:
        for path in ("/v1/services", "/v1/config", "/v1/stats", "/v1/connections", "/metrics"):
            assert anonymous.get(path).status_code == 401, path
        assert anonymous.get("/healthz").status_code == 200
        assert anonymous.get("/v1/services", headers={"Authorization": f"Bearer {API_TOKEN}"}).status_code == 200


def test_optimistic_concurrency(api, manager):
    r = api.post("/v1/services", json=SVC)
    seen = r.headers["etag"]
    assert api.get("/v1/config").headers["etag"] == seen
    api.post(f"/v1/services/{SID}/backends", json={"address": "10.100.1.13"}, headers={"If-Match": seen})
    stale = {"If-Match": seen}
    r = _unchanged(api, manager, lambda c: c.put("/v1/config", json={"services": []}, headers=stale))
    assert r.status_code == 412 and "another change came first" in r.json()["detail"]
    fresh = api.get("/v1/config").headers["etag"]
    assert api.put("/v1/config", json={"services": []}, headers={"If-Match": fresh}).status_code == 200


def test_stats_connections_and_metrics_count_real_frames(api, manager, one_cpu):
    api.post("/v1/services", json={**SVC, "scheduler": "rr"})
    for i in range(8):
        manager.dp.run(pk.tcp(sport=30000 + i))
        manager.dp.run(pk.tcp(sport=30000 + i, flags="A", payload=b"x" * 100))
    [row] = api.get("/v1/stats").json()
    assert row["stats"]["conns"] == 8 and row["stats"]["in_pkts"] == 16
    per_backend = {b["address"]: b for b in row["backends"]}
    assert {a: b["stats"]["conns"] for a, b in per_backend.items()} == {"10.100.1.11": 4, "10.100.1.12": 4}
    assert {a: b["active"] for a, b in per_backend.items()} == {"10.100.1.11": 4, "10.100.1.12": 4}
    assert api.get("/v1/stats", params={"service": "tcp:10.9.9.9:80"}).status_code == 404

    page = api.get("/v1/connections", params={"limit": 3}).json()
    assert page["total"] == 8 and len(page["items"]) == 3
    rest = api.get("/v1/connections", params={"offset": 3, "limit": 100}).json()["items"]
    assert sorted(c["client_port"] for c in page["items"] + rest) == list(range(30000, 30008))
    only = api.get("/v1/connections", params={"backend": "10.100.1.12", "state": "established"}).json()
    assert only["total"] == 4 and {c["backend"] for c in only["items"]} == {"10.100.1.12"}
    assert api.get("/v1/connections", params={"service": "tcp:10.100.0.100:81"}).status_code == 404
    assert api.get("/v1/connections", params={"client": "nope"}).status_code == 422

    text = api.get("/metrics").text
    assert f'xdplb_backend_connections_total{{backend="10.100.1.11",service="{SID}"}} 4.0' in text
    assert f'xdplb_backend_active_connections{{backend="10.100.1.12",service="{SID}"}} 4.0' in text
    assert f"xdplb_state_version {manager.version}.0" in text
    assert 'xdplb_packets_total{reason="conn_new"}' in text


def test_simulate_predicts_and_changes_nothing(api, manager):
    api.post("/v1/services", json=SVC)
    before = maps_snapshot(manager.dp)
    r = api.get("/v1/simulate", params={"source": "10.100.9.1:5555", "destination": "10.100.0.100:80"}).json()
    assert maps_snapshot(manager.dp) == before
    assert r["verdict"] == "TX" and r["reason"] == "conn_new" and r["service"] == SID
    sent = manager.dp.run(bytes.fromhex(r["frame_in"]))
    assert sent.frame.hex() == r["frame_out"]
    assert Ether(sent.frame).dst == pk.backend_mac(int(__import__("ipaddress").ip_address(r["backend"])) % 200)
    miss = api.get("/v1/simulate", params={"source": "10.100.9.1:5555", "destination": "10.100.0.99:80",
                                           "protocol": "udp"}).json()
    assert (miss["verdict"], miss["reason"], miss["service"]) == ("PASS", "pass_not_vip", None)
    assert api.get("/v1/simulate", params={"source": "10.1.1.1:1", "destination": "[2001:db8::1]:80"}
                   ).status_code == 422


def test_health_and_readiness(manager):
    problems: list[str] = []
    app = create_app(ApiContext(manager, API_TOKEN, problems=lambda: problems))
    with TestClient(app) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        assert c.get("/readyz").status_code == 200
        problems.append("not attached to eth0")
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json()["problems"] == ["not attached to eth0"]


def test_openapi_documents_every_resource(api):
    paths = api.get("/openapi.json").json()["paths"]
    for path in ("/v1/services", "/v1/services/{service_id}", "/v1/services/{service_id}/backends/{address}/drain",
                 "/v1/config", "/v1/stats", "/v1/connections", "/v1/simulate", "/metrics", "/healthz", "/readyz"):
        assert path in paths, path
    assert api.get("/docs").status_code == 200
