"""Director failover: the interruption a client sees when the master director goes, with xdplb's VRRP
speaker, against keepalived 2.2.7 as the speaker measured in the same run on the same lab.

One HA lab (no static VIPs): lb1 (priority 150) and lb2 (100), VRID 51 on front, adverts every
0.1 s, VIP4/32 advertised and VIP6/128 moved along. Both directors run xdplb's daemon (the XDP
balancer, udp 9000 and tcp 80, mh) throughout; only who speaks VRRP differs: xdplb's speaker on
both, or keepalived (`--vrrp`, VRRPv3, the same instance) on both. A UDP datagram every millisecond
goes from the client through the VIP (labclients.UdpProbe); the interruption is the longest time
between two answered datagrams' sends, and lost is how many of them got no answer.

Two scenarios, each with lb1 master and lb2 backup and the probe running:

- cut: lb1 dies (its cables out); lb2 takes over after the master-down interval, then lb1 is
  reconnected and preempts back;
- graceful: lb1's speaker stops as an operator stops it (xdplb: `speaker.shutdown()`; keepalived:
  SIGTERM), advertising priority 0: lb2 takes over after its skew time; then a new speaker starts
  on lb1 and preempts back.

A round ends once lb2 holds the VIP and the router's neighbour entry for it is lb2's MAC, plus
0.3 s; before the next, lb1 is master again, the router sends the VIP to lb1's MAC and a probe is
answered. A round where the VIP did not move within 3 s, or traffic did not come back, is flagged
and left out. Speakers take turns round by round (which goes first alternates), so a slow moment of
the VM hits both; each keeps its median. To hand the instance from one speaker to the other, both
daemons restart (with or without their ha section: a daemon that has one starts a dead speaker again).

    .venv/bin/python bench/failover.py [--rounds R] [--xdp native|generic] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from rich.console import Console
from rich.table import Table

from xdplb.lab import Director, Lab, LabError, alive, exit_on_signals
from xdplb.labclients import UdpProbe, dr_service, ha_settings
from xdplb.labha import KEEPALIVED, Keepalived, holds_vip, mac, router_mac_for_vip, vrrp_state
from xdplb.vrrp.packet import master_down_interval, skew_time
from xdplb.vrrp.supervisor import Supervisor

KINDS = ("xdplb", "keepalived")
SCENARIOS = {"cut": "lb1's cables out", "graceful": "lb1's speaker stopped, priority 0"}
PRIORITY = {"lb1": 150, "lb2": 100}
INTERVAL = 0.1            # seconds between adverts, both speakers
CENTISECONDS = round(INTERVAL * 100)
SERVICES = (dr_service("udp", 9000, scheduler="mh"), dr_service("tcp", 80, scheduler="mh"))
TAKEOVER_DEADLINE = 3.0   # a round whose VIP has not moved by then failed
SETTLE_DEADLINE = 15.0    # back to lb1 master before the next round, or the bench stops
TAIL = 0.3                # the probe runs this long before the kill and after the VIP moved


class BenchError(RuntimeError):
    pass


def wait_until(what: str, done: Callable[[], bool], timeout: float, step: float = 0.02) -> float:
    """Seconds until `done()`; BenchError after `timeout`."""
    start = time.monotonic()
    while not done():
        if time.monotonic() - start > timeout:
            raise BenchError(f"not within {timeout:g} s: {what}")
        time.sleep(step)
    return time.monotonic() - start


class Failover:
    """The lab's two directors and whichever speakers are on; a failover measured, and undone."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.directors = {h: Director(lab, h, ha=ha_settings(p, INTERVAL)) for h, p in PRIORITY.items()}
        self.keepalived = {h: Keepalived(lab, h, p, INTERVAL) for h, p in PRIORITY.items()}
        self.speakers: list[subprocess.Popen] = []  # the xdplb speakers this bench started (to reap)
        self.kind = "xdplb"

    def up(self) -> None:
        for d in self.directors.values():  # each daemon starts its speaker
            d.attach()
            for svc in SERVICES:
                d.set_service(svc)
        self.settle()

    def close(self) -> None:
        for ka in self.keepalived.values():
            with contextlib.suppress(Exception):
                ka.stop()
        for d in self.directors.values():
            with contextlib.suppress(Exception):
                d.close()

    def reap(self) -> None:
        for proc in self.speakers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        self.speakers.clear()

    # ---- who speaks --------------------------------------------------------------------------

    def use(self, kind: str) -> None:
        """Hands the VRRP instance to `kind` on both directors. The daemons restart (both at once):
        with the ha section for xdplb (each starts its speaker), without it for keepalived (a daemon
        with one starts a dead speaker again). The balancers forward throughout."""
        if kind == self.kind:
            return
        for host in ("lb2", "lb1"):  # the backup first: no VIP move on the way
            d = self.directors[host]
            if kind == "keepalived":
                d.kill()  # before its speaker goes, or it starts it again
                self.stop_speaker(host)
                d.ha = None
            else:
                self.keepalived[host].stop()
                d.kill()
                d.ha = ha_settings(PRIORITY[host], INTERVAL)
        with ThreadPoolExecutor(2) as pool:
            for f in [pool.submit(d.start) for d in self.directors.values()]:
                f.result()
        if kind == "keepalived":
            for host in ("lb1", "lb2"):
                self.keepalived[host].start()
        self.kind = kind
        self.settle()

    def start_speaker(self, host: str) -> None:
        """A new xdplb speaker, started as the daemon starts one when none answers (Supervisor.ensure),
        without restarting the daemon (seconds of compiling the balancer). The daemon itself starts
        one within seconds too: if its speaker answers first, ours exits, and that one is as good."""
        d = self.directors[host]
        sup = Supervisor(d.config_path, d.ha.socket_path(d.state_dir), d.state_dir / "vrrp.log", self.lab.ns(host))
        try:
            sup.ensure()
        except RuntimeError:
            wait_until(f"an xdplb speaker on {host}", d.speaker.alive, 10, 0.05)
        self.speakers = [p for p in self.speakers if p.poll() is None]  # reaps those that ended
        if sup.process is not None:
            self.speakers.append(sup.process)

    def stop_speaker(self, host: str) -> None:
        speaker = self.directors[host].speaker
        if speaker.alive():
            speaker.shutdown()
        wait_until(f"{host}'s xdplb speaker gone", lambda: not speaker.alive(), 10, 0.05)

    def states(self) -> tuple[str | None, str | None]:
        if self.kind == "keepalived":
            return self.keepalived["lb1"].state(), self.keepalived["lb2"].state()
        return vrrp_state(self.directors["lb1"]), vrrp_state(self.directors["lb2"])

    # ---- the measurement ---------------------------------------------------------------------

    def settle(self) -> None:
        """lb1 master, lb2 backup, the router sending the VIP to lb1, and a probe answered."""
        lab = self.lab
        try:
            wait_until("lb1 master, lb2 backup", lambda: (self.states() == ("master", "backup")
                       and holds_vip(lab, "lb1") and not holds_vip(lab, "lb2")), SETTLE_DEADLINE, 0.05)
            # the probe makes the router resolve the VIP, if it has no entry yet
            wait_until("a probe answered, the router sending the VIP to lb1",
                       lambda: answered(lab) and router_mac_for_vip(lab) == mac("lb1"), SETTLE_DEADLINE, 0)
        except BenchError as e:
            raise BenchError(f"{self.kind}: {e} (states {self.states()}, VIP on lb1 {holds_vip(lab, 'lb1')}, "
                             f"on lb2 {holds_vip(lab, 'lb2')}, router's entry {router_mac_for_vip(lab)})") from None

    def round(self, scenario: str) -> dict:
        lab, kind = self.lab, self.kind
        moved = None
        pid = self.directors["lb1"].vrrp_pid() if kind == "xdplb" else None
        with UdpProbe(lab) as probe:
            time.sleep(TAIL)
            start = time.monotonic()
            if scenario == "cut":
                lab.cut("lb1")
            elif kind == "xdplb":
                self.directors["lb1"].speaker.shutdown()
            else:
                self.keepalived["lb1"].terminate()
            with contextlib.suppress(BenchError):
                moved = start + wait_until(
                    "lb2 holds the VIP and the router sends it there",
                    lambda: holds_vip(lab, "lb2") and router_mac_for_vip(lab) == mac("lb2"), TAKEOVER_DEADLINE)
            time.sleep(TAIL)
        r = probe.result
        ok = (moved is not None and r.get("first") is not None and r["first"] < 50
              and r["last"] >= r["sent"] - 50)  # answered before the kill, and again at the end
        out = {"ok": ok, "gap_ms": r["longest_gap"] * 1000 if r else None,
               "lost": r["sent"] - r["answered"] if r else None, "sent": r.get("sent"),
               "moved_ms": (moved - start) * 1000 if moved is not None else None}
        self.undo(scenario, pid)
        return out

    def undo(self, scenario: str, pid: int | None) -> None:
        if scenario == "cut":
            self.lab.cut("lb1", connected=True)
        elif self.kind == "xdplb":
            wait_until("lb1's xdplb speaker gone", lambda: not alive(pid), 10, 0.05)
            self.start_speaker("lb1")
        else:
            self.keepalived["lb1"].stop()
            self.keepalived["lb1"].start()
        self.settle()


def answered(lab: Lab) -> bool:
    """A short probe through the VIP, nearly all of it answered."""
    with UdpProbe(lab) as probe:
        time.sleep(0.2)
    r = probe.result
    return bool(r) and r["sent"] > 0 and r["answered"] >= 0.9 * r["sent"]


def summary(runs: list[dict]) -> dict:
    good = [r for r in runs if r["ok"]]
    gaps = [r["gap_ms"] for r in good]
    return {
        "rounds": len(runs), "ok": len(good),
        "median_ms": statistics.median(gaps) if gaps else None,
        "min_ms": min(gaps, default=None), "max_ms": max(gaps, default=None),
        "median_lost": statistics.median([r["lost"] for r in good]) if good else None,
        "median_moved_ms": statistics.median([r["moved_ms"] for r in good]) if good else None,
        "runs": runs,
    }


def measure(rounds: int, xdp: str) -> dict:
    exit_on_signals()
    lab = Lab(f"xb{os.getpid()}")
    runs: dict[str, dict[str, list[dict]]] = {s: {k: [] for k in KINDS} for s in SCENARIOS}
    bench: Failover | None = None
    try:
        lab.up(xdp, ha=True)
        bench = Failover(lab)
        bench.up()
        for i in range(rounds):
            for kind in KINDS if i % 2 == 0 else KINDS[::-1]:
                bench.use(kind)
                for scenario in SCENARIOS:
                    runs[scenario][kind].append(bench.round(scenario))
    finally:
        if bench is not None:
            bench.close()
        lab.down()
        if bench is not None:
            bench.reap()
    results = {s: {k: summary(rs) for k, rs in kinds.items()} for s, kinds in runs.items()}
    ratios = {}
    for s, kinds in results.items():
        a, b = kinds["xdplb"]["median_ms"], kinds["keepalived"]["median_ms"]
        ratios[f"{s}_xdplb_vs_keepalived"] = round(a / b, 3) if a is not None and b else None
    return {"rounds": rounds, "advert_interval_s": INTERVAL,
            "master_down_interval_ms": master_down_interval(CENTISECONDS, PRIORITY["lb2"]) * 1000,
            "skew_time_ms": skew_time(CENTISECONDS, PRIORITY["lb2"]) * 1000,
            "results": results, "ratios": ratios}


def fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def report(r: dict) -> None:
    console = Console(emoji=False)
    table = Table(title=f"director failover: the longest gap in UDP answers through the VIP (a datagram every "
                        f"1 ms), {r['rounds']} rounds")
    for col in ("scenario", "speaker", "median ms", "min ms", "max ms", "lost", "VIP moved ms", "ok",
                "x keepalived"):
        table.add_column(col, justify="left" if col in ("scenario", "speaker") else "right")
    for scenario, kinds in r["results"].items():
        for kind, m in kinds.items():
            ratio = r["ratios"][f"{scenario}_xdplb_vs_keepalived"] if kind == "xdplb" else None
            table.add_row(scenario if kind == "xdplb" else "", kind, fmt(m["median_ms"]), fmt(m["min_ms"]),
                          fmt(m["max_ms"]), fmt(m["median_lost"]), fmt(m["median_moved_ms"]),
                          f"{m['ok']}/{m['rounds']}", fmt(ratio, 2) if kind == "xdplb" else "")
    console.print(table)
    console.print("; ".join(f"{s}: {what}" for s, what in SCENARIOS.items()) + ". lost: datagrams without an "
                  "answer (median); VIP moved: from the kill until lb2 held the VIP and the router's neighbour "
                  "entry was lb2's MAC (median, polled every 20 ms); x keepalived: xdplb's median / keepalived's.")
    console.print(f"master-down interval for priority {PRIORITY['lb2']}: 3 x {INTERVAL:g} + "
                  f"(256 - {PRIORITY['lb2']})/256 x {INTERVAL:g} s = {r['master_down_interval_ms']:.0f} ms "
                  f"(it runs from the last advert lb2 heard, up to {INTERVAL * 1000:.0f} ms before the cut); "
                  f"skew time after a priority 0 advert: {r['skew_time_ms']:.0f} ms (lb1's balancer forwards "
                  f"until the router moves the VIP)")
    console.print("ratios: " + ", ".join(f"{k}={v}" for k, v in r["ratios"].items()))
    failed = [f"{s}/{k}" for s, kinds in r["results"].items() for k, m in kinds.items() if m["ok"] < m["rounds"]]
    if failed:
        console.print(f"[red]rounds where the VIP did not move or traffic did not come back (left out): "
                      f"{', '.join(failed)}[/]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="failovers per scenario and speaker; medians count")
    parser.add_argument("--xdp", choices=("native", "generic"), default="native", help="the lab's XDP mode")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/failover.py needs root (the namespace lab)")
    if not os.access(KEEPALIVED, os.X_OK):
        sys.exit(f"no keepalived at {KEEPALIVED}: it is the baseline")
    try:
        result = measure(args.rounds, args.xdp)
    except (BenchError, LabError) as e:  # LabError: keepalived did not start, or the lab
        sys.exit(f"bench/failover.py: {e}")
    if args.json:
        print(json.dumps(result))
    else:
        report(result)


if __name__ == "__main__":
    main()
