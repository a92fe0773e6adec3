"""The control plane's costs, against baselines measured in the same run.

1. Maglev table build (`maglev.build`) for (M=65537, N=100) and (M=4093, N=10), the median of
   several runs; the baseline is the plainest table of the same length, round-robin over the N
   backends, built the same way (a Python list turned into a uint32 array). Each run times both, in
   turns, so a slow moment of the VM moves both.
2. 1,000 mh services of 10 backends each (ring_size 4093) applied through the Reconciler (the
   daemon's path) into a loaded balancer compiled to fit them (1,000 services and VIPs, 10,000
   backends, ring_max 4093, seq_max 256; the connection tables smaller than the default: no traffic
   here). Next hops come from a resolver that returns one fixed next hop (loopback, which the devmap
   takes). The baseline is the ring entries such an apply writes, written alone into the same map
   the same way (one batch of 4093 entries per service); 1,000 builds of (4093, 10) from (1) are the
   Maglev part.
3. One backend's weight changed on one of those services: Datapath.set_service of that service alone
   (each of --changes changes), and Reconciler.apply of the whole desired state with that one weight
   changed (--apply-changes of them: every apply plans all 1,000 services). Both return only once the
   maps are written; every change is checked to have written its backend entry. p50 and p99.

    .venv/bin/python bench/control.py [--builds N] [--changes N] [--apply-changes N] [--json]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import statistics
import time
from collections.abc import Callable

import numpy as np
from rich.console import Console
from rich.table import Table

from xdplb import maglev
from xdplb.datapath import Datapath, Sizes
from xdplb.model import Backend, Service, Timeouts
from xdplb.net import Nexthop
from xdplb.reconcile import Reconciler

SERVICES = 1000
BACKENDS = 10  # per service
RING = 4093
SIZES = Sizes(max_services=SERVICES, max_vips=SERVICES, max_backends=SERVICES * BACKENDS, ring_max=RING, seq_max=256,
              conn_max=1 << 16, syn_max=1 << 14, persist_max=1 << 14, max_tx_ports=8)
NEXTHOP = Nexthop(1, "02:00:0a:64:00:02", "02:00:0a:64:00:01", "10.100.0.2", 1500)  # lo: a devmap port here
FIRST_VIP = ipaddress.ip_address("10.1.0.1")
FIRST_BACKEND = ipaddress.ip_address("10.2.0.1")
CHANGED = SERVICES // 2  # the service whose backend 0 changes weight
TARGETS_MS = {"maglev_65537_100": 50.0, "apply_1000x10": 5000.0, "set_service_p99": 100.0, "apply_change_p99": 100.0}


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def round_robin(n: int, size: int) -> np.ndarray:
    """The baseline table: slot i holds backend i mod n."""
    return np.asarray([i % n for i in range(size)], dtype=np.uint32)


def builds(size: int, n: int, runs: int) -> dict:
    names = [(f"backend-{i}", 1) for i in range(n)]
    maglev_s, rr_s = [], []
    for _ in range(runs):
        maglev_s.append(timed(lambda: maglev.build(names, size))[0])
        rr_s.append(timed(lambda: round_robin(n, size))[0])
    m, r = statistics.median(maglev_s), statistics.median(rr_s)
    return {"size": size, "backends": n, "runs": runs, "ms": ms(m), "round_robin_ms": ms(r),
            "ratio_vs_round_robin": round(m / r, 1)}


def services() -> list[Service]:
    return [Service(protocol="tcp", vip=FIRST_VIP + i, port=80, scheduler="mh", ring_size=RING,
                    backends=tuple(Backend(address=FIRST_BACKEND + i * BACKENDS + j) for j in range(BACKENDS)))
            for i in range(SERVICES)]


def reweighted(svc: Service, weight: int) -> Service:
    first, *rest = svc.backends
    return svc.model_copy(update={"backends": (first.model_copy(update={"weight": weight}), *rest)})


def memlock(dp: Datapath) -> dict[str, int]:
    """Bytes the kernel charges for each map (fdinfo's memlock)."""
    out = {}
    for name, table in dp.maps.items():
        with open(f"/proc/self/fdinfo/{table.map_fd}") as f:
            out[name] = next(int(line.split()[1]) for line in f if line.startswith("memlock:"))
    return out


def raw_ring_writes(dp: Datapath) -> float:
    """Seconds to write every ring entry 1,000 services of ring_size 4093 hold, one batch per
    service, as set_service writes a new service's ring: the map writes alone."""
    table = dp.maps["rings"]
    values = np.ascontiguousarray(np.arange(RING, dtype=np.uint32) % BACKENDS)
    batches = [np.ascontiguousarray(np.arange(RING, dtype=np.uint32) + sid * SIZES.ring_max) for sid in range(SERVICES)]
    start = time.perf_counter()
    for keys in batches:
        table.items_update_batch((table.Key * RING).from_buffer(keys), (table.Leaf * RING).from_buffer(values))
    return time.perf_counter() - start


def percentiles(samples: list[float]) -> dict:
    a = np.asarray(samples)
    return {"count": len(samples), "p50_ms": ms(float(np.percentile(a, 50))), "p99_ms": ms(float(np.percentile(a, 99))),
            "max_ms": ms(float(a.max()))}


def weight_changes(dp: Datapath, reconciler: Reconciler, desired: list[Service], changes: int,
                   apply_changes: int) -> dict:
    """Changes backend 0's weight of one service again and again (2..8, never the same twice in a row)."""
    weights = [2 + i % 7 for i in range(changes + apply_changes)]
    timeouts = Timeouts()
    set_s = []
    for w in weights[:changes]:
        svc = reweighted(desired[CHANGED], w)
        took, written = timed(lambda s=svc: dp.set_service(s))
        if written["backends"] != 1:
            raise RuntimeError(f"set_service wrote {written} for a weight change")
        desired[CHANGED] = svc
        set_s.append(took)
    apply_s = []
    for w in weights[changes:]:
        want = list(desired)
        want[CHANGED] = reweighted(desired[CHANGED], w)
        took, applied = timed(lambda d=want: reconciler.apply(d, timeouts))
        if not applied.ok or applied.written["backends"] != 1:
            raise RuntimeError(f"apply refused {applied.refused} or wrote {applied.written} for a weight change")
        desired[:] = want
        apply_s.append(took)
    return {"set_service": percentiles(set_s), "apply": percentiles(apply_s), "last_weight": weights[-1]}


def check_written(dp: Datapath, svc: Service) -> None:
    """The changed backend's entry in the data plane carries the last weight asked for (backend
    addresses are unique across the services here)."""
    want = svc.backends[0]
    found = [be.weight for be in dp.maps["backends"].values()
             if be.flags and ipaddress.IPv4Address(bytes(be.addr)[:4]) == want.address]
    if found != [want.weight]:
        raise RuntimeError(f"backend {want.address}: weights {found} in the backends map, {want.weight} asked for")


def measure(runs: int, changes: int, apply_changes: int) -> dict:
    maglev_big = builds(65537, 100, runs)
    maglev_small = builds(RING, BACKENDS, runs)
    desired = services()
    load_s, dp = timed(lambda: Datapath(SIZES, resolver=lambda _addr: NEXTHOP))
    try:
        maps = memlock(dp)
        raw_s = raw_ring_writes(dp)
        reconciler = Reconciler(dp)
        apply_s, applied = timed(lambda: reconciler.apply(desired, Timeouts()))
        if not applied.ok or applied.services != SERVICES:
            raise RuntimeError(f"apply refused {len(applied.refused)} services: {next(iter(applied.refused.values()))}")
        changed = weight_changes(dp, reconciler, desired, changes, apply_changes)
        check_written(dp, desired[CHANGED])
    finally:
        dp.close()
    maglev_part = SERVICES * maglev_small["ms"]
    result = {
        "maglev": {"65537x100": maglev_big, "4093x10": maglev_small},
        "apply_1000x10": {"ms": ms(apply_s), "written": dict(applied.written), "ring_writes_alone_ms": ms(raw_s),
                          "maglev_builds_ms": round(maglev_part, 1)},
        "weight_change": changed,
        "datapath": {"load_ms": ms(load_s), "rings_bytes": maps["rings"], "maps_bytes": sum(maps.values()),
                     "rings_bytes_at_4_per_entry": SIZES.max_services * SIZES.ring_max * 4},
    }
    measured = {"maglev_65537_100": maglev_big["ms"], "apply_1000x10": result["apply_1000x10"]["ms"],
                "set_service_p99": changed["set_service"]["p99_ms"], "apply_change_p99": changed["apply"]["p99_ms"]}
    result["targets"] = {name: {"ms": measured[name], "target_ms": t, "met": measured[name] <= t}
                         for name, t in TARGETS_MS.items()}
    result["ratios"] = {
        "maglev_65537_100_vs_round_robin": maglev_big["ratio_vs_round_robin"],
        "maglev_4093_10_vs_round_robin": maglev_small["ratio_vs_round_robin"],
        "apply_vs_ring_writes_alone": round(apply_s / raw_s, 1),
        "maglev_share_of_apply": round(maglev_part / ms(apply_s), 2),
        "set_service_p50_vs_maglev_4093_10": round(changed["set_service"]["p50_ms"] / maglev_small["ms"], 2),
        "apply_change_p50_vs_set_service_p50": round(changed["apply"]["p50_ms"] / changed["set_service"]["p50_ms"], 1),
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--builds", type=int, default=7, help="runs of each Maglev build; the median counts")
    parser.add_argument("--changes", type=int, default=200, help="weight changes through set_service")
    parser.add_argument("--apply-changes", type=int, default=12,
                        help="weight changes through Reconciler.apply (each plans all 1,000 services: seconds)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    r = measure(args.builds, args.changes, args.apply_changes)
    if args.json:
        print(json.dumps(r))
        return
    big, small = r["maglev"]["65537x100"], r["maglev"]["4093x10"]
    ap, wc, tg, ratios = r["apply_1000x10"], r["weight_change"], r["targets"], r["ratios"]

    def verdict(name: str) -> tuple[str, str]:
        return f"{tg[name]['target_ms']:,.0f}", "[green]met[/]" if tg[name]["met"] else "[red]not met[/]"

    table = Table(title=f"xdplb control plane, ms ({SERVICES:,} mh services x {BACKENDS} backends, ring {RING})")
    for col in ("measurement", "ms", "target", "", "baseline", "x base"):
        table.add_column(col, justify="left" if col in ("measurement", "", "baseline") else "right")
    table.add_row("maglev 65537x100", f"{big['ms']:.1f}", *verdict("maglev_65537_100"),
                  f"round-robin {big['round_robin_ms']:.2f}", f"{big['ratio_vs_round_robin']:.1f}")
    table.add_row("maglev 4093x10", f"{small['ms']:.2f}", "", "",
                  f"round-robin {small['round_robin_ms']:.3f}", f"{small['ratio_vs_round_robin']:.1f}")
    table.add_row("apply 1,000 new", f"{ap['ms']:,.0f}", *verdict("apply_1000x10"),
                  f"ring writes {ap['ring_writes_alone_ms']:,.0f}", f"{ratios['apply_vs_ring_writes_alone']:.1f}")
    for label, key, name in (("weight, set_service", "set_service", "set_service_p99"),
                             ("weight, apply", "apply", "apply_change_p99")):
        s = wc[key]
        table.add_row(f"{label} p50", f"{s['p50_ms']:,.1f}", "", "",
                      f"1 maglev {small['ms']:.2f}", f"{s['p50_ms'] / small['ms']:.1f}")
        table.add_row(f"{label} p99", f"{s['p99_ms']:,.1f}", *verdict(name), "", "")
    console = Console(emoji=False)
    console.print(table)
    console.print(f"Maglev: median of {big['runs']} builds each. Weight changes: {wc['set_service']['count']} through "
                  f"set_service, {wc['apply']['count']} through Reconciler.apply (the whole desired state).")
    console.print(f"apply 1,000 new: wrote {ap['written']}; 1,000 Maglev builds of 4093x10 are "
                  f"{ap['maglev_builds_ms']:,.0f} ms of it ({ratios['maglev_share_of_apply']:.0%})")
    dpi = r["datapath"]
    mib = {k: v / 2**20 for k, v in dpi.items() if "bytes" in k}
    console.print(f"datapath: loaded in {dpi['load_ms'] / 1000:.1f} s; maps {mib['maps_bytes']:.1f} MiB, rings "
                  f"{mib['rings_bytes']:.1f} MiB ({mib['rings_bytes_at_4_per_entry']:.1f} MiB at 4 bytes an entry: "
                  "the array rounds each value up to 8)")
    console.print("ratios: " + ", ".join(f"{k}={v}" for k, v in ratios.items()))


if __name__ == "__main__":
    main()
