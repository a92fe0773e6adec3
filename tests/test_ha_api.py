"""High availability through the API, the metrics and the CLI, against a real VRRP speaker: it runs
in a thread of its own inside a namespace, on a veth whose other end is a second namespace (a peer
that says nothing unless a test sends an advert from there), and becomes master after its
master-down interval since nobody else is on the link. Every change is checked in the speaker's
status and in the VIP on the interface; every refusal leaves the speaker as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from tests.conftest import API_TOKEN
from xdplb import client as client_mod
from xdplb.api.context import ApiContext
from xdplb.api.main import create_app
from xdplb.apiserver import ApiServer
from xdplb.cli import app as cli_app
from xdplb.net import addresses, configure_link, create_netns, enter_netns, in_netns, move_link, remove_netns
from xdplb.vrrp.config import HaSettings
from xdplb.vrrp.control import SpeakerClient
from xdplb.vrrp.packet import GROUP4, PROTO_VRRP, Advert, encode
from xdplb.vrrp.speaker import Speaker

pytestmark = [pytest.mark.ha, pytest.mark.api]

IF, PEER_IF = "xh-a", "xh-b"
ADDRESS, PEER_ADDRESS = "10.98.0.2", "10.98.0.3"
VIP = "10.98.0.100/32"
NAME = "vi_1"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
MASTER_WAIT = 3.0  # master-down is 0.34 s at 0.1 s adverts; a loaded machine gets room
CLEAN_ENV = {"XDPLB_URL": None, "XDPLB_TOKEN": None, "XDPLB_TOKEN_FILE": None, "XDPLB_CLI_CONFIG": None,
             "COLUMNS": "200"}


# ---- the speaker, for real ------------------------------------------------------------------------

def _settings(**instance) -> HaSettings:
    return HaSettings.model_validate({"instances": [{
        "name": NAME, "interface": IF, "vrid": 51, "priority": 150, "advert_interval": 0.1,
        "addresses": [VIP], "garp_repeat": 1, "garp_delay": 0, **instance}]})


class SpeakerThread:
    """A Speaker run as `xdplb speaker --netns` runs it, in a thread that moved into the namespace."""

    def __init__(self, settings: HaSettings, path: Path, ns: str) -> None:
        self.speaker = Speaker(settings, path)
        self.path, self.ns = path, ns
        self.error: BaseException | None = None
        self._opened = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-vrrp", daemon=True)

    def _run(self) -> None:
        try:
            enter_netns(self.ns)
            self.speaker.open()
        except BaseException as e:
            self.error = e
            self.speaker.close()
            return
        finally:
            self._opened.set()
        try:
            self.speaker.run()
        except BaseException as e:
            self.error = e

    def start(self) -> SpeakerThread:
        self._thread.start()
        assert self._opened.wait(10), "the speaker did not open"
        if self.error:
            raise self.error
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self.speaker.stop()
        self._thread.join(10)
        assert not self._thread.is_alive(), "the speaker did not stop"
        assert self.error is None, repr(self.error)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """Unix socket paths must fit in 108 bytes: pytest's tmp_path may not."""
    path = Path(tempfile.mkdtemp(prefix="xdplb-ha-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def link() -> Iterator[tuple[str, str]]:
    """Two namespaces (the director's, a peer's) joined by a veth, both ends up and addressed;
    removed even when the test fails."""
    if os.geteuid() != 0:
        pytest.skip("namespaces need root")
    ns, peer = f"xdplbha-{os.getpid()}", f"xdplbhp-{os.getpid()}"
    for name in (ns, peer):
        remove_netns(name)
    try:
        create_netns(ns)
        create_netns(peer)
        with in_netns(ns):
            from xdplb.net import add_veth

            add_veth(IF, PEER_IF)
            move_link(PEER_IF, peer)
            configure_link(IF, f"{ADDRESS}/24")
        with in_netns(peer):
            configure_link(PEER_IF, f"{PEER_ADDRESS}/24")
        yield ns, peer
    finally:
        remove_netns(ns)
        remove_netns(peer)


def _wait(cond: Callable[[], bool], deadline: float = MASTER_WAIT, what: str = "timed out") -> None:
    end = time.monotonic() + deadline
    while not cond():
        assert time.monotonic() < end, what
        time.sleep(0.02)


def _instance(client: SpeakerClient) -> dict:
    [inst] = client.status()["instances"]
    return inst


@pytest.fixture
def speaker(link, short_dir) -> Iterator[SpeakerThread]:
    """The speaker on the director's end of the link, master (nobody else there)."""
    running = SpeakerThread(_settings(), short_dir / "vrrp.sock", link[0]).start()
    try:
        client = SpeakerClient(running.path)
        _wait(lambda: _instance(client)["state"] == "master", what="the lone speaker did not become master")
        yield running
    finally:
        running.stop()


def vips(ns: str) -> list[str]:
    with in_netns(ns):
        return [a for a in addresses(IF) if a == VIP]


def send_advert(peer: str, priority: int, ttl: int = 255, interval_cs: int = 100, vrid: int = 51) -> None:
    """One advert from the peer's end, as a VRRP router there would send it (raw, TTL 255)."""
    source = IPv4Address(PEER_ADDRESS)
    message = encode(Advert(vrid, priority, interval_cs, (IPv4Address(VIP.split("/")[0]),)), source, GROUP4)
    with in_netns(peer), socket.socket(socket.AF_INET, socket.SOCK_RAW, PROTO_VRRP) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, PEER_IF.encode())
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(PEER_ADDRESS))
        s.sendto(message, (str(GROUP4), 0))


def stable(status: dict) -> list[dict]:
    """What a request may change in a status: all but the counters and the times."""
    return [{**{k: v for k, v in i.items() if k not in ("counters", "since", "transitions")},
             "transitions": [(t["from"], t["to"], t["reason"]) for t in i["transitions"]]}
            for i in status["instances"]]


# ---- the API --------------------------------------------------------------------------------------

@pytest.fixture
def api(manager, speaker) -> Iterator[TestClient]:
    app = create_app(ApiContext(manager, API_TOKEN, ha=SpeakerClient(speaker.path)))
    with TestClient(app, headers=AUTH) as client:
        yield client


def _one(r) -> dict:
    assert r.status_code == 200, r.text
    [inst] = r.json()["instances"]
    return inst


def _state(api: TestClient) -> dict:
    return _one(api.get("/v1/ha"))


def _wait_master(api: TestClient) -> dict:
    _wait(lambda: _state(api)["state"] == "master", what="not master again")
    return _state(api)


def test_status_shows_the_master_and_its_vip(api, speaker):
    r = api.get("/v1/ha")
    assert r.status_code == 200
    body = r.json()
    assert body["pid"] == os.getpid() and body["services_down"] == []
    [inst] = body["instances"]
    assert {k: inst[k] for k in ("name", "interface", "vrid", "family", "state", "priority", "effective_priority",
                                 "override", "maintenance", "faults", "degraded", "master", "master_priority",
                                 "source", "addresses")} == {
        "name": NAME, "interface": IF, "vrid": 51, "family": 4, "state": "master", "priority": 150,
        "effective_priority": 150, "override": None, "maintenance": False, "faults": [], "degraded": [],
        "master": ADDRESS, "master_priority": 150, "source": ADDRESS, "addresses": [f"{VIP} dev {IF}"]}
    first, second = inst["transitions"]
    assert (first["from"], first["to"], first["reason"]) == ("init", "backup", "started")
    assert (second["from"], second["to"], second["reason"]) == ("backup", "master", "no master seen")
    assert 0.3 <= second["at"] - first["at"] < 2.0  # its master-down interval, 0.34 s
    counters = inst["counters"]
    assert counters["transitions"] == 2 and counters["became_master"] == 1
    assert counters["adverts_sent"] >= 1 and counters["adverts_received"] == 0 and counters["invalid"] == {}
    assert vips(speaker.ns) == [VIP]


def test_maintenance_releases_the_vip_and_off_brings_it_back(api, speaker):
    inst = _one(api.put("/v1/ha/maintenance", json={"on": True}))
    assert (inst["state"], inst["maintenance"], inst["effective_priority"]) == ("backup", True, 0)
    assert inst["transitions"][-1]["reason"] == "operator: maintenance"
    assert vips(speaker.ns) == []
    time.sleep(0.8)  # over twice its master-down interval: still backup
    assert _state(api)["state"] == "backup" and vips(speaker.ns) == []

    inst = _one(api.put("/v1/ha/maintenance", json={"on": False, "instance": NAME}))
    assert (inst["maintenance"], inst["effective_priority"]) == (False, 150)
    inst = _wait_master(api)
    assert vips(speaker.ns) == [VIP]
    assert [(t["from"], t["to"]) for t in inst["transitions"][-2:]] == [("master", "backup"), ("backup", "master")]


def test_priority_changes_are_visible(api, speaker):
    inst = _one(api.put("/v1/ha/priority", json={"priority": 200}))
    assert (inst["state"], inst["priority"], inst["effective_priority"]) == ("master", 200, 200)
    inst = _one(api.put("/v1/ha/priority", json={"priority": 100, "instance": NAME}))
    assert (inst["priority"], inst["effective_priority"]) == (100, 100)
    inst = _one(api.put("/v1/ha/priority", json={"priority": 255}))
    assert (inst["priority"], inst["effective_priority"]) == (255, 255)
    assert inst["state"] == "master" and len(inst["transitions"]) == 2  # no election needed
    assert vips(speaker.ns) == [VIP]


def test_a_masters_new_priority_is_the_master_priority_it_reports(api, speaker):
    inst = _one(api.put("/v1/ha/priority", json={"priority": 200}))
    assert (inst["master"], inst["master_priority"]) == (ADDRESS, 200)


def test_hand_over_on_a_lone_master_comes_back(api, speaker):
    inst = _one(api.post("/v1/ha/failover", json={"action": "hand-over"}))
    assert (inst["state"], inst["override"], inst["effective_priority"]) == ("backup", "hand-over", 1)
    assert vips(speaker.ns) == []
    inst = _wait_master(api)  # nobody took over: master again after its master-down interval
    history = [(t["from"], t["to"], t["reason"]) for t in inst["transitions"]]
    assert history[-2:] == [("master", "backup", "operator: hand-over"), ("backup", "master", "no master seen")]
    assert inst["counters"]["became_master"] == 2 and inst["counters"]["transitions"] == 4
    assert (inst["override"], inst["effective_priority"]) == ("hand-over", 1)  # until auto
    assert vips(speaker.ns) == [VIP]

    inst = _one(api.post("/v1/ha/failover", json={"action": "auto", "instance": NAME}))
    assert (inst["state"], inst["override"], inst["effective_priority"]) == ("master", None, 150)


def test_take_over_outranks_the_master_heard(api, speaker, link):
    send_advert(link[1], priority=200)  # a peer with more: we step down, and hear of it for 3 s
    _wait(lambda: _state(api)["state"] == "backup", 2.0, "a higher priority advert did not make it backup")
    inst = _state(api)
    assert (inst["master"], inst["master_priority"]) == (PEER_ADDRESS, 200)
    assert inst["counters"]["adverts_received"] == 1 and vips(speaker.ns) == []

    r = api.post("/v1/ha/failover", json={"action": "hand-over"})
    assert r.status_code == 409 and "not master: nothing to hand over" in r.json()["detail"]

    inst = _one(api.post("/v1/ha/failover", json={"action": "take-over"}))
    assert (inst["state"], inst["override"], inst["effective_priority"]) == ("master", "take-over", 201)
    assert inst["transitions"][-1]["reason"] == "operator: take-over"
    assert vips(speaker.ns) == [VIP]
    send_advert(link[1], priority=200)  # the old master's next advert: lower now, no election
    time.sleep(0.2)
    assert _state(api)["state"] == "master"


def test_take_over_is_refused_in_maintenance(api, speaker):
    _one(api.put("/v1/ha/maintenance", json={"on": True}))
    before = api.get("/v1/ha").json()
    r = api.post("/v1/ha/failover", json={"action": "take-over", "instance": NAME})
    assert r.status_code == 409
    assert r.json() == {"detail": f"{NAME} cannot take over: in maintenance",
                        "errors": [f"{NAME} cannot take over: in maintenance"]}
    assert stable(api.get("/v1/ha").json()) == stable(before)
    assert vips(speaker.ns) == []


@pytest.mark.parametrize(("method", "path", "body"), [
    ("post", "/v1/ha/failover", {"action": "hand-over", "instance": "nope"}),
    ("put", "/v1/ha/priority", {"priority": 90, "instance": "nope"}),
    ("put", "/v1/ha/maintenance", {"on": True, "instance": "nope"}),
])
def test_an_unknown_instance_is_404(api, speaker, method, path, body):
    before = api.get("/v1/ha").json()
    r = api.request(method.upper(), path, json=body)
    assert r.status_code == 404
    assert r.json()["errors"] == [f"no VRRP instance 'nope' (instances: {NAME})"]
    assert stable(api.get("/v1/ha").json()) == stable(before) and vips(speaker.ns) == [VIP]


@pytest.mark.parametrize(("path", "body", "message"), [
    ("/v1/ha/failover", {}, "action: Field required"),
    ("/v1/ha/failover", {"action": "switch"}, "action: Input should be 'hand-over', 'take-over' or 'auto'"),
    ("/v1/ha/failover", {"action": "hand-over", "now": True}, "now: Extra inputs are not permitted"),
    ("/v1/ha/failover", {"action": "hand-over", "instance": 5}, "instance: Input should be a valid string"),
    ("/v1/ha/failover", {"action": "hand-over", "instance": "a b"}, "instance: name 'a b'"),
    ("/v1/ha/failover", ["hand-over"], "Input should be a valid dictionary"),
    ("/v1/ha/priority", {"priority": 0}, "priority: Input should be greater than or equal to 1"),
    ("/v1/ha/priority", {"priority": 256}, "priority: Input should be less than or equal to 255"),
    ("/v1/ha/priority", {"priority": "200"}, "priority: Input should be a valid integer"),
    ("/v1/ha/priority", {"priority": True}, "priority: Input should be a valid integer"),
    ("/v1/ha/priority", {"priority": 200.5}, "priority: Input should be a valid integer"),
    ("/v1/ha/priority", {"instance": NAME}, "priority: Field required"),
    ("/v1/ha/maintenance", {"on": "yes"}, "on: Input should be a valid boolean"),
    ("/v1/ha/maintenance", {"on": 1}, "on: Input should be a valid boolean"),
    ("/v1/ha/maintenance", {"on": None}, "on: Input should be a valid boolean"),
    ("/v1/ha/maintenance", "{", "JSON decode error"),
])
def test_bad_bodies_are_422_and_never_reach_the_speaker(api, speaker, path, body, message):
    before = api.get("/v1/ha").json()
    method = "POST" if path.endswith("failover") else "PUT"
    if isinstance(body, str):
        r = api.request(method, path, content=body, headers={"Content-Type": "application/json"})
    else:
        r = api.request(method, path, json=body)
    assert r.status_code == 422, r.text
    answer = r.json()
    assert answer["errors"] and answer["detail"] == "; ".join(answer["errors"])
    assert any(message in e for e in answer["errors"]), answer
    after = api.get("/v1/ha").json()
    assert stable(after) == stable(before) and vips(speaker.ns) == [VIP]


def test_changes_need_the_token(manager, speaker):
    app = create_app(ApiContext(manager, API_TOKEN, ha=SpeakerClient(speaker.path)))
    with TestClient(app) as anonymous:
        before = anonymous.get("/v1/ha")
        assert before.status_code == 200  # reads are open unless auth_reads
        for method, path, body in (("POST", "/v1/ha/failover", {"action": "hand-over"}),
                                   ("PUT", "/v1/ha/priority", {"priority": 10}),
                                   ("PUT", "/v1/ha/maintenance", {"on": True})):
            r = anonymous.request(method, path, json=body)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", path
            assert "bearer token is required" in r.json()["detail"]
            r = anonymous.request(method, path, json=body, headers={"Authorization": "Bearer wrong-token-000000"})
            assert r.status_code == 403, path
        assert stable(anonymous.get("/v1/ha").json()) == stable(before.json())
    assert vips(speaker.ns) == [VIP]

    app = create_app(ApiContext(manager, API_TOKEN, auth_reads=True, ha=SpeakerClient(speaker.path)))
    with TestClient(app) as anonymous:
        assert anonymous.get("/v1/ha").status_code == 401


# ---- metrics --------------------------------------------------------------------------------------

def scrape(api: TestClient) -> dict[tuple, float]:
    """The xdplb_vrrp samples: (name, sorted labels) -> value."""
    r = api.get("/metrics")
    assert r.status_code == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples
            if s.name.startswith("xdplb_vrrp")}


def test_metrics_follow_the_speaker(api, speaker, link):
    m = scrape(api)
    one = (("instance", NAME),)
    assert m[("xdplb_vrrp_speaker_up", ())] == 1
    assert {s: m[("xdplb_vrrp_state", (("instance", NAME), ("state", s)))]
            for s in ("init", "backup", "master", "fault")} == {"init": 0, "backup": 0, "master": 1, "fault": 0}
    assert m[("xdplb_vrrp_priority", one)] == 150 and m[("xdplb_vrrp_effective_priority", one)] == 150
    assert m[("xdplb_vrrp_maintenance", one)] == 0 and m[("xdplb_vrrp_faults", one)] == 0
    assert m[("xdplb_vrrp_transitions_total", one)] == 2 and m[("xdplb_vrrp_became_master_total", one)] == 1
    assert m[("xdplb_vrrp_adverts_sent_total", one)] >= 1 and m[("xdplb_vrrp_adverts_received_total", one)] == 0
    assert not [k for k in m if k[0] == "xdplb_vrrp_adverts_invalid_total"]

    send_advert(link[1], priority=200, ttl=1)  # forged or routed: dropped, counted
    send_advert(link[1], priority=200, vrid=52)  # another router's: not ours, not counted
    _wait(lambda: scrape(api).get(("xdplb_vrrp_adverts_invalid_total", (("instance", NAME), ("reason", "ttl"))))
          == 1, 2.0, "the TTL 1 advert was not counted")
    assert _state(api)["state"] == "master"

    api.put("/v1/ha/maintenance", json={"on": True})
    m = scrape(api)
    assert m[("xdplb_vrrp_state", (("instance", NAME), ("state", "backup")))] == 1
    assert m[("xdplb_vrrp_state", (("instance", NAME), ("state", "master")))] == 0
    assert m[("xdplb_vrrp_maintenance", one)] == 1 and m[("xdplb_vrrp_effective_priority", one)] == 0
    assert m[("xdplb_vrrp_priority", one)] == 150 and m[("xdplb_vrrp_transitions_total", one)] == 3
    assert m[("xdplb_vrrp_adverts_received_total", one)] == 0


def test_a_stopped_speaker_is_503_and_down_in_the_metrics(api, speaker):
    speaker.stop()
    assert vips(speaker.ns) == []  # its shutdown released the VIP
    r = api.get("/v1/ha")
    assert r.status_code == 503
    assert r.json()["errors"] == [f"no VRRP speaker at {speaker.path}: No such file or directory"]
    r = api.post("/v1/ha/failover", json={"action": "take-over"})
    assert r.status_code == 503 and "no VRRP speaker" in r.json()["detail"]
    assert api.put("/v1/ha/priority", json={"priority": 2}).status_code == 503
    assert scrape(api) == {("xdplb_vrrp_speaker_up", ()): 0}
    text = api.get("/metrics").text
    assert "xdplb_vrrp_speaker_up 0.0" in text
    assert not [line for line in text.splitlines() if "xdplb_vrrp" in line and "speaker_up" not in line]


def test_a_director_without_ha(manager):
    with TestClient(create_app(ApiContext(manager, API_TOKEN)), headers=AUTH) as api:
        for r in (api.get("/v1/ha"), api.post("/v1/ha/failover", json={"action": "take-over"}),
                  api.put("/v1/ha/maintenance", json={"on": True})):
            assert r.status_code == 404
            assert "has no `ha` section" in r.json()["detail"]
        assert api.put("/v1/ha/priority", json={"priority": 0}).status_code == 422  # the body first
        text = api.get("/metrics").text
        assert "xdplb_packets" in text and "xdplb_vrrp" not in text


def test_the_openapi_document_has_the_ha_endpoints(manager):
    with TestClient(create_app(ApiContext(manager, API_TOKEN))) as api:
        paths = api.get("/openapi.json").json()["paths"]
    assert set(paths["/v1/ha"]) == {"get"} and set(paths["/v1/ha/failover"]) == {"post"}
    assert set(paths["/v1/ha/priority"]) == {"put"} and set(paths["/v1/ha/maintenance"]) == {"put"}


# ---- the CLI --------------------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def no_host_settings(tmp_path, monkeypatch) -> None:
    """This host's /etc/xdplb/cli.yaml and /var/lib/xdplb token files play no part in a test."""
    monkeypatch.setattr(client_mod, "DEFAULT_CLI_CONFIG", tmp_path / "no-cli.yaml")
    monkeypatch.setattr(client_mod, "STATE_ROOT", tmp_path / "no-state")


class Cli:
    """`xdplb ha ...` pointed at a real API server on a Unix socket."""

    def __init__(self, url: str, token_file: Path) -> None:
        self.url, self.token_file = url, token_file

    def __call__(self, *args: str, auth: bool = True):
        extra = ["--url", self.url, *(["--token-file", str(self.token_file)] if auth else [])]
        return CliRunner().invoke(cli_app, ["ha", *args, *extra], env=CLEAN_ENV, prog_name="xdplb")

    def ok(self, *args: str, **kw):
        result = self(*args, **kw)
        assert result.exit_code == 0, result.output
        return result

    def json(self, *args: str, **kw) -> dict:
        return json.loads(self.ok(*args, "-o", "json", **kw).stdout)

    def refused(self, *args: str, code: int = 1, **kw) -> str:
        result = self(*args, **kw)
        assert result.exit_code == code, result.output
        assert "Traceback" not in result.output and result.output.strip()
        return result.output


def _serve(manager, short_dir: Path, ha: SpeakerClient | None) -> ApiServer:
    return ApiServer(create_app(ApiContext(manager, API_TOKEN, ha=ha)), f"unix:{short_dir}/api.sock").start()


def _token_file(path: Path) -> Path:
    path.write_text(API_TOKEN + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def cli(manager, speaker, short_dir) -> Iterator[Cli]:
    server = _serve(manager, short_dir, SpeakerClient(speaker.path))
    try:
        yield Cli(f"unix:{short_dir}/api.sock", _token_file(short_dir / "api.token"))
    finally:
        server.stop()


def test_cli_status(cli, speaker):
    out = cli.ok("status").stdout
    lines = out.splitlines()
    assert lines[0].split() == ["INSTANCE", "INTERFACE", "VRID", "STATE", "PRIORITY", "CONFIGURED", "MASTER", "SINCE",
                                "NOTES"]
    assert lines[1].split()[:7] == [NAME, IF, "(IPv4)", "51", "MASTER", "150", "150"]
    assert f"{ADDRESS} (150, this director)" in lines[1]
    assert f"{NAME}: last transitions" in out
    assert [line.split(None, 2)[2] for line in lines[3:]] == ["init → backup    started",
                                                               "backup → master  no master seen"]
    assert "last transitions" not in cli.ok("status", "-n", "0").stdout

    doc = cli.json("status")
    assert doc["instances"][0]["state"] == "master" and doc["instances"][0]["vrid"] == 51
    only = cli.json("status", "--instance", NAME)
    assert [i["name"] for i in only["instances"]] == [NAME] and only.keys() == doc.keys()
    assert "no VRRP instance 'nope' (instances: vi_1)" in cli.refused("status", "-i", "nope")


def test_cli_failover(cli, speaker):
    out = cli.ok("failover", "hand-over").stdout
    assert "every instance handed over: priority 1 until `xdplb ha failover auto`" in out
    assert "BACKUP" in out and "hand-over (until `xdplb ha failover auto`)" in out
    assert vips(speaker.ns) == []
    client = SpeakerClient(speaker.path)
    _wait(lambda: _instance(client)["state"] == "master", what="not master again")

    doc = cli.json("failover", "auto", "--instance", NAME)
    [inst] = doc["instances"]
    assert (inst["state"], inst["override"], inst["effective_priority"]) == ("master", None, 150)
    assert f"{NAME} was master already" in cli.ok("failover", "TAKE-OVER", "-i", NAME).stdout
    assert "'switch' is not one of 'hand-over', 'take-over', 'auto'" in cli.refused("failover", "switch", code=2)
    assert "'maybe' is not one of 'on', 'off'" in cli.refused("maintenance", "maybe", code=2)


def test_cli_priority_and_maintenance(cli, speaker):
    out = cli.ok("priority", "180", "-i", NAME).stdout
    assert f"priority of instance {NAME} set to 180" in out
    assert (_instance(SpeakerClient(speaker.path))["priority"]) == 180
    assert cli.json("priority", "170")["instances"][0]["effective_priority"] == 170
    assert "Input should be greater than or equal to 1" in cli.refused("priority", "0", code=2)

    out = cli.ok("maintenance", "on").stdout
    assert "every instance in maintenance: it will not be master" in out and "maintenance" in out.splitlines()[-1]
    assert _instance(SpeakerClient(speaker.path))["state"] == "backup" and vips(speaker.ns) == []

    # refusals: the server's message, exit 1
    assert f"error: {NAME} cannot take over: in maintenance" in cli.refused("failover", "take-over")
    assert f"{NAME} is backup, not master: nothing to hand over" in cli.refused("failover", "hand-over")
    assert "no VRRP instance 'nope'" in cli.refused("maintenance", "off", "-i", "nope")
    assert "bearer token is required" in cli.refused("priority", "10", auth=False)

    doc = cli.json("maintenance", "OFF", "-i", NAME)
    assert doc["instances"][0]["maintenance"] is False
    _wait(lambda: _instance(SpeakerClient(speaker.path))["state"] == "master", what="not master again")
    assert vips(speaker.ns) == [VIP]


def test_cli_without_a_speaker_or_without_ha(manager, speaker, short_dir):
    token = _token_file(short_dir / "api.token")
    cli = Cli(f"unix:{short_dir}/api.sock", token)
    server = _serve(manager, short_dir, SpeakerClient(speaker.path))
    try:
        speaker.stop()
        assert "no VRRP speaker at" in cli.refused("status")
        assert "no VRRP speaker at" in cli.refused("maintenance", "on")
    finally:
        server.stop()
    server = _serve(manager, short_dir, None)
    try:
        assert "has no `ha` section" in cli.refused("status")
        assert "has no `ha` section" in cli.refused("failover", "auto")
    finally:
        server.stop()
