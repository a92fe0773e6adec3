"""The operator's tools against a lab director's daemon, with real clients: the `xdplb` command over
the daemon's REST API (a Unix socket) lists what curl did as ipvsadm would, drains a server, and
captures real traffic that tcpdump cannot see (frames native XDP sends back out)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import rdpcap

from xdplb.lab import VIP4
from xdplb.labclients import DR_WEIGHTS, address_of, dr_service, http_names, url

pytestmark = [pytest.mark.lab, pytest.mark.api]


def test_list_stats_match_the_requests_and_drain_stops_new_connections(lb):
    svc = dr_service()
    lb.set_service(svc)
    names = http_names(lb.lab, url(4), 30)
    stats = json.loads(lb.cli("list", "--stats", "-o", "json"))["stats"]
    [row] = [r for r in stats if r["id"] == svc.id]
    assert row["stats"]["conns"] == 30
    assert {b["address"]: b["stats"]["conns"] for b in row["backends"]} == \
        {str(address_of(n)): names[n] for n in DR_WEIGHTS}
    text = lb.cli("list", "--stats", "--exact")
    assert f"TCP  {VIP4}:80" in text and "Conns   InPkts  OutPkts  InBytes OutBytes" in text

    lb.cli("backend", "drain", svc.id, str(address_of("rs1")))
    assert http_names(lb.lab, url(4), 20)["rs1"] == 0
    listing = lb.cli("list")
    assert any(line.split()[1:4] == [f"{address_of('rs1')}:80", "Route", "0"] for line in listing.splitlines()
               if line.strip().startswith("->")), listing


def test_capture_of_real_traffic_that_tcpdump_cannot_see(lb, tmp_path: Path):
    """Native XDP sends a forwarded frame back out of the interface it came in on: the director's
    tcpdump never sees it. The balancer's capture has each request's SYN as received from the router
    and as sent to its real server."""
    svc = dr_service(weights={"rs2": 1})
    lb.set_service(svc)
    out = tmp_path / "lb1.pcap"
    cmd = [sys.executable, "-m", "xdplb.cli", "capture", svc.id, "--count", "20", "--seconds", "20",
           "-w", str(out), "--url", f"unix:{lb.socket}", "--token-file", str(lb.token_file)]
    capture = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    requests = threading.Thread(target=lambda: [http_names(lb.lab, url(4), 2) for _ in range(30)
                                                if capture.poll() is None])
    requests.start()
    try:
        _, err = capture.communicate(timeout=60)
    finally:
        requests.join()
    assert capture.returncode == 0, err
    frames = [Ether(bytes(p)) for p in rdpcap(str(out))]
    assert len(frames) == 20
    syns = [f for f in frames if f[TCP].flags == "S"]
    assert syns and len(syns) % 2 == 0
    for received, sent in zip(syns[::2], syns[1::2], strict=True):
        assert received[IP].dst == sent[IP].dst == VIP4  # DR: the IP packet is untouched ...
        assert bytes(received[IP]) == bytes(sent[IP])
        assert received.dst != sent.dst  # ... and only the MAC changes, to rs2's
    assert {f[IP].dst for f in frames} == {VIP4}
