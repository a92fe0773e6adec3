"""The systemd unit runs the daemon the way the tests do: its command line is one the CLI takes."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from xdplb.cli import app

pytestmark = pytest.mark.unit

UNIT = Path(__file__).resolve().parent.parent / "packaging" / "systemd" / "xdplb@.service"


def test_unit_runs_the_daemon_and_reloads_with_sighup():
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.read(UNIT)
    exec_start = shlex.split(unit["Service"]["ExecStart"])
    assert exec_start[0].endswith("/.venv/bin/xdplb") and exec_start[1:3] == ["daemon", "--config"]
    assert unit["Service"]["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert unit["Service"]["KillSignal"] == "SIGTERM"  # the daemon leaves the balancer forwarding on it
    assert unit["Service"]["KillMode"] == "process"     # and the VRRP speaker advertising
    result = CliRunner().invoke(app, ["daemon", "--help"])
    assert result.exit_code == 0 and "--config" in result.output and "--netns" in result.output
