"""Hitless restart, end to end in the namespace lab: lb1's daemon is killed with SIGKILL and started
again while real traffic goes through the director. Long TCP streams opened before the kill finish
whole, from the server they started on; a paced UDP flow from a live-frames generator loses not one
packet; the new daemon takes the pinned maps over with the same desired state and rewrites no table.
And two directors' daemons pin maps of their own."""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
from collections import Counter

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from xdplb import bpfobj, net
from xdplb.lab import BY_NAME, VIP4, Director, Lab
from xdplb.labclients import address_of, dr_service, stream
from xdplb.model import IPAddress, Service

pytestmark = [pytest.mark.lab, pytest.mark.daemon]

SERVERS = {"rs1": 1, "rs2": 1, "rs3": 1}
STREAMS = 4
STREAM_RATE = "100k"  # the streams' pace: 1 MB lasts 10 s, a restart about 4
PPS = 25_000          # the UDP flow: modest, since every packet must come back on 2 vCPUs
UDP_PORT = 9          # the flow's port, the one the sink takes (SINK_PORT in bpf/baseline.c)
DEADLINE = 30.0


class PacedFlow:
    """One established UDP flow to the VIP, as bench/e2e.py sends it: a live-frames generator on lb1's
    bridge port (its veth peer) paced to `pps` in a thread of its own, and a sink on that port that
    counts the flow's frames the director sends back and passes the rest (the streams' packets).
    Entered, the programs are compiled and the sink attached; start() and stop() run the flow."""

    def __init__(self, lab: Lab, pps: int, burst_s: float = 0.1) -> None:
        self.lab, self.pps = lab, pps
        self.burst = max(1, round(pps * burst_s))  # a live-frames call costs ~20 ms to set up here
        self.port = "lb1-front"
        router, lb1 = BY_NAME["router"], BY_NAME["lb1"]
        self.frame = bytes(Ether(src=router.mac("front"), dst=lb1.mac("front"))
                           / IP(src=BY_NAME["client"].address("edge"), dst=VIP4, ttl=63)
                           / UDP(sport=40000, dport=UDP_PORT) / (b"x" * 18))
        self.sent = self.received = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="paced-flow")
        self._programs: list = []

    def __enter__(self) -> PacedFlow:
        from xdplb.datapath import BPF_DIR, Program  # BCC only where XDP is needed

        try:
            self._gen = Program(BPF_DIR / "baseline.c", "xdp_tx")
            self._programs.append(self._gen)
            self._sink = Program(BPF_DIR / "baseline.c", "xdp_sink_udp", cflags=[f"-DSINK_PORT={UDP_PORT}"])
            self._programs.append(self._sink)
            with net.in_netns(self.lab.switch):
                self._sink.attach(self.port, "native")  # in place of the lab's XDP_PASS there
        except BaseException:
            self._close()
            raise
        return self

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ends the flow; `received` is what the sink counted once the last frames came back."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=DEADLINE)
        time.sleep(0.2)
        self.received = self._sink.counter("sunk")

    def __exit__(self, *exc: object) -> None:
        try:
            self._stop.set()
            if self._thread.is_alive():
                self._thread.join(timeout=DEADLINE)
        finally:
            self._close()

    def _close(self) -> None:
        try:
            self.lab.restore_port_program(self.port)
        finally:
            for prog in self._programs:
                prog.close()

    def _run(self) -> None:
        try:
            net.enter_netns(self.lab.switch)  # this thread only: the test goes on in its own namespace
            ifindex = socket.if_nametoindex(self.port)
            start = time.monotonic()
            while not self._stop.is_set():
                self._gen.runner.live(self.frame, ifindex, repeat=self.burst)
                self.sent += self.burst
                self._stop.wait(max(0.0, start + self.sent / self.pps - time.monotonic()))
        except BaseException as e:  # re-raised by the test, not lost in the thread
            self.error = e


def placements(lb: Director, svc: Service, ports: set[int] | None = None,
               state: str | None = None) -> dict[int, IPAddress]:
    """The director's table: client port -> backend, for this service's live connections (entries an
    earlier test left name no backend: theirs are gone)."""
    backends = {b.address for b in svc.backends}
    return {c.client[1]: c.backend for c in lb.dp.connections()
            if c.protocol == "TCP" and c.virtual == (svc.vip, svc.port) and c.backend in backends
            and (ports is None or c.client[1] in ports) and (state is None or c.state == state)}


def wait_established(lb: Director, svc: Service, n: int) -> dict[int, IPAddress]:
    deadline = time.monotonic() + DEADLINE
    while len(placed := placements(lb, svc, state="ESTABLISHED")) < n:
        assert time.monotonic() < deadline, f"{len(placed)} of {n} streams established"
        time.sleep(0.05)
    return placed


def veth_losses(lab: Lab) -> Counter:
    """The veth counters of both ends of lb1's front where a frame can be lost (ring full, XDP drop)."""
    out: Counter = Counter()
    for ns, ifname in ((lab.ns("lb1"), "front"), (lab.switch, "lb1-front")):
        res = subprocess.run(["ip", "netns", "exec", ns, "ethtool", "-S", ifname], capture_output=True, text=True,
                             check=True)
        for line in res.stdout.splitlines()[1:]:
            name, value = (part.strip() for part in line.split(":"))
            if "drop" in name or "err" in name:
                out[f"{ifname} {name}"] = int(value)
    return out


def drops(lb: Director) -> Counter:
    return Counter({k: v for k, v in lb.dp.counters().items() if k.startswith("drop_")})


def test_traffic_flows_while_the_daemon_is_killed_and_started_again(lb):
    if lb.lab.xdp_mode != "native":
        pytest.skip("the live-frames generator's XDP_TX reaches lb1 only in native mode (veth)")
    tcp = dr_service(weights=SERVERS, scheduler="rr")
    lb.set_service(tcp)
    lb.set_service(dr_service("udp", UDP_PORT, weights=SERVERS, scheduler="rr"))
    before, desired, dropped, veth = lb.status(), lb.lab.services("lb1"), drops(lb), veth_losses(lb.lab)

    with PacedFlow(lb.lab, PPS) as flow:  # compiled first: the streams have 10 s
        opened = time.monotonic()
        streams = [stream(lb.lab, rate=STREAM_RATE) for _ in range(STREAMS)]
        try:
            placed = wait_established(lb, tcp, STREAMS)
            flow.start()
            time.sleep(0.5)
            lb.kill(signal.SIGKILL)
            time.sleep(0.5)  # nobody home: the attached program forwards from the pinned maps
            lb.start()       # takes the maps over; its program replaces the running one
            ended = [(s.returncode, s.stdout.read()) for s in streams if s.poll() is not None]
            assert not ended, f"streams ended {time.monotonic() - opened:.1f} s after they opened, before the " \
                              f"restart was done: {ended}"
            assert placements(lb, tcp, set(placed)) == placed  # the same connections, on the same backends
            time.sleep(0.5)
            flow.stop()
            results = [s.communicate(timeout=DEADLINE)[0].split() for s in streams]
        finally:
            for s in streams:
                s.kill()
                s.wait()

    assert flow.error is None, flow.error
    assert flow.sent >= PPS * 2, flow.sent  # it ran across the kill and the restart
    dropped, lost = drops(lb) - dropped, veth_losses(lb.lab) - veth
    assert flow.received == flow.sent, f"{flow.sent - flow.received} of {flow.sent} lost; balancer drops " \
                                       f"{dict(dropped)}, veth counters {dict(lost)}"
    assert not dropped
    assert all(s.returncode == 0 for s in streams)
    # every stream whole, answered 200, by the server the director had placed it on before the kill
    names = {address_of(n): n for n in SERVERS}
    assert sorted(results) == sorted(["1048576", "200", names[be]] for be in placed.values())
    after = lb.status()
    assert after["pid"] != before["pid"]
    assert {k: after[k] for k in ("state_version", "services", "refused", "attached")} == \
        {k: before[k] for k in ("state_version", "services", "refused", "attached")}
    assert lb.lab.services("lb1") == desired
    assert after["written"].get("rings", 0) == 0 and after["written"].get("seqs", 0) == 0, after["written"]


def conntrack_id(director: Director) -> int:
    with bpfobj.pinned(director.pin_dir / "conntrack") as conntrack:
        return conntrack.info.id


def vip_keys(director: Director) -> int:
    with bpfobj.pinned(director.pin_dir / "services") as services:
        return sum(1 for _ in services)


def test_two_directors_pin_maps_of_their_own(lb):
    lb2 = Director(lb.lab, "lb2")
    try:
        lb2.attach()
        lb2.set_service(dr_service(weights=SERVERS, scheduler="rr"))
        assert lb.pin_dir != lb2.pin_dir and lb.state_dir != lb2.state_dir
        assert conntrack_id(lb) != conntrack_id(lb2)
        assert (vip_keys(lb), vip_keys(lb2)) == (0, 1)  # lb1 has no service; lb2's is in lb2's maps alone
        assert (lb.status()["director"], lb2.status()["director"]) == (lb.name, lb2.name)
    finally:
        lb2.close()
    assert not lb2.pin_dir.exists() and not lb2.dir.exists()
