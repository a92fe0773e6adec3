"""The health monitor's CPU cost: 1,000 backends checked every second, against baselines measured
in the same run.

A network namespace of its own (only loopback) holds a local nginx (one worker, `return 200`,
keep-alive without limit) listening on port 8080 of every address, so the 1,000 backends are 1,000
distinct loopback addresses 127.0.x.y. Each case runs in a fresh process that does nothing else,
entered into that namespace; after a warm-up its CPU time (user + system, every thread, from
getrusage) over the window is the cost, as a percentage of one core:

- mixed: HealthMonitor with 500 TCP checks and 500 HTTP checks (keep-alive), interval 1 s;
- http: HealthMonitor with 1,000 HTTP checks;
- bare connect: a bare asyncio loop doing the same 1,000 TCP connects a second, no framework
  (socket, connect, close): the baseline the ratios are against;
- bare mixed / bare http: bare loops doing 500 connects + 500 keep-alive GETs (one send, one recv,
  no parsing) / 1,000 GETs a second: what the same traffic costs with nothing around it.

The bare loops start their operations on the monitor's 50 ms grid too, so the ratios compare the
work, not the schedule. On loopback the kernel's work for the server's side of each handshake is
done in the sender's system calls, so the system time here is more than a real director's.

`--clients` also measures the HTTP clients considered, each doing 1,000 keep-alive GETs a second
from bare tasks (no monitor): httpx.AsyncClient (one per backend), h11 over asyncio streams, and
xdplb's own parser (HttpChecker). `--profile CASE` prints a cProfile of that case's monitor thread.

    .venv/bin/python bench/health.py [--backends N] [--seconds S] [--warmup S] [--rounds R]
                                     [--cases CASE...] [--clients] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import faulthandler
import ipaddress
import json
import os
import pstats
import random
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.table import Table

from xdplb.checks import HealthCheck
from xdplb.health.http import HttpChecker
from xdplb.health.monitor import TICK, HealthMonitor, Watch, _State, on_grid, sleep_until
from xdplb.health.probe import Result, Target
from xdplb.net import create_netns, enter_netns, in_netns, remove_netns

PORT = 8080
INTERVAL = 1.0
TARGET_PCT = 20.0
MONITOR_CASES = ("mixed", "http")
BARE_CASES = ("bare_connect", "bare_mixed", "bare_http")
CLIENT_CASES = ("client_httpx", "client_h11", "client_xdplb")
REQUEST = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{PORT}\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n".encode()
NGINX = """worker_processes 1;
worker_rlimit_nofile 16384;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy; fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;
  keepalive_requests 100000000;
  keepalive_timeout 600s;
  server {{ listen {port} reuseport backlog=4096; location / {{ return 200 "ok\\n"; }} }}
}}
"""


def addresses(n: int) -> list[ipaddress.IPv4Address]:
    """n distinct loopback addresses, 127.0.1.1 on (the whole of 127/8 is local)."""
    return [ipaddress.IPv4Address(f"127.0.{1 + i // 250}.{1 + i % 250}") for i in range(n)]


# --- the parent: namespace, nginx, one process per case ---

@contextmanager
def bench_netns() -> Iterator[str]:
    name = f"xdplb-bench-health-{os.getpid()}"
    remove_netns(name)
    create_netns(name)
    try:
        yield name
    finally:
        remove_netns(name)


@contextmanager
def nginx(netns: str) -> Iterator[None]:
    workdir = Path(tempfile.mkdtemp(prefix="xdplb-bench-nginx-"))
    conf = workdir / "nginx.conf"
    conf.write_text(NGINX.format(dir=workdir, port=PORT))
    proc = subprocess.Popen(["ip", "netns", "exec", netns, "nginx", "-p", str(workdir), "-c", str(conf),
                             "-g", "daemon off;"], stderr=subprocess.PIPE)
    try:
        _wait_listening(netns, proc)
        yield
    finally:
        proc.send_signal(signal.SIGTERM)  # the master stops its worker
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_listening(netns: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 10
    with in_netns(netns):
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"nginx exited: {proc.stderr.read().decode() if proc.stderr else ''}")
            try:
                socket.create_connection(("127.0.0.1", PORT), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
    raise RuntimeError("nginx did not listen within 10 s")


def run_case(case: str, netns: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--worker", case, "--netns", netns, "--backends", str(args.backends),
           "--seconds", str(args.seconds), "--warmup", str(args.warmup)]
    if args.profile == case:
        cmd.append("--profile-worker")
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"case {case} failed:\n{out.stderr}")
    if args.profile == case:
        print(out.stderr, file=sys.stderr)
    return json.loads(out.stdout)


# --- a worker: one case in a process of its own ---

def cpu_seconds() -> tuple[float, float]:
    """User and system CPU seconds of this process, every thread."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


def cpu_pct(before: tuple[float, float], after: tuple[float, float], wall: float) -> dict:
    user, system = (100 * (a - b) / wall for a, b in zip(after, before, strict=True))
    return {"cpu_pct": round(user + system, 2), "user_pct": round(user, 2), "sys_pct": round(system, 2)}


class CountingMonitor(HealthMonitor):
    """The monitor with a count of the results it records (one increment per check)."""

    def __init__(self, profile: bool) -> None:
        super().__init__(lambda h: None)
        self.results = self.failed = 0
        self.profiler = cProfile.Profile() if profile else None

    def _record(self, state: _State, result: Result) -> None:
        self.results += 1
        self.failed += not result.ok
        super()._record(state, result)

    def _run(self, ready: threading.Event) -> None:
        if self.profiler is None:
            return super()._run(ready)
        self.profiler.enable()
        try:
            super()._run(ready)
        finally:
            self.profiler.disable()


def monitor_case(case: str, n: int, seconds: float, warmup: float, profile: bool) -> dict:
    kinds = ["tcp", "http"] if case == "mixed" else ["http"]
    watches = [Watch("tcp:10.100.0.100:80", a, Target(a, PORT),
                     HealthCheck(type=kinds[i % len(kinds)], interval=INTERVAL, timeout=1.0, warmup=INTERVAL), 1)
               for i, a in enumerate(addresses(n))]
    monitor = CountingMonitor(profile).start()
    try:
        monitor.watch(watches)
        time.sleep(warmup)
        cpu0, n0, f0, t0 = cpu_seconds(), monitor.results, monitor.failed, time.monotonic()
        time.sleep(seconds)
        cpu1, n1, f1, t1 = cpu_seconds(), monitor.results, monitor.failed, time.monotonic()
        down = sum(not h.up for h in monitor.states().values())
    finally:
        monitor.stop()
    if monitor.profiler is not None:
        pstats.Stats(monitor.profiler, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    return {**cpu_pct(cpu0, cpu1, t1 - t0), "checks_per_s": round((n1 - n0) / (t1 - t0), 1), "failed": f1 - f0,
            "down": down}


async def _paced(n: int, seconds: float, warmup: float, make: Callable[[int], Callable[[], Awaitable[bool]]]) -> dict:
    """n tasks, each running its operation every INTERVAL from a random phase, on the monitor's
    grid (so the comparison is of the work, not of the schedule); CPU over the window."""
    counts = {"done": 0, "failed": 0}
    loop = asyncio.get_running_loop()
    grid = min(TICK, INTERVAL / 20)

    async def one(i: int) -> None:
        op = make(i)
        due = on_grid(loop.time() + random.uniform(0, INTERVAL), grid)
        await sleep_until(loop, due)
        while True:
            try:
                async with asyncio.timeout(1.0):  # not wait_for: 3.11's can swallow the final cancel
                    ok = await op()
            except (OSError, TimeoutError):
                ok = False
            counts["done"] += 1
            counts["failed"] += not ok
            due = on_grid(max(due + INTERVAL, loop.time()), grid)
            await sleep_until(loop, due)

    tasks = [asyncio.create_task(one(i)) for i in range(n)]
    await asyncio.sleep(warmup)
    cpu0, d0, f0, t0 = cpu_seconds(), counts["done"], counts["failed"], loop.time()
    await asyncio.sleep(seconds)
    cpu1, d1, f1, t1 = cpu_seconds(), counts["done"], counts["failed"], loop.time()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {**cpu_pct(cpu0, cpu1, t1 - t0), "checks_per_s": round((d1 - d0) / (t1 - t0), 1), "failed": f1 - f0}


def bare_connect(address: str) -> Callable[[], Awaitable[bool]]:
    async def op() -> bool:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, (address, PORT))
        finally:
            sock.close()
        return True
    return op


def bare_get(address: str) -> Callable[[], Awaitable[bool]]:
    """One send and one recv on a kept socket (nginx's answer fits one segment): no parsing at all."""
    state: dict[str, socket.socket] = {}

    async def op() -> bool:
        loop = asyncio.get_running_loop()
        if "sock" not in state:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            await loop.sock_connect(sock, (address, PORT))
            state["sock"] = sock
        await loop.sock_sendall(state["sock"], REQUEST)
        return (await loop.sock_recv(state["sock"], 65536)).startswith(b"HTTP/1.1 200")
    return op


def client_httpx(address: str, tls: ssl.SSLContext) -> Callable[[], Awaitable[bool]]:
    """An AsyncClient per backend, as each checker keeps its own connection (one shared client
    scans its pool for every request: worse at 1,000 origins). One TLS context for all of them
    (an AsyncClient otherwise loads the CA store each)."""
    import httpx

    url = f"http://{address}:{PORT}/"
    client = httpx.AsyncClient(timeout=1.0, verify=tls)

    async def op() -> bool:
        response = await client.get(url)
        return response.status_code == 200
    return op


def client_h11(address: str) -> Callable[[], Awaitable[bool]]:
    """h11 over asyncio streams, keep-alive: the state machine httpx itself runs on."""
    import h11

    state: dict = {}

    async def op() -> bool:
        if "conn" not in state or state["conn"].our_state is h11.MUST_CLOSE:
            state["reader"], state["writer"] = await asyncio.open_connection(address, PORT)
            state["conn"] = h11.Connection(h11.CLIENT)
        conn, reader, writer = state["conn"], state["reader"], state["writer"]
        writer.write(conn.send(h11.Request(method="GET", target="/", headers=[("Host", f"{address}:{PORT}")])))
        writer.write(conn.send(h11.EndOfMessage()))
        status = 0
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.EndOfMessage):
                break
        conn.start_next_cycle()
        return status == 200
    return op


def client_xdplb(address: str) -> Callable[[], Awaitable[bool]]:
    a = ipaddress.ip_address(address)
    checker = HttpChecker(HealthCheck(type="http", timeout=1.0), Target(a, PORT))

    async def op() -> bool:
        return (await checker.check()).ok
    return op


async def bare_case(case: str, n: int, seconds: float, warmup: float) -> dict:
    addrs = [str(a) for a in addresses(n)]
    if case == "bare_connect":
        return await _paced(n, seconds, warmup, lambda i: bare_connect(addrs[i]))
    if case == "bare_mixed":
        return await _paced(n, seconds, warmup, lambda i: (bare_connect, bare_get)[i % 2](addrs[i]))
    if case == "bare_http":
        return await _paced(n, seconds, warmup, lambda i: bare_get(addrs[i]))
    if case == "client_httpx":
        tls = ssl.create_default_context()
        return await _paced(n, seconds, warmup, lambda i: client_httpx(addrs[i], tls))
    if case == "client_h11":
        return await _paced(n, seconds, warmup, lambda i: client_h11(addrs[i]))
    return await _paced(n, seconds, warmup, lambda i: client_xdplb(addrs[i]))


def worker(args: argparse.Namespace) -> None:
    faulthandler.dump_traceback_later(args.warmup + args.seconds + 60, exit=True)  # a stuck case says where
    enter_netns(args.netns)  # before any thread: they all inherit it
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 16384)), hard))  # a socket per backend
    if args.worker in MONITOR_CASES:
        out = monitor_case(args.worker, args.backends, args.seconds, args.warmup, args.profile_worker)
    else:
        out = asyncio.run(bare_case(args.worker, args.backends, args.seconds, args.warmup))
    print(json.dumps(out))


# --- the report ---

def measure(args: argparse.Namespace) -> dict:
    cases = args.cases or [*BARE_CASES, *MONITOR_CASES, *(CLIENT_CASES if args.clients else ())]
    runs: dict[str, list[dict]] = {case: [] for case in cases}
    with bench_netns() as netns, nginx(netns):
        for _ in range(args.rounds):  # cases take turns, so a slow moment of the VM hits them all
            for case in cases:
                runs[case].append(run_case(case, netns, args))
    results = {case: sorted(rs, key=lambda m: m["cpu_pct"])[len(rs) // 2] for case, rs in runs.items()}
    r: dict = {"backends": args.backends, "interval_s": INTERVAL, "seconds": args.seconds, "rounds": args.rounds,
               "cases": results, "all_cpu_pct": {case: [m["cpu_pct"] for m in rs] for case, rs in runs.items()}}
    pairs = [("mixed", "bare_connect"), ("http", "bare_connect"), ("mixed", "bare_mixed"), ("http", "bare_http"),
             ("client_xdplb", "bare_http"), ("client_h11", "bare_http"), ("client_httpx", "bare_http")]
    r["ratios"] = {f"{a}_vs_{b}": round(results[a]["cpu_pct"] / results[b]["cpu_pct"], 2)
                   for a, b in pairs if a in results and b in results}
    monitors = [c for c in MONITOR_CASES if c in results]
    r["target"] = {"cpu_pct": TARGET_PCT, "met": all(results[c]["cpu_pct"] < TARGET_PCT for c in monitors)}
    return r


LABELS = {
    "bare_connect": "bare loop: 1 connect/s each",
    "bare_mixed": "bare loop: half connects, half raw GETs",
    "bare_http": "bare loop: raw keep-alive GETs",
    "mixed": "HealthMonitor: half TCP, half HTTP",
    "http": "HealthMonitor: all HTTP (keep-alive)",
    "client_httpx": "client: httpx.AsyncClient",
    "client_h11": "client: h11 over asyncio streams",
    "client_xdplb": "client: xdplb HttpChecker",
}


def report(r: dict) -> None:
    base = r["cases"].get("bare_connect", {}).get("cpu_pct", 0.0)
    rounds = f", median of {r['rounds']} rounds" if r["rounds"] > 1 else ""
    table = Table(title=f"health checks: {r['backends']:,} backends every {r['interval_s']:g} s, CPU over "
                        f"{r['seconds']:g} s{rounds}, % of one core")
    for col in ("case", "CPU %", "user", "sys", "checks/s", "failed", "x bare connect"):
        table.add_column(col, justify="left" if col == "case" else "right")
    for case, m in r["cases"].items():
        table.add_row(LABELS[case], f"{m['cpu_pct']:.1f}", f"{m['user_pct']:.1f}", f"{m['sys_pct']:.1f}",
                      f"{m['checks_per_s']:,.0f}", str(m["failed"]),
                      f"{m['cpu_pct'] / base:.2f}" if base else "")
    console = Console(emoji=False)
    console.print(table)
    met = "[green]met[/]" if r["target"]["met"] else "[red]not met[/]"
    console.print(f"target: monitor under {r['target']['cpu_pct']:g}% of one core: {met}")
    console.print("ratios: " + ", ".join(f"{k}={v}" for k, v in r["ratios"].items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20.0, help="the measured window of each case")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before the window (connections open)")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each case, taking turns; the median counts")
    parser.add_argument("--clients", action="store_true", help="also measure httpx, h11 and xdplb's HTTP client")
    parser.add_argument("--profile", choices=[*MONITOR_CASES], help="print a cProfile of this case's monitor")
    parser.add_argument("--cases", nargs="+", choices=[*BARE_CASES, *MONITOR_CASES, *CLIENT_CASES],
                        help="run only these cases")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--netns", help=argparse.SUPPRESS)
    parser.add_argument("--profile-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if os.geteuid() != 0:
        sys.exit("bench/health.py needs root (a network namespace of its own)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds: nginx and the namespace go
    r = measure(args)
    if args.json:
        print(json.dumps(r))
    else:
        report(r)


if __name__ == "__main__":
    main()
