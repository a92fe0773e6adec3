"""The Vagrant lab: the Vagrantfile validates (VMs cannot boot here) and its provisioning runs the
same role scripts, with the same arguments, as the namespace lab."""

from __future__ import annotations

import configparser
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
import typer.main

from xdplb.cli import app
from xdplb.config import parse_config
from xdplb.lab import BY_NAME, HOSTS, LAB_DIR, ROLES
from xdplb.labclients import dr_service, ha_settings

pytestmark = pytest.mark.lab
VAGRANT = Path(__file__).resolve().parent.parent / "vagrant"
TOPOLOGY = LAB_DIR / "topology.json"


def _role_args_module():
    spec = importlib.util.spec_from_file_location("vagrant_role_args", VAGRANT / "role_args.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(shutil.which("vagrant") is None, reason="vagrant is installed by scripts/setup.sh")
def test_vagrantfile_validates(tmp_path):
    env = {**os.environ, "VAGRANT_DOTFILE_PATH": str(tmp_path / ".vagrant")}  # nothing written to vagrant/
    res = subprocess.run(["vagrant", "validate"], cwd=VAGRANT, capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "validated successfully" in res.stdout


def test_every_role_has_its_script_and_scripts_parse():
    for script in [*ROLES.glob("*.sh"), VAGRANT / "provision.sh"]:
        res = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert res.returncode == 0, f"{script}: {res.stderr}"
    assert {h.role for h in HOSTS} <= {p.stem for p in ROLES.glob("*.sh")}


@pytest.mark.parametrize("ha", [False, True], ids=["static", "ha"])
@pytest.mark.parametrize("host", HOSTS, ids=[h.name for h in HOSTS])
def test_vm_provisioning_passes_the_namespace_labs_arguments(lab, host, ha):
    """role_args.py, run where the interfaces carry the topology's MACs (the lab's hosts), finds the
    same role and arguments the namespace lab passes, with static VIPs or (--ha) without."""
    res = lab.exec(host.name, ["python3", str(VAGRANT / "role_args.py"), *(["--ha"] if ha else []), str(TOPOLOGY),
                               host.name], check=True)
    role, *args = res.stdout.split()
    assert role == host.role
    assert args == host.role_args(Path("/run/xdplb-lab") / host.name, static_vip=not ha)


def test_role_args_leave_the_static_vips_out_in_ha():
    """The pure part of role_args.py: lb1 gets --vip only without --ha; interfaces are found by MAC."""
    role_args = _role_args_module().role_args
    top = json.loads(TOPOLOGY.read_text())
    lb1 = BY_NAME["lb1"]
    links = {lb1.mac("front"): "eth1", lb1.mac("back"): "eth2", "52:54:00:00:00:01": "eth0"}
    common = ["--name", "lb1", "--number", "2", "--state", "/run/xdplb-lab/lb1", "--front", "eth1", "--back", "eth2"]
    assert role_args(top, "lb1", links) == ("director", [*common, "--vip"])
    assert role_args(top, "lb1", links, ha=True) == ("director", common)
    with pytest.raises(SystemExit, match="no interface with MAC"):
        role_args(top, "lb1", {lb1.mac("front"): "eth1"}, ha=True)


def _director_config(host: str, front: str = "eth1", back: str = "eth2") -> str:
    res = subprocess.run([sys.executable, str(VAGRANT / "director_config.py"), str(TOPOLOGY), host, front, back],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_director_configs_make_an_ha_pair():
    """director_config.py writes files the daemon reads: lb1 (150) and lb2 (100) share the VRID, the
    VIPs and the services, which are the namespace HA lab's: mh over rs1-rs3, so flows survive a failover."""
    configs = {host: parse_config(_director_config(host), host) for host in ("lb1", "lb2")}
    lb1, lb2 = configs["lb1"], configs["lb2"]
    for host, config in configs.items():
        assert config.director.name == host and config.director.interfaces == ["eth1"]
        [inst] = config.ha.instances
        assert inst.interface == "eth1" and inst.advert_interval == 1.0
    (i1,), (i2,) = lb1.ha.instances, lb2.ha.instances
    assert (i1.priority, i2.priority) == (150, 100)
    lab_instance = ha_settings(150, front="eth1", back="eth2").instances[0]  # the namespace HA lab's
    for i in (i1, i2):
        assert (i.name, i.vrid) == (lab_instance.name, lab_instance.vrid)
        assert (i.addresses, i.excluded_addresses) == (lab_instance.addresses, lab_instance.excluded_addresses)
        assert "10.200.0.1/24 dev eth2" in [str(a) for a in i.all_addresses()]  # the NAT servers' gateway
    assert lb1.services == lb2.services
    assert {s.key: s for s in lb1.services} == {s.key: s for s in (
        dr_service("tcp", 80, 4, scheduler="mh"), dr_service("tcp", 80, 6, scheduler="mh"),
        dr_service("udp", 9000, 4, scheduler="mh"), dr_service("udp", 9000, 6, scheduler="mh"))}


def test_director_config_refuses_a_host_that_is_not_a_director():
    res = subprocess.run([sys.executable, str(VAGRANT / "director_config.py"), str(TOPOLOGY), "rs1", "eth1", "eth2"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "rs1 is not a director" in res.stderr


def test_director_unit_runs_the_daemon_and_leaves_the_speaker_running():
    """KillMode=process: stopping or restarting the unit signals the daemon only; the VRRP speaker it
    started keeps advertising (the default, control-group, would stop it: a failover per restart)."""
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.read(VAGRANT / "xdplb.service")
    service = unit["Service"]
    assert service["KillMode"] == "process"
    assert service["Restart"] == "on-failure"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    exec_start = shlex.split(service["ExecStart"])
    assert exec_start == ["/vagrant/.venv/bin/xdplb", "daemon", "-c", "/etc/xdplb/xdplb.yaml"]
    group = typer.main.get_command(app)  # the CLI parses that command line (without running it)
    with click.Context(group) as ctx:
        params = group.get_command(ctx, exec_start[1]).make_context(exec_start[1], exec_start[2:], parent=ctx).params
    assert params["config"] == Path("/etc/xdplb/xdplb.yaml")
    provision = (VAGRANT / "provision.sh").read_text()
    assert "xdplb.service" in provision and "role_args.py --ha" in provision


def test_role_scripts_refuse_bad_arguments():
    res = subprocess.run(["bash", str(ROLES / "client.sh"), "--colour", "red"], capture_output=True, text=True)
    assert res.returncode == 2 and "unknown argument --colour" in res.stderr
