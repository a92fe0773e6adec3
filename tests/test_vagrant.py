"""The Vagrant lab: the Vagrantfile validates (VMs cannot boot here) and its provisioning runs the
same role scripts, with the same arguments, as the namespace lab."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from xdplb.lab import HOSTS, ROLES

pytestmark = pytest.mark.lab
VAGRANT = Path(__file__).resolve().parent.parent / "vagrant"


@pytest.mark.skipif(shutil.which("vagrant") is None, reason="vagrant is installed by scripts/setup.sh")
def test_vagrantfile_validates():
    res = subprocess.run(["vagrant", "validate"], cwd=VAGRANT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "validated successfully" in res.stdout


def test_every_role_has_its_script_and_scripts_parse():
    for script in [*ROLES.glob("*.sh"), VAGRANT / "provision.sh"]:
        res = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert res.returncode == 0, f"{script}: {res.stderr}"
    assert {h.role for h in HOSTS} <= {p.stem for p in ROLES.glob("*.sh")}


def test_role_scripts_refuse_bad_arguments():
    res = subprocess.run(["bash", str(ROLES / "client.sh"), "--colour", "red"], capture_output=True, text=True)
    assert res.returncode == 2 and "unknown argument --colour" in res.stderr
