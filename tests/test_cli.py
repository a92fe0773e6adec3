"""The xdplb command: `check` compiles and loads the balancer with the sizes given."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from xdplb.cli import app

pytestmark = pytest.mark.datapath


def test_check_loads_with_given_sizes():
    result = CliRunner().invoke(app, ["preflight", "--conn-max", "4096", "--ring-max", "4099", "--max-services", "4"],
                                env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert "loaded and verified" in result.output and "BPF instructions" in result.output
    rows = {line.split()[1]: line.split()[3] for line in result.output.splitlines() if line.count("│") == 3}
    assert rows["conntrack"] == "4096"
    assert rows["rings"] == str(4 * 4099)


@pytest.mark.parametrize(("args", "message"), [
    (["--conn-max", "notanumber"], "Invalid value for '--conn-max'"),
    (["--conn-max", "0"], "conn_max\n  Input should be greater than or equal to 1"),
    (["--ring-max", "5"], "ring_max\n  Input should be greater than or equal to 7"),
])
def test_check_refuses_bad_sizes_clearly(args, message):
    result = CliRunner().invoke(app, ["preflight", *args], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
