"""The daemon as a real process in a director namespace: it applies its configuration file, keeps
forwarding when it is killed (SIGKILL or SIGTERM), takes its pinned maps over when started again
(connections keep their backends), reloads on SIGHUP and refuses a bad file without changing
anything; only `xdplb stop --detach` removes the balancer. Traffic is real frames through the
attached program (BPF_PROG_TEST_RUN on the program the interface runs)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests import packets as pk
from xdplb import bpfobj, net, pinning
from xdplb.testrun import XdpRunner

pytestmark = pytest.mark.daemon

SIZES = dict(max_services=8, max_vips=32, max_backends=256, ring_max=4099, seq_max=256, conn_max=65536,
             syn_max=16384, persist_max=16384, max_tx_ports=8)


@pytest.fixture
def director(tmp_path):
    """A director namespace (xd-a, 10.100.0.2) facing a real-server namespace (xd-b, .11 and .12)."""
    tag = f"xd{os.getpid()}"
    ns_d, ns_r = f"{tag}-lb", f"{tag}-rs"
    pin_dir = Path(f"/sys/fs/bpf/xdplb-test-{tag}")
    for ns in (ns_d, ns_r):
        net.remove_netns(ns)
        net.create_netns(ns)
    procs: list[subprocess.Popen] = []
    try:
        with net.in_netns(ns_d):
            net.add_veth("xd-a", "xd-b")
            net.move_link("xd-b", ns_r)
            net.configure_link("xd-a", "10.100.0.2/24")
        with net.in_netns(ns_r):
            net.configure_link("xd-b", "10.100.0.11/24", "10.100.0.12/24")
        config = tmp_path / "lb.yaml"
        doc = {
            "director": {"name": tag, "interfaces": ["xd-a"], "xdp_mode": "generic", "pin_dir": str(pin_dir),
                         "state_dir": str(tmp_path / "state"), "sizes": SIZES},
            "api": {"listen": f"unix:{tmp_path}/api.sock"},
            "services": [{"protocol": "tcp", "vip": str(pk.VIP4), "port": 80, "scheduler": "rr", "ring_size": 4099,
                          "backends": [{"address": "10.100.0.11"}, {"address": "10.100.0.12"}]}],
        }
        config.write_text(yaml.safe_dump(doc))
        yield type("Director", (), {"ns": ns_d, "config": config, "doc": doc, "pin_dir": pin_dir,
                                    "socket": tmp_path / "api.sock", "token": tmp_path / "state" / "api.token",
                                    "status": tmp_path / "state" / "status.json", "procs": procs})
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        with net.in_netns(ns_d):
            from xdplb.datapath import detach_xdp
            with contextlib.suppress(Exception):
                detach_xdp("xd-a")
        pinning.unpin(pin_dir)
        for ns in (ns_d, ns_r):
            net.remove_netns(ns)


def start(d) -> subprocess.Popen:
    before = d.status.stat().st_mtime_ns if d.status.exists() else 0
    proc = subprocess.Popen([sys.executable, "-m", "xdplb.cli", "daemon", "-c", str(d.config), "--netns", d.ns],
                            stderr=subprocess.PIPE, text=True)
    d.procs.append(proc)
    wait_for(lambda: d.status.exists() and d.status.stat().st_mtime_ns != before, proc)
    return proc


def wait_for(cond, proc: subprocess.Popen | None = None, deadline: float = 30.0) -> None:
    end = time.monotonic() + deadline
    while not cond():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the daemon exited {proc.returncode}: {proc.stderr.read()}")
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def status(d) -> dict:
    return json.loads(d.status.read_text())


def attached_program(d) -> int:
    """An fd of the program xd-a runs now (the caller closes it)."""
    with net.in_netns(d.ns):
        prog_id = ctypes_query("xd-a")
    return bpfobj.ok(bpfobj.libbpf.bpf_prog_get_fd_by_id(prog_id), "program")


def ctypes_query(ifname: str) -> int:
    import ctypes
    import socket

    prog_id = ctypes.c_uint32(0)
    bpfobj.ok(bpfobj.libbpf.bpf_xdp_query_id(socket.if_nametoindex(ifname), 0, ctypes.byref(prog_id)), "XDP query")
    return prog_id.value


def forward(d, frame: bytes) -> str | None:
    """Runs a frame through the program the interface runs: the backend MAC it went to, or None."""
    fd = attached_program(d)
    try:
        res = XdpRunner(fd).run(frame)
    finally:
        os.close(fd)
    return pk.backend_of(res.frame) if res.verdict in ("TX", "REDIRECT") else None


def counter(d, name: str) -> int:
    """A global counter of the running balancer, read from its pinned map."""
    import struct

    from xdplb.datapath import COUNTERS

    with bpfobj.pinned(d.pin_dir / "counters") as counters:
        raw = counters.get(struct.pack("=I", COUNTERS[name])) or b""
    return sum(v for (v,) in struct.iter_unpack("=Q", raw))


def connections(d) -> int:
    with bpfobj.pinned(d.pin_dir / "conntrack") as conntrack:
        return sum(1 for _ in conntrack)


def test_killed_daemon_leaves_traffic_flowing_and_a_new_one_takes_over(director):
    d = director
    first = start(d)
    assert status(d)["services"] == 1 and status(d)["attached"] == {"xd-a": "generic"}, json.dumps(status(d))
    placed = {}
    for i in range(4):
        sport = 41000 + i
        assert forward(d, pk.tcp(sport=sport)) is not None
        placed[sport] = forward(d, pk.tcp(sport=sport, flags="A"))
    hits = counter(d, "conn_hit")
    first.send_signal(signal.SIGKILL)
    first.wait()
    for sport, backend in placed.items():  # nobody home: the balancer forwards on, from its table
        assert forward(d, pk.tcp(sport=sport, flags="A")) == backend
    assert connections(d) == 4 and counter(d, "conn_hit") == hits + 4
    version = status(d)["state_version"]
    start(d)
    assert status(d)["state_version"] == version  # the same desired state, not written again
    assert status(d)["written"].get("rings", 0) == 0 and status(d)["written"].get("seqs", 0) == 0
    new = counter(d, "conn_new")
    for sport, backend in placed.items():  # the new program, the same connections
        assert forward(d, pk.tcp(sport=sport, flags="A")) == backend
    assert connections(d) == 4 and counter(d, "conn_hit") == hits + 8 and counter(d, "conn_new") == new


def test_reload_applies_a_good_file_and_refuses_a_bad_one(director):
    d = director
    proc = start(d)
    version = status(d)["state_version"]
    good = d.config.read_text()
    d.config.write_text(good.replace("port: 80", "port: 8080"))
    mtime = d.status.stat().st_mtime_ns
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: d.status.stat().st_mtime_ns != mtime, proc)
    assert status(d)["state_version"] == version + 1
    assert forward(d, pk.tcp(dport=8080)) is not None and forward(d, pk.tcp(dport=80)) is None
    d.config.write_text(good.replace("scheduler: rr", "scheduler: nonsense"))
    proc.send_signal(signal.SIGHUP)
    time.sleep(1.0)
    assert proc.poll() is None and status(d)["state_version"] == version + 1
    assert forward(d, pk.tcp(dport=8080)) is not None  # the running state stayed


def test_sigterm_keeps_forwarding_and_stop_detach_removes_it(director):
    d = director
    proc = start(d)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    assert forward(d, pk.tcp(sport=42000)) is not None
    out = subprocess.run([sys.executable, "-m", "xdplb.cli", "stop", "-c", str(d.config), "--netns", d.ns,
                          "--detach"], capture_output=True, text=True, check=True).stdout
    assert "detached from xd-a" in out
    with net.in_netns(d.ns):
        assert net.xdp_mode("xd-a") is None
    assert not d.pin_dir.exists()


def test_new_sizes_move_the_maps_and_another_schema_is_refused(director):
    d = director
    proc = start(d)
    forward(d, pk.tcp(sport=43000))
    backend = forward(d, pk.tcp(sport=43000, flags="A"))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    d.doc["director"]["sizes"] = {**SIZES, "conn_max": 1 << 17}  # an upgrade with a bigger table
    d.config.write_text(yaml.safe_dump(d.doc))
    proc = start(d)
    hits = counter(d, "conn_hit")
    assert forward(d, pk.tcp(sport=43000, flags="A")) == backend
    assert counter(d, "conn_hit") == hits + 1 and connections(d) == 1
    with bpfobj.pinned(d.pin_dir / "conntrack") as conntrack:
        assert conntrack.max_entries == 1 << 17
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    from tests.conftest import _no_resolver
    from xdplb.datapath import Datapath
    from xdplb.sizes import Sizes

    with Datapath(Sizes(**d.doc["director"]["sizes"]), _no_resolver, d.pin_dir, observe=True) as observer:
        meta = observer.maps["pin_meta"]  # an older build's maps, as far as the next daemon can tell
        meta[meta.Key(0)] = meta.Leaf(schema_version=999)
    res = subprocess.run([sys.executable, "-m", "xdplb.cli", "daemon", "-c", str(d.config), "--netns", d.ns],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    from xdplb.datapath import SCHEMA_VERSION

    assert f"pinned maps have schema version 999, this build {SCHEMA_VERSION}" in res.stderr
    assert forward(d, pk.tcp(sport=43000, flags="A")) == backend  # the running balancer was not touched


def test_the_daemon_serves_the_api_with_a_private_token(director):
    """The API runs inside the daemon: a change through it is in the attached program's maps when the
    call returns, saved, and in status.json; the token file is created 0600."""
    import httpx

    d = director
    proc = start(d)
    assert stat.S_IMODE(d.token.stat().st_mode) == 0o600 and stat.S_IMODE(d.socket.stat().st_mode) == 0o600
    token = d.token.read_text().strip()
    sid = f"tcp:{pk.VIP4}:80"
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(d.socket)), base_url="http://xdplb") as api:
        assert api.get("/readyz").json() == {"ready": True, "problems": []}
        version = status(d)["state_version"]
        assert api.post(f"/v1/services/{sid}/backends/10.100.0.11/drain").status_code == 401
        r = api.post(f"/v1/services/{sid}/backends/10.100.0.11/drain", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        assert status(d)["state_version"] == version + 1 == int(r.headers["etag"].strip('"'))
        macs = {forward(d, pk.tcp(sport=43000 + i)) for i in range(12)}
        assert len(macs) == 1  # only .12 takes new connections now
        assert api.get(f"/v1/services/{sid}").json()["backends"][0]["weight"] == 0
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    assert not d.socket.exists()


def test_a_token_file_others_can_read_is_refused(director):
    d = director
    d.token.parent.mkdir(parents=True)
    d.token.write_text("a-token-that-others-can-read\n")
    d.token.chmod(0o644)
    proc = subprocess.run([sys.executable, "-m", "xdplb.cli", "daemon", "-c", str(d.config), "--netns", d.ns],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "mode 0644: others may read the API token; chmod 600 it" in proc.stderr
    with net.in_netns(d.ns):
        assert net.xdp_mode("xd-a") is None  # refused before anything was loaded


def test_the_daemon_runs_on_without_its_speaker_and_starts_one_later(director):
    """A speaker that cannot start (its control socket's directory is a file) does not stop the
    daemon: it forwards, and /v1/ha answers 503. Once the way is clear the daemon starts one."""
    import httpx

    d = director
    blocker = d.config.parent / "vrrp"
    blocker.write_text("not a directory")
    d.doc["ha"] = {"instances": [{"name": "VI_1", "interface": "xd-a", "vrid": 51, "advert_interval": 0.1,
                                  "addresses": ["10.100.0.100/32"]}],
                   "control_socket": str(blocker / "vrrp.sock")}
    d.config.write_text(yaml.safe_dump(d.doc))
    proc = start(d)
    token = d.token.read_text().strip()
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(d.socket)), base_url="http://xdplb",
                      headers={"Authorization": f"Bearer {token}"}) as api:
        assert api.get("/v1/ha").status_code == 503
        assert forward(d, pk.tcp(sport=44000)) is not None
        blocker.unlink()
        wait_for(lambda: api.get("/v1/ha").status_code == 200, proc, deadline=30)
        assert api.get("/v1/ha").json()["instances"][0]["name"] == "VI_1"
    assert proc.poll() is None
    subprocess.run([sys.executable, "-m", "xdplb.cli", "stop", "-c", str(d.config), "--netns", d.ns, "--detach"],
                   check=True, capture_output=True, timeout=60)
    assert not (blocker / "vrrp.sock").exists()
