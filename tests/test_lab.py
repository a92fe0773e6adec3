"""The namespace lab itself: the topology of DESIGN.md, reachable hosts, and a clean teardown."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from xdplb import net
from xdplb.lab import BY_NAME, HOSTS, ROLES, Lab, alive, all_prefixes

pytestmark = pytest.mark.lab


def test_topology_and_addresses(lab):
    rows = {r["host"]: r for r in lab.status()}
    assert set(rows) == {h.name for h in HOSTS}
    for host in HOSTS:
        assert rows[host.name]["up"]
        for segment in host.segments:
            addrs = rows[host.name]["interfaces"][segment]["addresses"]
            assert f"{host.address(segment, 4)}/24" in addrs
            assert f"{host.address(segment, 6)}/64" in addrs
    # NAT real servers are on the back segment only
    assert set(rows["rs4"]["interfaces"]) == {"back"}


@pytest.mark.parametrize(("target", "server"), [("10.100.0.11", "rs1"), ("[fd00:100::12]", "rs2")])
def test_client_reaches_a_real_server_through_the_router(lab, target, server):
    res = lab.exec("client", ["curl", "-gs", "-m", "3", f"http://{target}/"], check=True)
    assert res.stdout.strip() == server


def test_up_twice_then_down_leaves_nothing(lab):  # (lab: only to skip without root)
    lab = Lab(prefix=f"xu{os.getpid()}")
    try:
        lab.up("generic")
        lab.up("generic")  # idempotent: rebuilt, not doubled
        assert sum(n.startswith(f"{lab.prefix}-") for n in net.list_netns()) == len(HOSTS) + 1
        assert lab.prefix in all_prefixes()  # what `xdplb lab down --all` takes down
        pids = net.namespace_pids(lab.ns("rs1"))
        assert len(pids) >= 3  # nginx master and worker, the echo service: once, not twice
        assert len([p for p in pids if "nginx: master" in Path(f"/proc/{p}/cmdline").read_text()]) == 1
    finally:
        lab.down()
    assert not [n for n in net.list_netns() if n.startswith(f"{lab.prefix}-")]
    assert not lab.state_dir.exists()
    assert not [p for p in pids if alive(p)]
    assert lab.prefix not in all_prefixes()


def test_sigterm_runs_the_cleanup(tmp_path):
    """exit_on_signals: a SIGTERM unwinds like Ctrl-C, so the `finally` that takes a lab down runs."""
    done = tmp_path / "cleaned"
    code = ("import time; from xdplb.lab import exit_on_signals; exit_on_signals()\n"  # ready once inside the try
            "try:\n    print('ready', flush=True)\n    time.sleep(60)\n"
            f"finally:\n    open({str(done)!r}, 'w').write('yes')")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.terminate()
    proc.wait(timeout=10)
    assert done.read_text() == "yes"


def test_vm_routes_keep_the_management_default_route(lab):
    """On VMs (LAB_ROUTES=prefixes) the role scripts route only the lab's prefixes via the lab."""
    args = " ".join(BY_NAME["client"].role_args(lab.state_dir / "client"))
    res = lab.exec("client", ["bash", "-c", "ip route replace default via 10.99.0.99 && LAB_ROUTES=prefixes "
                              f"bash {ROLES}/client.sh {args} && ip route"], check=True)
    try:
        assert "default via 10.99.0.99" in res.stdout  # the stand-in management route stayed
        assert "10.0.0.0/8 via 10.99.0.1" in res.stdout
    finally:
        lab.exec("client", ["bash", "-c", "ip route del 10.0.0.0/8; ip -6 route del fd00::/8; "
                                          "ip route replace default via 10.99.0.1"], check=True)


def test_cli_status_shows_hosts_xdp_and_services(lb):
    from typer.testing import CliRunner

    from xdplb.cli import app
    from xdplb.labclients import dr_service

    lb.set_service(dr_service())
    res = CliRunner().invoke(app, ["lab", "status", "--prefix", lb.lab.prefix], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert f"lab {lb.lab.prefix}: up" in res.output
    lb1_front = next(line for line in res.output.splitlines() if "lb1" in line and "front" in line)
    assert "10.100.0.2/24" in lb1_front and lb.mode in lb1_front
    assert "lb1: TCP 10.100.0.100:80 wrr dr -> 10.100.0.11 w3, 10.100.0.12 w2, 10.100.0.13 w1" in res.output


def test_cli_exec_runs_on_the_host_and_refuses_unknown_hosts(lab):
    from typer.testing import CliRunner

    from xdplb.cli import app

    bad = CliRunner().invoke(app, ["lab", "exec", "nobody", "true"])
    assert bad.exit_code == 2 and "no host nobody" in bad.output
    res = subprocess.run([sys.executable, "-m", "xdplb.cli", "lab", "exec", "--prefix", lab.prefix, "rs2",
                          "hostname", "-I"], capture_output=True, text=True)
    assert res.returncode == 0 and "10.100.0.12" in res.stdout
