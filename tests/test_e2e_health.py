"""Health checks in the lab: lb1's daemon checks rs1-rs3 from lb1's namespace, real clients go
through the balancer, and real servers fail (nginx stopped) and come back."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from xdplb.labclients import DR_WEIGHTS, address_of, dr_service, http_names, url
from xdplb.model import Service

pytestmark = [pytest.mark.lab, pytest.mark.health]

DATA = Path(__file__).parent / "data" / "health"
CHECK = {"type": "http", "interval": 0.2, "timeout": 0.5, "rise": 2, "fall": 2}


@pytest.fixture
def servers(lab):
    """Every real server's nginx runs again after the test."""
    yield
    for name in DR_WEIGHTS:
        if lab.exec(name, ["pgrep", "-f", f"{lab.state_dir / name}/nginx.conf"]).returncode:
            lab.set_nginx(name, True)


def health(lb) -> dict[str, dict]:
    """GET /v1/health from the daemon, by backend address."""
    return {row["backend"]: row for row in lb.api_get("/v1/health")}


def wait_for(cond, deadline: float, what: str) -> float:
    """Seconds until cond() holds; fails after `deadline` seconds."""
    start = time.monotonic()
    while not cond():
        assert time.monotonic() - start < deadline, f"{what}: not within {deadline} s"
        time.sleep(0.02)
    return time.monotonic() - start


def test_a_dead_server_leaves_within_interval_times_fall_plus_timeout_and_comes_back_after_rise(lb, servers):
    lb.set_service(dr_service(check=CHECK))
    rs2 = str(address_of("rs2"))
    wait_for(lambda: all(h["checked"] for h in health(lb).values()), 5, "first checks")
    start = time.monotonic()
    lb.lab.set_nginx("rs2", False)  # returns once nginx is gone
    # interval x fall + timeout = 0.9 s; the margin covers a check already on its way
    wait_for(lambda: not health(lb)[rs2]["up"], 0.2 * 2 + 0.5 + 1.0, "rs2 down")
    took = time.monotonic() - start
    why = health(lb)[rs2]
    assert why["state"] == "down" and "refused" in why["reason"].lower(), why
    names = http_names(lb.lab, url(4), 30)
    assert names["rs2"] == 0 and names["FAIL"] == 0 and names["rs1"] + names["rs3"] == 30, names

    lb.lab.set_nginx("rs2", True)
    wait_for(lambda: health(lb)[rs2]["up"], 0.2 * 2 + 1.0, "rs2 up again")
    assert http_names(lb.lab, url(4), 30)["rs2"] == 10  # its 2 of 6 again
    print(f"rs2 was down {took:.2f} s after nginx stopped")


def test_a_flapping_server_does_not_flap_traffic(lb, tmp_path):
    """Every other check of rs2 fails: never `fall` failures in a row, so it never leaves."""
    flip = {"type": "misc", "interval": 0.1, "timeout": 2, "rise": 2, "fall": 2,
            "command": [sys.executable, str(DATA / "alternate.py"), str(tmp_path / "count")]}
    data = dr_service().model_dump()
    data["backends"][1]["check"] = flip  # rs2's own check
    lb.set_service(Service.model_validate(data))
    count = tmp_path / "count"
    wait_for(lambda: count.exists() and int(count.read_text() or 0) >= 20, 10, "20 checks of rs2")
    state = health(lb)[str(address_of("rs2"))]
    # had it gone down once, rise 2 would keep it down: alternate results never give 2 in a row
    assert state["up"] and state["successes"] <= 1 and state["failures"] <= 1, state
    assert http_names(lb.lab, url(4), 30)["rs2"] == 10


def test_all_down_sends_clients_to_the_sorry_server(lb, servers):
    svc = dr_service(weights={"rs1": 1, "rs2": 1}, check={**CHECK, "type": "tcp"},
                     sorry_server={"address": str(address_of("rs3"))})
    lb.set_service(svc)
    assert set(http_names(lb.lab, url(4), 10)) == {"rs1", "rs2"}
    for name in ("rs1", "rs2"):
        lb.lab.set_nginx(name, False)
    wait_for(lambda: not any(h["up"] for h in health(lb).values()), 3, "both down")
    assert http_names(lb.lab, url(4), 10) == {"rs3": 10}
    lb.lab.set_nginx("rs1", True)
    wait_for(lambda: health(lb)[str(address_of("rs1"))]["up"], 3, "rs1 up")
    assert http_names(lb.lab, url(4), 10) == {"rs1": 10}


def test_a_misc_check_with_a_dynamic_weight_changes_the_distribution(lb, tmp_path):
    files = {name: tmp_path / name for name in DR_WEIGHTS}
    weights = {"rs1": 1, "rs2": 1, "rs3": 1}
    data = dr_service(weights=weights).model_dump()
    for name, backend in zip(weights, data["backends"], strict=True):
        backend["check"] = {"type": "misc", "dynamic": True, "interval": 0.1, "timeout": 2, "rise": 1, "fall": 1,
                            "command": [sys.executable, str(DATA / "exit_from_file.py"), str(files[name])]}
    lb.set_service(Service.model_validate(data))
    assert http_names(lb.lab, url(4), 30) == {"rs1": 10, "rs2": 10, "rs3": 10}
    files["rs1"].write_text("5")  # exit 5: up at weight 3
    wait_for(lambda: health(lb)[str(address_of("rs1"))]["weight"] == 3, 3, "rs1 at weight 3")
    assert http_names(lb.lab, url(4), 50) == {"rs1": 30, "rs2": 10, "rs3": 10}
    files["rs2"].write_text("1")  # exit 1: down
    wait_for(lambda: not health(lb)[str(address_of("rs2"))]["up"], 3, "rs2 down")
    assert http_names(lb.lab, url(4), 40) == {"rs1": 30, "rs3": 10}


def test_notify_hooks_run_with_the_transition(lb, servers, tmp_path):
    log = tmp_path / "hook.log"
    svc = dr_service(check={**CHECK, "type": "tcp", "notify": [sys.executable, str(DATA / "record.py"), str(log)]})
    lb.set_service(svc)
    lb.lab.set_nginx("rs3", False)
    wait_for(lambda: log.exists() and "down" in log.read_text(), 5, "the down hook")
    lb.lab.set_nginx("rs3", True)
    wait_for(lambda: " up " in log.read_text(), 5, "the up hook")
    lines = log.read_text().splitlines()
    rs3 = str(address_of("rs3"))
    assert lines[0].startswith(f"{svc.id} {rs3} down ") and "refused" in lines[0].lower(), lines
    assert lines[1].startswith(f"{svc.id} {rs3} up "), lines


def test_an_imported_keepalived_check_behaves_as_configured(lb, servers, tmp_path):
    """keepalived's HTTP_GET (delay_loop 1, connect_timeout 1, retry 1: down after 2 failures, up
    after 1 success) imported with `xdplb import keepalived`, then rs1 fails."""
    conf = tmp_path / "keepalived.conf"
    real_servers = "".join(f"""
    real_server {address_of(name)} 80 {{
        weight 1
        HTTP_GET {{
            url {{
                path /
                status_code 200
            }}
            connect_timeout 1
            retry 1
        }}
    }}""" for name in ("rs1", "rs2"))
    conf.write_text(f"""
virtual_server 10.100.0.100 80 {{
    delay_loop 1
    lb_algo rr
    lb_kind DR
    protocol TCP{real_servers}
}}
""")
    lb.cli("import", "keepalived", str(conf))
    [svc] = lb.services
    assert (svc.check.type, svc.check.interval, svc.check.timeout, svc.check.fall, svc.check.rise) == \
        ("http", 1.0, 1.0, 2, 1)
    rs1 = str(address_of("rs1"))
    wait_for(lambda: health(lb)[rs1]["checked"], 5, "the first check")
    start = time.monotonic()
    lb.lab.set_nginx("rs1", False)
    wait_for(lambda: not health(lb)[rs1]["up"], 1.0 * 2 + 1.0 + 1.0, "rs1 down")
    took = time.monotonic() - start
    assert http_names(lb.lab, url(4), 10) == {"rs2": 10}
    lb.lab.set_nginx("rs1", True)
    wait_for(lambda: health(lb)[rs1]["up"], 1.0 + 1.0 + 1.0, "rs1 up after one success")
    assert http_names(lb.lab, url(4), 10) == {"rs1": 5, "rs2": 5}
    print(f"imported check: rs1 down {took:.2f} s after nginx stopped")
