"""The operator's CLI (xdplb/cli_ops.py, xdplb/cli_apply.py) in-process, against a real API server on a
Unix socket and a manager on the real data plane: every change is checked in the state and in the
maps, every refusal leaves them as they were."""

from __future__ import annotations

import ipaddress
import json
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from scapy.layers.inet import TCP
from scapy.layers.l2 import Ether
from starlette.requests import Request
from typer.testing import CliRunner

from tests import packets as pk
from tests.conftest import API_TOKEN
from xdplb import client as client_mod
from xdplb.apiserver import ApiServer
from xdplb.capture import CaptureFilter
from xdplb.cli import app
from xdplb.cli_apply import PcapCounter
from xdplb.manager import Manager
from xdplb.model import Backend

pytestmark = pytest.mark.api

SID = "tcp:10.100.0.100:80"
SID6 = "udp:[2001:db8::100]:53"
CLEAN_ENV = {"XDPLB_URL": None, "XDPLB_TOKEN": None, "XDPLB_TOKEN_FILE": None, "XDPLB_CLI_CONFIG": None,
             "COLUMNS": "200"}


class Cli:
    """The xdplb command pointed at one director's API."""

    def __init__(self, url: str, token_file: Path) -> None:
        self.url, self.token_file = url, token_file

    def __call__(self, *args: str, auth: bool = True, url: bool = True, env: dict | None = None,
                 input: str | None = None):
        extra = [*(["--url", self.url] if url else []), *(["--token-file", str(self.token_file)] if auth else [])]
        return CliRunner().invoke(app, [*args, *extra], env={**CLEAN_ENV, **(env or {})}, input=input,
                                  prog_name="xdplb")

    def ok(self, *args: str, **kw):
        result = self(*args, **kw)
        assert result.exit_code == 0, result.output
        return result

    def json(self, *args: str, **kw):
        return json.loads(self.ok(*args, "-o", "json", **kw).stdout)


@pytest.fixture(autouse=True)
def no_host_settings(tmp_path, monkeypatch) -> None:
    """This host's /etc/xdplb/cli.yaml and /var/lib/xdplb token files play no part in a test."""
    monkeypatch.setattr(client_mod, "DEFAULT_CLI_CONFIG", tmp_path / "no-cli.yaml")
    monkeypatch.setattr(client_mod, "STATE_ROOT", tmp_path / "no-state")


@pytest.fixture
def server(manager: Manager, tmp_path) -> Iterator[str]:
    """The API on the manager, served by uvicorn on a Unix socket, as the daemon serves it."""
    from xdplb.api.context import ApiContext
    from xdplb.api.main import create_app

    url = f"unix:{tmp_path}/api.sock"
    api = ApiServer(create_app(ApiContext(manager, API_TOKEN)), url).start()
    try:
        yield url
    finally:
        api.stop()


def _token_file(path: Path, token: str = API_TOKEN) -> Path:
    path.write_text(token + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def cli(server, tmp_path) -> Cli:
    return Cli(server, _token_file(tmp_path / "api.token"))


def _refused(result, code: int = 1) -> None:
    """A refused command: its exit code, a message, no traceback."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and result.output.strip()


def _weights(manager: Manager, sid: str = SID) -> dict[str, int]:
    [svc] = [s for s in manager.dp.services if s.id == sid]
    return {str(b.address): b.weight for b in svc.backends}


# ---- services and backends ----------------------------------------------------------------------

def test_service_add_edit_delete_reach_the_data_plane(cli, manager):
    r = cli.ok("service", "add", "tcp", "10.100.0.100:80", "-s", "wlc", "--method", "dr", "-p", "300", "-M", "24")
    assert f"service {SID} added" in r.stdout and f"+ service {SID}" in r.stdout
    [svc] = manager.state.services
    assert (svc.scheduler, svc.persistence.timeout, svc.persistence.netmask) == ("wlc", 300, 24)
    assert [s.id for s in manager.dp.services] == [SID]

    version = manager.version
    r = cli.ok("service", "edit", SID, "-s", "rr", "--ring-size", "4099")  # the id form
    assert "scheduler: wlc → rr" in r.stdout and "ring_size: 65537 → 4099" in r.stdout
    assert manager.version == version + 1
    [svc] = manager.dp.services
    assert (svc.scheduler, svc.ring_size, svc.persistence.timeout) == ("rr", 4099, 300)  # the rest stays

    change = cli.json("service", "edit", "tcp", "10.100.0.100:80", "--no-persistent", "--no-expire-nodest")
    assert change["diff"]["changed"][SID]["fields"]["expire_nodest"] == [True, False]
    assert manager.dp.services[0].persistence is None and manager.dp.services[0].expire_nodest is False

    cli.ok("service", "add", "udp", "[2001:db8::100]:53", "-s", "sh", "-b", "sh-port", "--method", "tun",
           "--tunnel", "gue", "--gue-port", "7000")
    svc6 = manager.service(("udp", ipaddress.ip_address("2001:db8::100"), 53))
    assert svc6.sched_flags == {"sh-port"} and (svc6.tunnel.encap, svc6.tunnel.gue_port) == ("gue", 7000)

    change = cli.json("service", "add", "fwm", "7", "--endpoint", "tcp:10.100.0.200:80",
                      "--endpoint", "tcp:10.100.0.200:443", "-s", "wlc")
    assert change["diff"]["added"] == ["fwm:7"] and change["dry_run"] is False
    fwm = manager.service(("fwm", 7))
    assert fwm.port == 80 and [e.port for e in fwm.endpoints] == [443]

    for words in (["fwm", "7"], [SID6], ["tcp", "10.100.0.100:80"]):
        cli.ok("service", "delete", *words)
    assert manager.state.services == [] and manager.dp.services == []


def test_service_edit_refuses_a_change_made_in_between(cli, manager, monkeypatch):
    cli.ok("service", "add", "tcp", "10.100.0.100:80", "-s", "wlc")
    real_get = client_mod.ApiClient.get

    def get_then_someone_else_changes(self, path, **params):
        reply = real_get(self, path, **params)
        manager.add_backend(manager.state.services[0].key, Backend(address="10.100.1.20"))
        return reply

    monkeypatch.setattr(client_mod.ApiClient, "get", get_then_someone_else_changes)
    version = manager.version
    r = cli("service", "edit", "tcp", "10.100.0.100:80", "-s", "rr")
    _refused(r)
    assert "changed by someone else" in r.stderr and "try again" in r.stderr
    assert manager.version == version + 1  # the other change only
    assert manager.dp.services[0].scheduler == "wlc" and _weights(manager) == {"10.100.1.20": 1}


def test_backends_add_edit_drain_delete(cli, manager):
    cli.ok("service", "add", "tcp", "10.100.0.100:80", "-s", "wrr")
    r = cli.ok("backend", "add", "tcp", "10.100.0.100:80", "10.100.1.11", "-w", "3")
    assert "+ backend 10.100.1.11" in r.stdout
    cli.ok("backend", "add", SID, "10.100.1.12:80", "-x", "100", "-y", "50")
    assert _weights(manager) == {"10.100.1.11": 3, "10.100.1.12": 1}
    be = manager.backend(manager.state.services[0].key, ipaddress.ip_address("10.100.1.12"))
    assert (be.port, be.upper_threshold, be.lower_threshold) == (80, 100, 50)

    r = cli.ok("backend", "edit", "tcp", "10.100.0.100:80", "10.100.1.11", "--weight", "5")
    assert "~ backend 10.100.1.11: weight 3 → 5" in r.stdout
    change = cli.json("backend", "drain", "tcp", "10.100.0.100:80", "10.100.1.12")
    assert change["diff"]["changed"][SID]["backends"]["changed"] == {"10.100.1.12": {"weight": [1, 0]}}
    assert _weights(manager) == {"10.100.1.11": 5, "10.100.1.12": 0}

    cli.ok("backend", "delete", "tcp", "10.100.0.100:80", "10.100.1.12")
    assert _weights(manager) == {"10.100.1.11": 5}
    r = cli("backend", "delete", "tcp", "10.100.0.100:80", "10.100.1.12")
    _refused(r)
    assert "has no backend 10.100.1.12" in r.stderr


def test_ipv6_backend(cli, manager):
    cli.ok("service", "add", "udp", "[2001:db8::100]:53", "-s", "mh")
    cli.ok("backend", "add", "udp", "[2001:db8::100]:53", "2001:db8:1::11", "-w", "2")
    cli.ok("backend", "edit", SID6, "[2001:db8:1::11]:53", "-w", "4")
    assert _weights(manager, SID6) == {"2001:db8:1::11": 4}


def test_every_change_prints_the_apis_json_and_nothing_else(cli, manager, tmp_path):
    path = tmp_path / "services.yaml"
    path.write_text(SERVICES_YAML)
    runs = [
        ("service", "add", "fwm", "7", "--endpoint", "tcp:10.100.0.200:80"),
        ("backend", "add", "fwm", "7", "10.100.1.11"),
        ("backend", "edit", "fwm:7", "10.100.1.11", "-w", "2"),
        ("backend", "delete", "fwm", "7", "10.100.1.11"),
        ("service", "delete", "fwm:7"),
        ("apply", "-f", str(path), "--dry-run"),
        ("import", "ipvsadm", str(path.with_name("rules")), "--dry-run"),
    ]
    path.with_name("rules").write_text(IPVSADM_SAVE)
    for args in runs:
        change = cli.json(*args)
        assert set(change) == {"version", "dry_run", "diff", "written"}, args
    assert manager.state.services == []


# ---- list ------------------------------------------------------------------------------------------

def _traffic(manager: Manager) -> None:
    """Three clients: two complete the handshake (ActiveConn), one only sends its SYN (InActConn)."""
    for sport in (40001, 40002, 40003):
        manager.dp.run(pk.tcp(sport=sport, flags="S"))
    for sport in (40001, 40002):
        manager.dp.run(pk.tcp(sport=sport, flags="A", payload=b"GET / HTTP/1.0\r\n\r\n"))


def test_list_views_match_the_data_plane(cli, manager, one_cpu):
    cli.ok("service", "add", "tcp", "10.100.0.100:80", "-s", "rr", "-p", "60", "-M", "255.255.255.0")
    cli.ok("service", "edit", SID, "--no-persistent")
    for address in ("10.100.1.12", "10.100.1.11"):
        cli.ok("backend", "add", SID, address)
    cli.ok("service", "add", "udp", "[2001:db8::100]:53", "-s", "sh", "-b", "sh-port", "-p", "30", "-M", "64")
    cli.ok("backend", "add", SID6, "2001:db8:1::11", "-w", "2")
    _traffic(manager)

    [stats] = [s for s in manager.stats() if s.service.id == SID]
    counts = {str(a): (b.active, b.inactive) for a, b in stats.backends.items()}
    assert sum(a for a, _ in counts.values()) == 2 and sum(i for _, i in counts.values()) == 1

    lines = cli.ok("list").stdout.split("\n")
    assert lines[0].startswith("IP Virtual Server version ")
    assert lines[1:4] == ["Prot LocalAddress:Port Scheduler Flags",
                          "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn",
                          "TCP  10.100.0.100:80 rr"]
    for i, address in enumerate(("10.100.1.11", "10.100.1.12")):  # sorted as ipvsadm sorts
        active, inactive = counts[address]
        assert lines[4 + i].split() == ["->", f"{address}:80", "Route", "1", str(active), str(inactive)]
    assert lines[6] == "UDP  [2001:db8::100]:53 sh (sh-port) persistent 30 mask 64"
    assert lines[7].split() == ["->", "[2001:db8:1::11]:53", "Route", "2", "0", "0"]

    stat_lines = cli.ok("list", "--stats", "tcp", "10.100.0.100:80").stdout.split("\n")
    assert stat_lines[0].split() == ["Prot", "LocalAddress:Port", "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"]
    names = ("conns", "in_pkts", "out_pkts", "in_bytes", "out_bytes")
    assert stat_lines[2].split() == ["TCP", "10.100.0.100:80", *(str(stats.stats[k]) for k in names)]
    for line in stat_lines[3:5]:
        address = line.split()[1].rsplit(":", 1)[0]
        per = stats.backends[ipaddress.ip_address(address)].stats
        assert line.split()[2:] == [str(per[k]) for k in names]
    assert stats.stats["conns"] == 3 and stats.stats["in_pkts"] == 5

    r = cli.ok("list", "--rate")
    assert "CPS    InPPS   OutPPS    InBPS   OutBPS" in r.stdout and "no rate estimator" in r.stderr

    conns = cli.ok("list", "-c").stdout.split("\n")
    assert conns[:2] == ["IPVS connection entries",
                         "pro expire state       source             virtual            destination"]
    rows = {line.split()[3]: line.split() for line in conns[2:] if line}
    assert set(rows) == {f"{pk.CLIENT4}:{p}" for p in (40001, 40002, 40003)}
    assert rows[f"{pk.CLIENT4}:40003"][2] == "SYN_RECV" and rows[f"{pk.CLIENT4}:40001"][2] == "ESTABLISHED"
    assert rows[f"{pk.CLIENT4}:40001"][1] in ("15:00", "14:59")
    assert {r[4] for r in rows.values()} == {"10.100.0.100:80"}

    page = cli.json("list", "-c", "--state", "SYN_RECV")
    assert page["total"] == 1 and page["items"][0]["client_port"] == 40003
    assert cli.json("list", "-c", "udp", "[2001:db8::100]:53")["total"] == 0
    doc = cli.json("list", "--stats")
    assert {s["id"] for s in doc["services"]} == {SID, SID6} and {s["id"] for s in doc["stats"]} == {SID, SID6}
    assert cli.json("list", SID)["services"][0]["id"] == SID


def test_list_of_an_unknown_service(cli, manager):
    r = cli("list", "tcp", "10.100.0.100:81")
    _refused(r)
    assert "no service tcp:10.100.0.100:81" in r.stderr


# ---- apply, config get, import ----------------------------------------------------------------------

SERVICES_YAML = """\
services:
  - protocol: tcp
    vip: 10.100.0.100
    port: 80
    scheduler: wlc
    backends:
      - address: 10.100.1.11
        weight: 3
      - address: 10.100.1.12
  - protocol: udp
    vip: 2001:db8::100
    port: 53
    scheduler: mh
    backends:
      - address: 2001:db8:1::11
timeouts:
  tcp: 600
"""


def test_apply_dry_run_then_apply(cli, manager, tmp_path):
    cli.ok("service", "add", "tcp", "10.100.0.100:443")
    path = tmp_path / "services.yaml"
    path.write_text(SERVICES_YAML)
    before, version = manager.state, manager.version
    r = cli.ok("apply", "-f", str(path), "--dry-run")
    assert "dry run, nothing changed" in r.stdout
    for line in (f"+ service {SID}", f"+ service {SID6}", "- service tcp:10.100.0.100:443",
                 "~ timeouts: tcp 900 → 600"):
        assert line in r.stdout
    assert manager.state == before and manager.version == version

    change = cli.json("apply", "-f", str(path))
    assert change["version"] == version + 1 and sorted(change["diff"]["added"]) == sorted([SID, SID6])
    assert {s.id for s in manager.dp.services} == {SID, SID6} and manager.state.timeouts.tcp == 600
    assert _weights(manager) == {"10.100.1.11": 3, "10.100.1.12": 1}
    assert "no change" in cli.ok("apply", "-f", "-", input=SERVICES_YAML).stdout  # standard input
    assert manager.version == version + 1


def test_apply_takes_a_whole_daemon_config(cli, manager, tmp_path):
    path = tmp_path / "director.yaml"
    path.write_text("director:\n  name: lb9\n  interfaces: [eth0]\napi:\n  listen: 127.0.0.1:9999\n" + SERVICES_YAML)
    cli.ok("apply", "-f", str(path))
    assert {s.id for s in manager.state.services} == {SID, SID6}


@pytest.mark.parametrize(("text", "message"), [
    (SERVICES_YAML.replace("weight: 3", "weight: 70000"), "line 8: services[0].backends[0].weight"),
    (SERVICES_YAML.replace("scheduler: mh", "scheduler: lblc"), "line 13: services[1].scheduler"),
    (SERVICES_YAML.replace("port: 53", "port: 53\n    port: 54"),
     "line 13: services[1].port: given twice (first at line 12)"),
    ("services:\n  - protocol: tcp\n    vip: [oops\n", "line 3: YAML"),
    ("timeouts:\n  tcp: 600\n", "no services: key"),
    ("", "no services: key"),
    (SERVICES_YAML + "colour: blue\n", "line 18: colour: Extra inputs are not permitted"),
])
def test_apply_refuses_a_bad_file_with_its_line(cli, manager, tmp_path, text, message):
    cli.ok("service", "add", "tcp", "10.100.0.100:443")
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    before = manager.state
    r = cli("apply", "-f", str(path))
    _refused(r)
    assert message in r.stderr
    assert manager.state == before


def test_apply_refused_by_the_data_plane_changes_nothing(cli, manager, tmp_path):
    cli.ok("service", "add", "tcp", "10.100.0.100:443")
    path = tmp_path / "unroutable.yaml"
    path.write_text(SERVICES_YAML.replace("10.100.1.12", "192.0.2.12"))
    before = manager.state
    r = cli("apply", "-f", str(path))
    _refused(r)
    assert f"{SID}:" in r.stderr and "192.0.2.12" in r.stderr
    assert manager.state == before and [s.id for s in manager.dp.services] == ["tcp:10.100.0.100:443"]


def test_config_get_round_trips_through_apply(cli, manager, tmp_path):
    path = tmp_path / "services.yaml"
    path.write_text(SERVICES_YAML)
    cli.ok("apply", "-f", str(path))
    r = cli.ok("service", "edit", SID, "-p", "120", "-M", "16", "-b", "", "--tunnel", "gue")
    assert "    tunnel.encap: ipip → gue" in r.stdout  # a nested field: only the part that changed
    assert '    persistence: none → {"timeout": 120, "netmask": 16}' in r.stdout
    text = cli.ok("config", "get").stdout
    assert text.startswith(f"# xdplb configuration version {manager.version} from unix:")
    assert "ring_size" not in text and "tcp: 600" in text and "syn: 60" in text  # defaults left out, timeouts whole
    assert "persistence:\n    timeout: 120\n    netmask: 16\n" in text
    saved = tmp_path / "running.yaml"
    saved.write_text(text)
    version = manager.version
    assert "no change" in cli.ok("apply", "-f", str(saved), "--dry-run").stdout
    cli.ok("service", "delete", SID6)
    change = cli.json("apply", "-f", str(saved))
    assert change["diff"]["added"] == [SID6] and not change["diff"]["changed"]
    doc = cli.json("config", "get")
    assert doc["version"] == version + 2 and {s["id"] for s in doc["services"]} == {SID, SID6}


IPVSADM_SAVE = """\
-A -t 10.100.0.100:80 -s wlc -p 300
-a -t 10.100.0.100:80 -r 10.100.1.11:80 -g -w 3
-a -t 10.100.0.100:80 -r 10.100.1.12:80 -g -w 1
-A -u 10.100.0.100:53 -s rr -o
-a -u 10.100.0.100:53 -r 10.100.1.13:53 -g -w 1
"""


def test_import_ipvsadm_replaces_the_configuration(cli, manager, tmp_path):
    cli.ok("service", "add", "tcp", "10.100.0.100:443")
    path = tmp_path / "ipvs.rules"
    path.write_text(IPVSADM_SAVE)
    before = manager.state
    r = cli.ok("import", "ipvsadm", str(path), "--dry-run")
    assert "skipped:" in r.stderr and "line 4" in r.stderr  # -o (one-packet scheduling) is left out
    assert "scheduler: wlc" in r.stdout and "- service tcp:10.100.0.100:443" in r.stdout
    assert manager.state == before

    change = cli.json("import", "ipvsadm", "-", input=IPVSADM_SAVE)
    assert sorted(change["diff"]["added"]) == [SID, "udp:10.100.0.100:53"]
    assert change["diff"]["removed"] == ["tcp:10.100.0.100:443"]
    assert _weights(manager) == {"10.100.1.11": 3, "10.100.1.12": 1}
    assert manager.service(manager.state.services[0].key).persistence.timeout == 300


def test_import_ipvsadm_merge(cli, manager):
    cli.ok("service", "add", "tcp", "10.100.0.100:443")
    cli.ok("import", "ipvsadm", "--merge", input=IPVSADM_SAVE)
    assert {s.id for s in manager.dp.services} == {"tcp:10.100.0.100:443", SID, "udp:10.100.0.100:53"}
    before = manager.state
    r = cli("import", "ipvsadm", "--merge", input=IPVSADM_SAVE)
    _refused(r)
    assert f"service {SID} exists already" in r.stderr and manager.state == before


def test_import_ipvsadm_refuses_a_bad_dump_before_the_api(cli, manager, tmp_path):
    before = manager.state
    r = cli("import", "ipvsadm", "--url", "unix:/nonexistent/api.sock", url=False,
            input="-A -t 10.100.0.100:80 -s wlc\n-a -t 10.100.0.100:80 -r 10.100.1.300 -g\n")
    _refused(r)
    assert "line 2" in r.stderr and "cannot reach" not in r.stderr  # the API was never called
    assert manager.state == before


DATA = Path(__file__).parent / "data" / "imports"


@pytest.mark.parametrize("kind, path", [("ipvsadm", DATA / "ipvsadm-save.txt"),
                                        ("keepalived", DATA / "keepalived" / "keepalived.conf")])
def test_import_of_the_importers_samples_is_all_or_nothing(cli, manager, kind, path):
    """The samples hold a NAT service, which this data plane refuses: nothing of them is applied."""
    if not path.exists():
        pytest.skip(f"{path} (the importers' sample) is not there")
    cli.ok("service", "add", "tcp", "10.100.0.100:443")
    before = manager.state
    r = cli("import", kind, str(path), "--dry-run")
    _refused(r)
    assert "skipped: " in r.stderr and "not imported" in r.stderr  # what the import leaves out, said first
    assert "services:\n- protocol: tcp" in r.stdout  # the configuration the import makes
    assert "nat" in r.stderr.lower()
    _refused(cli("import", kind, str(path)))
    assert manager.state == before and [s.id for s in manager.dp.services] == ["tcp:10.100.0.100:443"]


def test_import_keepalived(cli, manager, tmp_path):
    pytest.importorskip("xdplb.imports.keepalived", reason="xdplb.imports.keepalived (the keepalived importer) "
                        "is not written yet")
    path = tmp_path / "keepalived.conf"
    path.write_text(textwrap.dedent("""\
        virtual_server 10.100.0.100 80 {
            lb_algo wlc
            lb_kind DR
            protocol TCP
            real_server 10.100.1.11 80 {
                weight 3
            }
        }
    """))
    before = manager.state
    r = cli.ok("import", "keepalived", str(path), "--dry-run")
    assert f"+ service {SID}" in r.stdout and manager.state == before
    cli.ok("import", "keepalived", str(path))
    assert _weights(manager) == {"10.100.1.11": 3}


# ---- simulate, capture --------------------------------------------------------------------------------

def test_simulate(cli, manager):
    cli.ok("service", "add", "tcp", "10.100.0.100:80")
    cli.ok("backend", "add", SID, "10.100.1.11")
    r = cli.ok("simulate", "--from", "10.99.0.10:40000", "--to", "10.100.0.100:80/tcp")
    rows = {line.split()[0]: line.split(None, 1)[1].strip() for line in r.stdout.splitlines() if line.strip()}
    assert rows["service"] == SID and rows["backend"] == "10.100.1.11"
    assert rows["verdict"] in ("TX", "REDIRECT") and "10.99.0.10" in rows["in"] and "hex" not in r.stdout
    assert "in hex" in cli.ok("simulate", "--from", "10.99.0.10:40000", "--to", "10.100.0.100:80", "-v").stdout
    sim = cli.json("simulate", "--from", "10.99.0.10:40000", "--to", "10.100.0.100:81/tcp")
    assert (sim["verdict"], sim["service"]) == ("PASS", None)
    assert list(manager.dp.connections()) == []  # a simulation leaves nothing behind
    _refused(cli("simulate", "--from", "10.99.0.10:40000", "--to", "10.100.0.100:80/sctp"), 2)
    r = cli("simulate", "--from", "10.99.0.10", "--to", "10.100.0.100:80")
    _refused(r)
    assert "ADDRESS:PORT" in r.stderr


def test_capture_writes_a_pcap_of_real_frames_in_and_out(cli, manager, tmp_path):
    """Frames run through the real program while the CLI captures: the pcap holds each as received and
    then as sent to its backend, read back with scapy."""
    from scapy.utils import rdpcap

    cli.ok("service", "add", "tcp", "10.100.0.100:80")
    cli.ok("backend", "add", SID, "10.100.1.11")
    cli.ok("service", "add", "udp", "10.100.0.100:53")
    cli.ok("backend", "add", "udp:10.100.0.100:53", "10.100.1.12")
    stop = threading.Event()

    def traffic() -> None:
        for i in range(400):
            manager.dp.run(pk.udp(sport=50000 + i, dst="10.100.0.100", dport=53))  # not the captured service
            manager.dp.run(pk.tcp(sport=50000 + i, dst="10.100.0.100"))
            if stop.wait(0.01):
                return

    sender = threading.Thread(target=traffic)
    sender.start()
    try:
        out = tmp_path / "out.pcap"
        r = cli.ok("capture", "tcp", "10.100.0.100:80", "--count", "6", "--seconds", "10", "-w", str(out))
    finally:
        stop.set()
        sender.join()
    assert "6 packets written to" in r.stderr
    frames = [bytes(p) for p in rdpcap(str(out))]
    assert len(frames) == 6
    for received, sent in zip(frames[::2], frames[1::2], strict=True):
        sport = Ether(received)[TCP].sport
        assert received == pk.tcp(sport=sport, dst="10.100.0.100")  # as the client sent it
        assert sent == manager.dp.simulate(received).frame  # as the balancer sent it: to 10.100.1.11's MAC
        assert Ether(sent).dst != Ether(received).dst and Ether(sent)[TCP].sport == sport
    busy = manager.dp.capture(CaptureFilter())  # one capture at a time: the API says so
    try:
        _refused(cli("capture", "-w", str(tmp_path / "x.pcap"), "--seconds", "1"))
    finally:
        busy.close()


def test_capture_client_side_against_a_stand_in_route(manager, tmp_path):
    """The CLI's half of capture (query, streaming, the file, the count), with a stand-in for the API's
    route that answers a pcap of three frames in odd-sized chunks."""
    from fastapi.responses import StreamingResponse
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap


    wrpcap(str(tmp_path / "three.pcap"), [Ether(pk.tcp(sport=40000 + i)) for i in range(3)])
    data = (tmp_path / "three.pcap").read_bytes()
    asked = []
    app = FastAPI()

    @app.get("/v1/capture")
    def stand_in(request: Request) -> StreamingResponse:
        asked.append(dict(request.query_params))
        return StreamingResponse((data[i:i + 37] for i in range(0, len(data), 37)),
                                 media_type="application/vnd.tcpdump.pcap")

    url = f"unix:{tmp_path}/capture.sock"
    server = ApiServer(app, url).start()
    try:
        cli = Cli(url, _token_file(tmp_path / "api.token"))
        out = tmp_path / "out.pcap"
        r = cli.ok("capture", "tcp", "10.100.0.100:80", "--client", "10.99.0.10:40000", "--count", "3",
                   "--seconds", "2", "--rate", "100", "--snaplen", "128", "-w", str(out))
        assert "3 packets written to" in r.stderr and out.read_bytes() == data
        assert asked[0] == {"service": SID, "client": "10.99.0.10", "client_port": "40000", "count": "3",
                            "seconds": "2.0", "rate": "100", "snaplen": "128"}
        r = cli.ok("capture", "--client", "2001:db8::9", "--protocol", "udp", "-w", "-")
        assert r.stdout_bytes == data and asked[1] == {"client": "2001:db8::9", "protocol": "udp"}
        assert cli.json("capture", "-w", str(out)) == {"packets": 3, "bytes": len(data), "file": str(out)}
    finally:
        server.stop()


def test_capture_needs_a_file(cli, manager):
    _refused(cli("capture", "tcp", "10.100.0.100:80"), 2)


def test_pcap_counter_counts_records_across_any_chunking(tmp_path):
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    frames = [pk.tcp(sport=40000 + i, payload=b"x" * i) for i in range(5)]
    wrpcap(str(tmp_path / "f.pcap"), [Ether(f) for f in frames])
    data = (tmp_path / "f.pcap").read_bytes()
    for size in (1, 7, 16, 24, 1000):
        counter = PcapCounter()
        for i in range(0, len(data), size):
            counter.feed(data[i:i + size])
        assert (counter.packets, counter.bytes) == (5, len(data))


# ---- bad input, access, where the API is ---------------------------------------------------------------

@pytest.mark.parametrize(("args", "code", "message"), [
    (["service", "add", "tcp", "10.100.0.300:80"], 2, "'10.100.0.300' is not an IPv4 or IPv6 address"),
    (["service", "add", "tcp", "10.100.0.100:70000"], 2, "not in 0..65535"),
    (["service", "add", "sctp", "10.100.0.100:80"], 2, "protocol 'sctp' is not tcp or udp"),
    (["service", "add", "tcp", "10.100.0.100:80", "-s", "lblc"], 2, "'lblc' is not one of"),
    (["service", "add", "tcp", "10.100.0.100:80", "-b", "sh-fallback"], 2, "known flags are"),
    (["service", "add", "tcp", "10.100.0.100:80", "-M", "24"], 2, "a netmask needs persistence"),
    (["service", "add", "tcp", "10.100.0.100:80", "-s", "rr", "-b", "sh-port"], 1, "needs scheduler sh"),
    (["service", "add", "tcp", "10.100.0.100:80", "--ring-size", "100"], 1, "ring_size must be a prime"),
    (["service", "add", "tcp", "10.100.0.100:443"], 1, "exists already"),
    (["service", "edit", "tcp", "10.100.0.100:81", "-s", "rr"], 1, "no service tcp:10.100.0.100:81"),
    (["backend", "add", SID, "10.100.1.11", "-w", "70000"], 1, "weight: Input should be less than or equal to 65535"),
    (["backend", "add", SID, "10.100.1.300"], 2, "is not ADDRESS or ADDRESS:PORT"),
    (["backend", "add", SID, "10.100.1.11:81"], 1, "port mapping (443 -> 81) needs NAT"),
    (["backend", "add", SID, "192.0.2.1"], 1, "no route to backend 192.0.2.1"),
    (["backend", "add", SID], 2, "expected a service and an address"),
    (["backend", "edit", SID, "10.100.1.11"], 2, "nothing to change"),
    (["list", "--stats", "--rate"], 2, "--stats or --rate, not both"),
])
def test_bad_input_is_refused_clearly_and_changes_nothing(cli, manager, args, code, message):
    cli.ok("service", "add", "tcp", "10.100.0.100:443")
    args = [a.replace(SID, "tcp:10.100.0.100:443") for a in args]
    before = manager.state
    r = cli(*args)
    _refused(r, code)
    assert message in " ".join(r.output.split()), r.output
    assert manager.state == before and [s.id for s in manager.dp.services] == ["tcp:10.100.0.100:443"]


def test_a_wrong_or_missing_token(cli, manager, tmp_path):
    wrong = _token_file(tmp_path / "wrong.token", "not-the-token-0123456789")
    r = cli("service", "add", "tcp", "10.100.0.100:80", "--token-file", str(wrong), auth=False)
    _refused(r)
    assert "the token is not this director's" in r.stderr and str(wrong) in r.stderr
    r = cli("service", "add", "tcp", "10.100.0.100:80", auth=False)
    _refused(r)
    assert "a bearer token is required" in r.stderr and "--token-file" in r.stderr
    assert manager.state.services == []
    assert "Prot LocalAddress:Port" in cli.ok("list", auth=False).stdout  # reads need no token here
    r = cli("list", "--token-file", str(tmp_path / "absent.token"), auth=False)
    _refused(r, 2)
    assert "cannot read the token file" in r.stderr


def test_an_unreachable_api_says_where_it_tried(cli, manager, tmp_path):
    r = cli("list", "--url", f"unix:{tmp_path}/nothing.sock", url=False)
    _refused(r)
    assert f"cannot reach the xdplb API at unix:{tmp_path}/nothing.sock (--url)" in r.stderr
    assert "--url, XDPLB_URL" in r.stderr
    r = cli("list", url=False, env={"XDPLB_URL": "http://127.0.0.1:1"})
    _refused(r)
    assert "http://127.0.0.1:1 (XDPLB_URL)" in r.stderr
    _refused(cli("list", "--url", "ftp://x", url=False), 2)


def test_settings_from_the_environment_and_the_cli_config(cli, manager, tmp_path):
    env = {"XDPLB_URL": cli.url, "XDPLB_TOKEN_FILE": str(cli.token_file)}
    r = cli.ok("service", "add", "tcp", "10.100.0.100:80", "-v", url=False, auth=False, env=env)
    assert f"API {cli.url} (from XDPLB_URL); token: {cli.token_file} (XDPLB_TOKEN_FILE)" in r.stderr

    config = tmp_path / "etc" / "cli.yaml"
    config.parent.mkdir()
    _token_file(config.parent / "director.token")
    config.write_text(f"url: {cli.url}\ntoken_file: director.token\n")  # relative to the file
    r = cli.ok("service", "delete", SID, "-v", "--cli-config", str(config), url=False, auth=False)
    assert f"token: {config.parent / 'director.token'} ({config})" in r.stderr
    cli.ok("list", url=False, auth=False, env={"XDPLB_CLI_CONFIG": str(config), "XDPLB_TOKEN": API_TOKEN})
    config.write_text("url: x\ncolour: blue\n")
    _refused(cli("list", "--cli-config", str(config), url=False), 2)


def test_the_token_file_of_the_one_director_here(monkeypatch, tmp_path):
    monkeypatch.setattr(client_mod, "STATE_ROOT", tmp_path)
    assert client_mod.resolve(env={}).token is None
    _token_file((tmp_path / "lb1").mkdir() or tmp_path / "lb1" / "api.token")
    target = client_mod.resolve(env={})
    assert (target.url, target.url_from) == ("http://127.0.0.1:9780", "the default")
    assert target.token == API_TOKEN and "the one director here" in target.token_from
    _token_file((tmp_path / "lb2").mkdir() or tmp_path / "lb2" / "api.token")
    target = client_mod.resolve(env={})
    assert target.token is None and "2 directors here" in target.token_from
    assert client_mod.resolve(token="t", env={"XDPLB_TOKEN": "u"}).token == "t"


def test_shell_completion_script(monkeypatch):
    # the shell named, not detected from the parent processes (which differ under CI)
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")
    r = CliRunner().invoke(app, ["--show-completion", "bash"], prog_name="xdplb")
    assert r.exit_code == 0 and "complete" in r.stdout and "xdplb" in r.stdout, (r.output, r.exception)


@pytest.mark.parametrize(("line", "words"), [
    ("xdplb service add tcp 10.100.0.100:80 -s w", ["wrr", "wlc"]),
    ("xdplb service add tcp 10.100.0.100:80 --method ", ["dr", "tun", "nat"]),
    ("xdplb backend drain ", ["tcp", "udp", "fwm"]),
    ("xdplb li", ["list"]),
])
def test_shell_completion_of_words(line, words):
    env = {"_XDPLB_COMPLETE": "complete_bash", "COMP_WORDS": line, "COMP_CWORD": str(len(line.split(" ")) - 1)}
    r = CliRunner().invoke(app, [], prog_name="xdplb", env=env)
    assert r.exit_code == 0 and r.stdout.split() == words


def _site(manager: Manager) -> dict[str, tuple]:
    """Each service of the data plane: scheduler, method, persistence, flags, backends with weights."""
    return {s.id: (s.scheduler.value, s.method.value, s.persistence and (s.persistence.timeout, s.persistence.netmask),
                   sorted(f.value for f in s.sched_flags), {str(b.address): b.weight for b in s.backends})
            for s in manager.dp.services}


def test_import_of_a_real_sites_ipvsadm_dump_reaches_the_data_plane(cli, manager):
    cli.ok("service", "add", "tcp", "10.100.0.100:8080")
    r = cli.ok("import", "ipvsadm", str(DATA / "ipvsadm-save-site.txt"))
    assert "line 11" in r.stderr  # -o one-packet scheduling: said, and left out
    assert _site(manager) == {
        "tcp:10.100.0.100:80": ("wlc", "dr", (300, 24), [], {"10.100.1.11": 3, "10.100.1.12": 2, "10.100.1.13": 0}),
        "tcp:10.100.0.100:443": ("sh", "dr", None, ["sh-port"], {"10.100.1.11": 1, "10.100.1.12": 1}),
        "tcp:10.100.0.102:80": ("rr", "tun", None, [], {"10.100.1.21": 1, "10.100.1.22": 1}),
        "udp:10.100.0.100:53": ("mh", "dr", None, ["mh-port"], {"10.100.1.11": 1, "10.100.1.12": 1}),
        "tcp:[2001:db8::100]:80": ("wrr", "dr", (1800, 64), [], {"2001:db8:1::11": 5, "2001:db8:1::12": 1}),
    }  # the service that was there is gone: an import replaces, as ipvsadm-restore after -C


def test_import_of_a_real_sites_keepalived_conf_reaches_the_data_plane(cli, manager):
    r = cli.ok("import", "keepalived", str(DATA / "keepalived" / "keepalived-site.conf"))
    for skipped in ("global_defs", "vrrp_instance"):
        assert skipped in r.stderr
    checks = {str(b.address): (b.check.type.value, b.check.interval, b.check.path)
              for b in manager.service(("tcp", ipaddress.ip_address("10.100.0.110"), 80)).backends}
    assert checks == {"10.100.1.11": ("tcp", 6.0, "/"), "10.100.1.12": ("http", 6.0, "/healthz")}
    web = ("wlc", "dr", (600, 24), [], {"10.100.1.11": 3, "10.100.1.12": 1})
    assert _site(manager) == {
        "tcp:10.100.0.100:80": web, "tcp:10.100.0.110:80": web, "tcp:10.100.0.111:80": web,  # the group's entries
        "tcp:10.100.0.100:443": ("mh", "dr", None, ["mh-port"], {"10.100.1.11": 1, "10.100.1.12": 1}),
        "tcp:10.100.0.102:80": ("rr", "tun", None, [], {"10.100.1.21": 2, "10.100.1.22": 1}),
        "udp:10.100.0.100:53": ("rr", "dr", None, [], {"10.100.1.11": 1, "10.100.1.13": 1}),
    }
    # and it forwards: a new flow to a group address goes to one of the web backends
    sim = cli.json("simulate", "--from", "10.99.0.10:40000", "--to", "10.100.0.111:80/tcp")
    assert sim["service"] == "tcp:10.100.0.111:80" and sim["backend"] in ("10.100.1.11", "10.100.1.12")
