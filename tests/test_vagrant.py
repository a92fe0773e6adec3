"""The Vagrant lab: the Vagrantfile validates (VMs cannot boot here) and its provisioning runs the
same role scripts, with the same arguments, as the namespace lab."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from xdplb.lab import HOSTS, LAB_DIR, ROLES

pytestmark = pytest.mark.lab
VAGRANT = Path(__file__).resolve().parent.parent / "vagrant"


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


@pytest.mark.parametrize("host", HOSTS, ids=[h.name for h in HOSTS])
def test_vm_provisioning_passes_the_namespace_labs_arguments(lab, host):
    """role_args.py, run where the interfaces carry the topology's MACs (the lab's hosts), finds the
    same role and arguments the namespace lab passes."""
    res = lab.exec(host.name, ["python3", str(VAGRANT / "role_args.py"), str(LAB_DIR / "topology.json"), host.name],
                   check=True)
    role, *args = res.stdout.split()
    assert role == host.role
    assert args == host.role_args(Path("/run/xdplb-lab") / host.name)


def test_role_scripts_refuse_bad_arguments():
    res = subprocess.run(["bash", str(ROLES / "client.sh"), "--colour", "red"], capture_output=True, text=True)
    assert res.returncode == 2 and "unknown argument --colour" in res.stderr
