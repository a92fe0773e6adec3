"""Real clients on the lab's client host (curl, a UDP sender, wrk), for the demo, the end-to-end tests
and benchmarks. Each runs as one process in the client's namespace and reports what the servers
answered; servers say who they are (nginx's body and X-Server header, the echo's prefix)."""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
from collections import Counter

from xdplb.lab import BY_NAME, ROLES, VIP4, VIP6, Lab
from xdplb.labha import VRID
from xdplb.model import Backend, IPAddress, Service
from xdplb.vrrp.config import HaSettings

DR_WEIGHTS = {"rs1": 3, "rs2": 2, "rs3": 1}
# Clients run on CPU 0: a veth hands a frame on on the sender's CPU, so the balancer sees all of
# them on one CPU too, and rr/wrr (a cursor per CPU) follow one exact sequence whatever the machine.
ONE_CPU = ["taskset", "-c", "0"]
BACK_GATEWAY4, BACK_GATEWAY6 = "10.200.0.1/24", "fd00:200::1/64"  # lab/roles/common.sh BACK_VIP4/6
STREAM_FORMAT = "%{size_download} %{http_code} %header{x-server}\n"

_UDP_CLIENT = r"""
import json, socket, sys
vip, port, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
fam = socket.AF_INET6 if ":" in vip else socket.AF_INET
out, socks = [], []
for i in range(n):
    s = socket.socket(fam, socket.SOCK_DGRAM)   # a new source port: a new flow
    socks.append(s)                              # kept open, so no port comes back
    s.settimeout(2)
    s.connect((vip, port))
    s.send(b"x" * size)
    try:
        out.append(s.recv(65535).split(b":")[0].decode())
    except OSError:
        out.append("TIMEOUT")
print(json.dumps(out))
"""


_UPLOAD_CLIENT = r"""
import socket, sys
vip, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fam = socket.AF_INET6 if ":" in vip else socket.AF_INET
s = socket.create_connection((vip, port), timeout=20)
s.sendall(b"u" * size)
s.shutdown(socket.SHUT_WR)
print(s.recv(100).decode())
"""


def vip(version: int) -> str:
    return VIP4 if version == 4 else VIP6


def url(version: int, path: str = "/") -> str:
    return f"http://{VIP4}{path}" if version == 4 else f"http://[{VIP6}]{path}"


def dr_service(proto: str = "tcp", port: int = 80, version: int = 4, weights: dict[str, int] | None = None,
               scheduler: str = "wrr", backend_version: int | None = None, **extra: object) -> Service:
    """A service over rs1-rs3 (the DR/TUN real servers); `extra` goes to Service (method, tunnel...)."""
    weights = DR_WEIGHTS if weights is None else weights
    be_version = backend_version or version
    return Service(protocol=proto, vip=vip(version), port=port, scheduler=scheduler,
                   backends=tuple(Backend(address=BY_NAME[n].address("front", be_version), weight=w)
                                  for n, w in weights.items()), **extra)


def tun_service(proto: str = "tcp", port: int = 80, version: int = 4, encap: str = "ipip",
                backend_version: int | None = None, **kw: object) -> Service:
    """The same over TUN: rs1-rs3 decapsulate with xdplb's XDP decapsulator (4in6 when the VIP is
    IPv4 and backend_version 6)."""
    return dr_service(proto, port, version, backend_version=backend_version, method="tun",
                      tunnel={"encap": encap}, **kw)


def address_of(name: str, version: int = 4) -> IPAddress:
    return ipaddress.ip_address(BY_NAME[name].address("front", version))


def http_names(lab: Lab, target: str, n: int) -> Counter:
    """n requests, each on a new connection; which server answered each."""
    script = f"for i in $(seq {n}); do curl -gs -m 3 {target} || echo FAIL; done"
    return Counter(lab.exec("client", [*ONE_CPU, "bash", "-c", script], check=True).stdout.split())


def udp_names(lab: Lab, version: int, n: int, size: int, port: int = 9000) -> Counter:
    """n datagrams of `size` bytes, each from a new source port; which server echoed each."""
    res = lab.exec("client", [*ONE_CPU, "python3", "-c", _UDP_CLIENT, vip(version), str(port), str(n), str(size)],
                   check=True)
    return Counter(json.loads(res.stdout))


def upload(lab: Lab, version: int = 4, size: int = 200_000, port: int = 9001) -> tuple[str, int]:
    """One TCP upload of `size` bytes to the servers' byte counter: (server, bytes it received)."""
    res = lab.exec("client", ["python3", "-c", _UPLOAD_CLIENT, vip(version), str(port), str(size)], check=True)
    name, count = res.stdout.strip().split(":")
    return name, int(count)


def stream(lab: Lab, version: int = 4, rate: str | None = None) -> subprocess.Popen:
    """A long download: 1 MB at 256 kB/s, or at `rate` ("100k": 10 s), nginx's pace; its output:
    `bytes http-code server`."""
    path = f"/stream?rate={rate}" if rate else "/stream"
    return lab.popen("client", [*ONE_CPU, "curl", "-gs", "-m", "30", "-o", "/dev/null", "-w", STREAM_FORMAT,
                                url(version, path)], stdout=subprocess.PIPE, text=True)


def wrk_parallel(lab: Lab, targets: list[str], seconds: int = 2, connections: int = 16,
                 extra: tuple[str, ...] = ()) -> dict:
    """wrk against each target at once, `connections` split between them; the sums (the worst p99)."""
    each = max(1, connections // len(targets))
    procs = [lab.popen("client", ["wrk", "-t2", f"-c{each}", f"-d{seconds}s", "--latency", *extra, t],
                       stdout=subprocess.PIPE, text=True) for t in targets]
    runs = [_parse_wrk(p.communicate(timeout=seconds + 30)[0]) for p in procs]
    if any(p.returncode for p in procs):
        raise RuntimeError(f"wrk failed against {targets}")
    p99s = [r["p99_ms"] for r in runs if r["p99_ms"] is not None]
    return {
        "requests_per_s": sum(r["requests_per_s"] for r in runs),
        "socket_errors": sum(r["socket_errors"] for r in runs),
        "non_2xx": sum(r["non_2xx"] for r in runs),
        "p99_ms": max(p99s) if p99s else None,
        "requests": sum(r["requests"] for r in runs),
    }


def _parse_wrk(out: str) -> dict:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    return {
        "requests_per_s": rps,
        "socket_errors": sum(int(x) for x in m.groups()) if m else 0,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "p99_ms": float(p99.group(1)) * scale[p99.group(2)] if p99 else None,
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
    }


class UdpProbe:
    """lab/roles/udp_probe.py on the client: a datagram every `interval` seconds to the VIP's UDP echo,
    for as long as the block runs; `result` then says how many were answered and the longest gap."""

    def __init__(self, lab: Lab, version: int = 4, port: int = 9000, interval: float = 0.001) -> None:
        self.lab, self.args = lab, [vip(version), str(port), str(interval)]
        self.proc: subprocess.Popen | None = None
        self.result: dict = {}

    def __enter__(self) -> UdpProbe:
        self.proc = self.lab.popen("client", ["python3", str(ROLES / "udp_probe.py"), *self.args],
                                   stdout=subprocess.PIPE, text=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=10)
        self.result = json.loads(out) if out.strip() else {}


def ha_settings(priority: int, interval: float = 0.1, front: str = "front", back: str = "back",
                **kw: object) -> HaSettings:
    """The lab's VRRP instance as a director runs it: VRID 51 on the front interface, the IPv4 VIP
    advertised; the IPv6 VIP and the NAT servers' gateway addresses on the back interface moved with
    it (DESIGN.md: the active director holds them); adverts every 100 ms."""
    return HaSettings(instances=[{
        "name": "VI_1", "interface": front, "vrid": VRID, "priority": priority, "advert_interval": interval,
        "addresses": [f"{VIP4}/32"],
        "excluded_addresses": [f"{VIP6}/128", f"{BACK_GATEWAY4} dev {back}", f"{BACK_GATEWAY6} dev {back}"],
        **kw}])
