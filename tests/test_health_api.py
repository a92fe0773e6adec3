"""Health checks through the manager and the API, on the real data plane: the monitor checks local
listeners standing in for two backends (each backend's check goes to its own loopback port); a
listener closed takes its backend out of the data plane, and every view says so."""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from tests import packets as pk
from tests.conftest import API_TOKEN
from xdplb.api.context import ApiContext
from xdplb.api.main import create_app
from xdplb.apiserver import ApiServer
from xdplb.model import Service

pytestmark = [pytest.mark.health, pytest.mark.api]


class Listener:
    """A TCP port that accepts (and closes) connections until closed itself."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def monitored(manager):
    from xdplb.health.monitor import HealthMonitor

    monitor = HealthMonitor(manager.on_health).start()
    manager.start(monitor)
    try:
        yield manager
    finally:
        monitor.stop()
        manager.monitor = None


def _service(ports: list[int], **kw) -> Service:
    backends = [{"address": f"10.100.1.{11 + i}", "check": {"type": "tcp", "address": "127.0.0.1", "port": port,
                                                             "interval": 0.05, "timeout": 0.5, "rise": 2, "fall": 2}}
                for i, port in enumerate(ports)]
    return Service.model_validate({"protocol": "tcp", "vip": "10.100.0.100", "port": 80, "ring_size": 4099,
                                   "backends": backends, **kw})


def _wait(cond, deadline: float = 5.0) -> None:
    end = time.monotonic() + deadline
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


def test_a_backend_down_leaves_the_data_plane_and_every_view_says_why(monitored):
    manager = monitored
    a, b = Listener(), Listener()
    try:
        manager.add_service(_service([a.port, b.port]))
        app = create_app(ApiContext(manager, API_TOKEN))
        with TestClient(app) as api:
            _wait(lambda: all(r["checked"] for r in api.get("/v1/health").json()))
            first_event = manager.events.last_id
            b.close()
            _wait(lambda: not api.get("/v1/health").json()[1]["up"])
            row = api.get("/v1/health", params={"service": "tcp:10.100.0.100:80"}).json()[1]
            assert (row["backend"], row["state"], row["check"]) == ("10.100.1.12", "down", "tcp")
            assert "refused" in row["reason"].lower() and row["failures"] >= 2
            # the data plane: 10.100.1.12 is out of the tables, new flows all go to .11
            assert [str(x.address) for x in manager.dp.services[0].backends] == ["10.100.1.11"]
            only = pk.backend_mac(int(ipaddress.ip_address("10.100.1.11")) % 200)  # tests.conftest.lab_resolver
            assert {pk.backend_of(manager.dp.run(pk.tcp(sport=20000 + i)).frame) for i in range(20)} == {only}
            # the desired state is unchanged: health is not configuration
            assert len(manager.state.services[0].backends) == 2
            assert 'xdplb_backend_up{backend="10.100.1.12",check="tcp",service="tcp:10.100.0.100:80"} 0.0' in \
                api.get("/metrics").text
            events = [e for e in manager.events.since(first_event, 0) if e.kind == "health"]
            assert [(e.data["backend"], e.data["state"]) for e in events] == [("10.100.1.12", "down")]
    finally:
        a.close()
        b.close()


def test_all_down_sorry_server_and_quorum_hooks(monitored, tmp_path):
    manager = monitored
    a = Listener()
    log = tmp_path / "quorum.log"
    record = ["python3", "-c", f"import sys; open({str(log)!r}, 'a').write(' '.join(sys.argv[1:]) + chr(10))"]
    manager.add_service(_service([a.port], sorry_server={"address": "10.100.1.99"},
                                 quorum={"on_down": [*record, "down"], "on_up": [*record, "up"]}))
    _wait(lambda: manager.health_states()[0][1] is not None)
    a.close()
    _wait(lambda: [str(x.address) for x in manager.dp.services[0].backends] == ["10.100.1.99"])
    _wait(lambda: log.exists() and log.read_text() == "down tcp:10.100.0.100:80\n")
    assert [e.data["sorry_server"] for e in manager.events.since(0, 0) if e.kind == "quorum"] == [True]


def test_server_sent_events_stream_health_transitions(monitored, tmp_path):
    manager = monitored
    a = Listener()
    server = ApiServer(create_app(ApiContext(manager, API_TOKEN)), f"unix:{tmp_path}/api.sock").start()
    try:
        manager.add_service(_service([a.port]))
        _wait(lambda: manager.health_states()[0][1] is not None)
        got: list[dict] = []

        def read() -> None:
            transport = httpx.HTTPTransport(uds=str(tmp_path / "api.sock"))
            with httpx.Client(transport=transport, base_url="http://lb", timeout=10) as c, \
                    c.stream("GET", "/v1/events") as r:
                event = {}
                for line in r.iter_lines():
                    if line.startswith("event: "):
                        event["event"] = line[7:]
                    elif line.startswith("data: "):
                        event["data"] = json.loads(line[6:])
                    elif not line and event:
                        got.append(event)
                        if event["event"] == "health":
                            return
                        event = {}

        reader = threading.Thread(target=read)
        reader.start()
        time.sleep(0.3)  # the stream is open: only what comes next
        a.close()
        reader.join(timeout=10)
        assert got and got[-1]["event"] == "health"
        assert got[-1]["data"]["backend"] == "10.100.1.11" and got[-1]["data"]["state"] == "down"
    finally:
        server.stop()
        a.close()
