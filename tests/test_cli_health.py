"""The health-check commands (xdplb/cli_health.py) and the health options of `service` and `backend`,
in-process against a real API server on a Unix socket and a manager on the real data plane (the
fixtures of tests/test_cli_ops.py): each command is checked in the manager's state. The monitor's
verdicts are handed to the manager directly (as the monitor hands them), so `xdplb health` and
`xdplb list` show what a real down backend shows. The views' health decoration is unit tested."""

from __future__ import annotations

import time

import pytest
from fastapi import FastAPI

from tests import test_cli_ops
from tests.test_cli_ops import SID, Cli, _refused, _token_file
from xdplb import client as client_mod
from xdplb.apiserver import ApiServer
from xdplb.checks import HealthCheck, OnDown, Quorum
from xdplb.cli_health import ago, health_table
from xdplb.ipvsadm_view import View, listing
from xdplb.manager import Manager
from xdplb.model import Backend

pytestmark = [pytest.mark.health, pytest.mark.api]

# the CLI against a real API on a Unix socket, and no settings of this host: test_cli_ops's fixtures
server, cli, no_host_settings = test_cli_ops.server, test_cli_ops.cli, test_cli_ops.no_host_settings

UDP = "udp:10.100.0.100:53"


def _service(manager: Manager, sid: str = SID):
    return next(s for s in manager.state.services if s.id == sid)


def _backend(manager: Manager, address: str, sid: str = SID) -> Backend:
    return next(b for b in _service(manager, sid).backends if str(b.address) == address)


@pytest.fixture
def web(cli, manager) -> Cli:
    """tcp:10.100.0.100:80 with two backends, no checks."""
    cli.ok("service", "add", "tcp", "10.100.0.100:80", "-s", "wrr")
    for address in ("10.100.1.11", "10.100.1.12"):
        cli.ok("backend", "add", SID, address)
    return cli


# ---- check set, check clear -------------------------------------------------------------------------

def test_check_set_on_a_service_then_one_backend_then_clear(web, manager):
    r = web.ok("check", "set", "tcp", "10.100.0.100:80", "--type", "http", "--path", "/healthz", "--status",
               "200-299", "--status", "301", "--interval", "2", "--timeout", "0.5", "--rise", "3", "--fall", "4",
               "--host", "www.example.net", "--body-regex", "ok|ready", "--warmup", "1.5")
    assert f"check of service {SID} set" in r.stdout and "check:" in r.stdout
    http = HealthCheck(type="http", path="/healthz", status=["200-299", "301"], interval=2, timeout=0.5, rise=3,
                       fall=4, host="www.example.net", body_regex="ok|ready", warmup=1.5)
    assert _service(manager).check == http
    assert all(b.check is None for b in _service(manager).backends)

    after_dashes = {"url": False, "auth": False,  # every word after -- is the program's: the API from the environment
                    "env": {"XDPLB_URL": web.url, "XDPLB_TOKEN_FILE": str(web.token_file)}}
    r = web.ok("check", "set", SID, "10.100.1.11", "--type", "misc", "--dynamic", "--timeout", "3", "--notify",
               "/usr/local/bin/page", "--notify", "web", "--", "/usr/local/bin/check", "--deep", "a b",
               **after_dashes)
    assert "check of backend 10.100.1.11 of tcp:10.100.0.100:80 set" in r.stdout
    assert _backend(manager, "10.100.1.11").check == HealthCheck(
        type="misc", command=["/usr/local/bin/check", "--deep", "a b"], dynamic=True, timeout=3,
        notify=["/usr/local/bin/page", "web"])

    web.ok("check", "set", SID, "--interval", "5")  # no --type: the fields given change, the others stay
    assert _service(manager).check == http.model_copy(update={"interval": 5.0})
    web.ok("check", "set", SID, "10.100.1.12", "--port", "8080")  # a backend without its own: the service's
    assert _backend(manager, "10.100.1.12").check == http.model_copy(update={"interval": 5.0, "port": 8080})

    r = web.ok("check", "clear", SID, "10.100.1.11")
    assert "check of backend 10.100.1.11 of tcp:10.100.0.100:80 cleared" in r.stdout
    assert _backend(manager, "10.100.1.11").check is None
    web.ok("check", "clear", "tcp", "10.100.0.100:80")
    assert _service(manager).check is None and _backend(manager, "10.100.1.12").check.port == 8080  # its own stays
    assert [b.weight for b in manager.dp.services[0].backends] == [1, 1]  # checks change no weight by themselves


def test_check_set_udp(web, manager):
    web.ok("service", "add", "udp", "10.100.0.100:53")
    web.ok("backend", "add", UDP, "10.100.1.11")
    web.ok("check", "set", "udp", "10.100.0.100:53", "--type", "udp", "--payload", "PING\n", "--expect", "^PONG",
           "--port", "5353", "--source", "10.100.1.2", "--address", "10.100.1.111")
    assert _service(manager, UDP).check == HealthCheck(type="udp", payload="PING\n", expect="^PONG", port=5353,
                                                       source="10.100.1.2", address="10.100.1.111")
    web.ok("check", "set", UDP, "10.100.1.11", "--type", "misc", "--command", "/usr/lib/check", "--command=--udp",
           "--no-dynamic")
    assert _backend(manager, "10.100.1.11", UDP).check == HealthCheck(type="misc", command=["/usr/lib/check", "--udp"])


def test_every_check_change_prints_the_apis_json(web, manager):
    change = web.json("check", "set", SID, "10.100.1.12", "--type", "https", "--no-verify-tls",
                      "--digest", "9b3a0c85a887a256d6939da88aabd8cd")
    assert set(change) == {"version", "dry_run", "diff", "written"}
    fields = change["diff"]["changed"][SID]["backends"]["changed"]["10.100.1.12"]
    assert fields["check"][0] is None and fields["check"][1]["verify_tls"] is False
    assert web.json("check", "clear", SID, "10.100.1.12")["diff"]["changed"][SID]["backends"]["changed"]


@pytest.mark.parametrize(("args", "code", "message"), [
    (["check", "set", "tcp:10.100.0.100:81", "--type", "tcp"], 1, "no service tcp:10.100.0.100:81"),
    (["check", "set", SID, "10.100.1.99", "--type", "tcp"], 1, "service tcp:10.100.0.100:80 has no backend "
                                                                "10.100.1.99"),
    (["check", "set", SID, "--interval", "2"], 2, "tcp:10.100.0.100:80 has no check to change: give --type"),
    (["check", "set", SID], 2, "nothing to set"),
    (["check", "set", SID, "--type", "nope"], 2, "'nope' is not one of"),
    (["check", "set", SID, "--type", "http", "--status", "700"], 1, "status '700': give a code"),
    (["check", "set", SID, "--type", "tcp", "--command", "/bin/x"], 1, "command and dynamic are for misc checks"),
    (["check", "set", SID, "--type", "misc"], 1, "a misc check needs a command"),
    (["check", "set", SID, "--type", "misc", "--command", "/bin/x", "/bin/y"], 2, "not both"),
    (["check", "set", SID, "--type", "http", "--path", "healthz"], 1, "path: String should match pattern"),
    (["check", "clear", SID, "10.100.1.11", "extra"], 2, "expected a service and optionally a backend"),
    (["service", "add", "tcp", "10.100.0.100:81", "--on-down", "drop"], 2, "'drop' is not one of"),
    (["service", "edit", SID, "--sorry-server", "10.100.1.11"], 1, "sorry server 10.100.1.11 is also a backend"),
    (["service", "edit", SID, "--sorry-server", "10.100.1.99", "--no-sorry-server"], 2, "not both"),
    (["service", "edit", SID, "--quorum", "0"], 1, "greater than or equal to 1"),
    (["backend", "edit", SID, "10.100.1.99", "--inhibit-on-failure"], 1, "has no backend 10.100.1.99"),
])
def test_bad_input_is_refused_clearly_and_changes_nothing(web, manager, args, code, message):
    before = manager.state
    r = web(*args)
    _refused(r, code)
    assert message in " ".join(r.output.split()), r.output
    assert manager.state == before


def test_check_set_refuses_a_change_made_in_between(web, manager, monkeypatch):
    real_get = client_mod.ApiClient.get

    def get_then_someone_else_changes(self, path, **params):
        reply = real_get(self, path, **params)
        manager.update_backend(_service(manager).key, _backend(manager, "10.100.1.11").address, {"weight": 5})
        return reply

    monkeypatch.setattr(client_mod.ApiClient, "get", get_then_someone_else_changes)
    r = web("check", "set", SID, "--type", "tcp")
    _refused(r)
    assert "changed by someone else" in r.stderr
    assert _service(manager).check is None and _backend(manager, "10.100.1.11").weight == 5


# ---- what a service and a backend do with the verdicts -------------------------------------------------

def test_service_health_options(cli, manager):
    r = cli.ok("service", "add", "tcp", "10.100.0.100:80", "--on-down", "keep", "--sorry-server", "10.100.1.99:80",
               "--quorum", "2", "--hysteresis", "1")
    assert f"service {SID} added" in r.stdout
    svc = _service(manager)
    assert (svc.on_down, svc.sorry_server, svc.quorum) == (OnDown.KEEP, Backend(address="10.100.1.99", port=80),
                                                           Quorum(weight=2, hysteresis=1))
    r = cli.ok("service", "edit", SID, "--on-down", "remove", "--quorum", "3")
    assert "on_down: keep → remove" in r.stdout and "quorum.weight: 2 → 3" in r.stdout
    svc = _service(manager)
    assert (svc.on_down, svc.quorum, str(svc.sorry_server.address)) == (OnDown.REMOVE, Quorum(weight=3, hysteresis=1),
                                                                        "10.100.1.99")
    cli.ok("service", "edit", SID, "--no-sorry-server")
    assert _service(manager).sorry_server is None


def test_backend_inhibit_on_failure(cli, manager):
    cli.ok("service", "add", "tcp", "10.100.0.100:80")
    cli.ok("backend", "add", SID, "10.100.1.11", "--inhibit-on-failure", "-w", "3")
    assert _backend(manager, "10.100.1.11").inhibit_on_failure is True
    r = cli.ok("backend", "edit", SID, "10.100.1.11", "--no-inhibit-on-failure", "-w", "5", "-x", "100")
    assert "~ backend 10.100.1.11:" in r.stdout and "inhibit_on_failure true → false" in r.stdout
    be = _backend(manager, "10.100.1.11")
    assert (be.inhibit_on_failure, be.weight, be.upper_threshold) == (False, 5, 100)
    cli.ok("backend", "edit", SID, "10.100.1.11", "-w", "6")  # the PATCH path, as before
    assert _backend(manager, "10.100.1.11").weight == 6


# ---- xdplb health and xdplb list, against the real API ---------------------------------------------------

def _verdict(manager: Manager, backend: str, up: bool, reason: str, weight: int | None = None) -> float:
    """The monitor's word on a backend of SID, handed to the manager as the monitor hands it."""
    import ipaddress

    from xdplb.health.monitor import Health

    now = time.time()
    manager.on_health(Health(service=SID, backend=ipaddress.ip_address(backend), up=up, reason=reason,
                             weight=weight, since=now - 75, checked=now, last=None, successes=0 if not up else 3,
                             failures=3 if not up else 0))
    manager.health_settled()
    return now


def test_health_and_list_show_a_down_backend(web, manager):
    assert "no checked backends" in web.ok("health").stderr
    web.ok("check", "set", SID, "--type", "http", "--path", "/healthz")
    lines = web.ok("health").stdout.splitlines()
    assert lines[0].split() == ["SERVICE", "BACKEND", "STATE", "CHECK", "SINCE", "WEIGHT", "REASON"]
    assert [line.split()[:6] for line in lines[1:]] == [[SID, a, "UP", "http", "-", "-"]
                                                        for a in ("10.100.1.11", "10.100.1.12")]
    before = web.ok("list").stdout.splitlines()

    _verdict(manager, "10.100.1.12", False, "HTTP 503 (expected 200-299), 3 in a row")
    assert [str(b.address) for b in manager.dp.services[0].backends] == ["10.100.1.11"]  # out of the tables
    lines = web.ok("health", "tcp", "10.100.0.100:80").stdout.splitlines()
    assert lines[2].split(None, 7) == [SID, "10.100.1.12", "DOWN", "http", "1m", "ago", "-",
                                       "HTTP 503 (expected 200-299), 3 in a row"]
    rows = web.json("health")
    assert [(r["backend"], r["state"], r["up"], r["failures"]) for r in rows] == [
        ("10.100.1.11", "up", True, 0), ("10.100.1.12", "down", False, 3)]
    assert web.json("health", SID) == rows

    after = web.ok("list").stdout.splitlines()
    assert after[4] == before[4]  # 10.100.1.11, up: ipvsadm's line, unchanged
    assert after[5] == before[5] + " DOWN (HTTP 503 (expected 200-299), 3 in a row)"
    assert web.ok("list", "--stats", SID).stdout.splitlines()[4].endswith(" DOWN (HTTP 503 (expected 200-299), "
                                                                          "3 in a row)")
    assert web.json("list")["health"] == rows

    _verdict(manager, "10.100.1.11", True, "exit 9: weight 7", weight=7)  # a dynamic weight stands in Weight
    assert web.ok("list").stdout.splitlines()[4].split()[:3] == ["->", "10.100.1.11:80", "Route"]
    assert web.ok("list").stdout.splitlines()[4].split()[3] == "7"


def test_health_of_an_unknown_service(web, manager):
    r = web("health", "tcp", "10.100.0.100:81")
    _refused(r)
    assert "no service tcp:10.100.0.100:81" in r.stderr


# ---- against stand-in routes: the contract's sample, a director without /v1/health ----------------------

SAMPLE = [{"service": "tcp:10.100.0.100:80", "backend": "10.100.0.12", "up": False, "state": "down", "check": "http",
           "reason": "HTTP 503 (expected 200-299)", "weight": None, "since": 1764650000.1, "checked": 1764650003.2,
           "successes": 0, "failures": 3}]
STANDIN_SERVICE = {"id": SID, "protocol": "tcp", "vip": "10.100.0.100", "port": 80, "scheduler": "rr",
                   "method": "dr", "sched_flags": [], "persistence": None, "fwmark": None,
                   "backends": [{"address": "10.100.0.12", "weight": 1, "port": None}]}


def _standin(tmp_path, with_health: bool) -> tuple[ApiServer, Cli]:
    app = FastAPI()
    app.get("/v1/services")(lambda: [STANDIN_SERVICE])
    app.get("/v1/stats")(lambda: [])
    app.get("/v1/info")(lambda: {"version": "0.1.0", "conn_max": 4096})
    if with_health:
        app.get("/v1/health")(lambda: SAMPLE)
    url = f"unix:{tmp_path}/standin.sock"
    return ApiServer(app, url).start(), Cli(url, _token_file(tmp_path / "api.token"))


def test_the_contracts_sample_and_list(tmp_path):
    api, standin = _standin(tmp_path, with_health=True)
    try:
        assert standin.json("health") == SAMPLE
        line = standin.ok("health").stdout.splitlines()[1]
        assert line.split()[:4] == [SID, "10.100.0.12", "DOWN", "http"]
        assert line.split(None, 7)[5:] == ["ago", "-", "HTTP 503 (expected 200-299)"]
        assert standin.ok("list").stdout.splitlines()[-1].endswith(" DOWN (HTTP 503 (expected 200-299))")
    finally:
        api.stop()


def test_a_director_without_health_lists_as_before(tmp_path):
    api, standin = _standin(tmp_path, with_health=False)
    try:
        lines = standin.ok("list").stdout.splitlines()
        assert lines[-1].split() == ["->", "10.100.0.12:80", "Route", "1", "0", "0"]
        assert standin.json("list")["health"] == []
        r = standin("health")
        _refused(r)
        assert "this director's API has no /v1/health" in r.stderr
    finally:
        api.stop()


# ---- the views ------------------------------------------------------------------------------------

WEB = {"id": SID, "protocol": "tcp", "vip": "10.100.0.100", "port": 80, "scheduler": "wlc", "method": "dr",
       "sched_flags": [], "persistence": None, "fwmark": None,
       "backends": [{"address": "10.100.1.12", "weight": 1, "port": None},
                    {"address": "10.100.1.11", "weight": 3, "port": None}]}
STATS = [{"id": SID, "stats": {"conns": 3, "in_pkts": 5, "out_pkts": 0, "in_bytes": 300, "out_bytes": 0},
          "rates": None, "backends": [{"address": "10.100.1.11", "active": 2, "inactive": 1, "stats": None}]}]


def _row(backend: str, up: bool, reason: str, weight: int | None = None) -> dict:
    return {"service": SID, "backend": backend, "up": up, "state": "up" if up else "down", "check": "tcp",
            "reason": reason, "weight": weight, "since": 1000.0, "checked": 1003.0, "successes": 0, "failures": 0}


@pytest.mark.unit
@pytest.mark.parametrize("view", list(View))
def test_listing_marks_a_down_backend_and_leaves_up_ones_as_ipvsadm(view):
    plain = listing([WEB], STATS, view).split("\n")
    health = [_row("10.100.1.11", True, "connected"), _row("10.100.1.12", False, "connection refused, 2 in a row")]
    marked = listing([WEB], STATS, view, health=health).split("\n")
    assert marked[3] == plain[3]  # 10.100.1.11 (ipvsadm sorts it first): up, unchanged
    assert marked[4] == plain[4] + " DOWN (connection refused, 2 in a row)"
    assert marked[:3] == plain[:3] and marked[5:] == plain[5:]


@pytest.mark.unit
def test_listing_shows_a_dynamic_weight():
    text = listing([WEB], STATS, View.PLAIN, health=[_row("10.100.1.11", True, "exit 12", weight=10)])
    assert text.split("\n")[3] == "  -> 10.100.1.11:80               Route   10     2          1         "


@pytest.mark.unit
def test_health_table_and_ago():
    rows = [_row("10.100.1.11", True, "connected in 0.4 ms"), {**_row("10.100.1.112", False, "timed out"),
                                                               "check": "misc", "weight": 12, "since": None}]
    assert health_table(rows, 1000.0 + 3 * 3600 + 5) == [
        "SERVICE              BACKEND       STATE  CHECK  SINCE   WEIGHT  REASON",
        "tcp:10.100.0.100:80  10.100.1.11   UP     tcp    3h ago  -       connected in 0.4 ms",
        "tcp:10.100.0.100:80  10.100.1.112  DOWN   misc   -       12      timed out",
    ]
    assert [ago(t, 1000.0) for t in (1000.0, 1001.0, 941.0, 940.0, 1000 - 7200, 1000 - 3 * 86400, None)] == [
        "0s ago", "0s ago", "59s ago", "1m ago", "2h ago", "3d ago", "-"]
