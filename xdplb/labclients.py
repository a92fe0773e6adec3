"""Real clients on the lab's client host (curl, a UDP sender, wrk), for the demo, the end-to-end tests
and benchmarks. Each runs as one process in the client's namespace and reports what the servers
answered; servers say who they are (nginx's body and X-Server header, the echo's prefix)."""

from __future__ import annotations

import ipaddress
import json
import re
from collections import Counter

from xdplb.lab import BY_NAME, VIP4, VIP6, Lab
from xdplb.model import Backend, IPAddress, Service

DR_WEIGHTS = {"rs1": 3, "rs2": 2, "rs3": 1}

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


def vip(version: int) -> str:
    return VIP4 if version == 4 else VIP6


def url(version: int, path: str = "/") -> str:
    return f"http://{VIP4}{path}" if version == 4 else f"http://[{VIP6}]{path}"


def dr_service(proto: str = "tcp", port: int = 80, version: int = 4, weights: dict[str, int] | None = None,
               scheduler: str = "wrr") -> Service:
    weights = DR_WEIGHTS if weights is None else weights
    return Service(protocol=proto, vip=vip(version), port=port, scheduler=scheduler,
                   backends=tuple(Backend(address=BY_NAME[n].address("front", version), weight=w)
                                  for n, w in weights.items()))


def address_of(name: str, version: int = 4) -> IPAddress:
    return ipaddress.ip_address(BY_NAME[name].address("front", version))


def http_names(lab: Lab, target: str, n: int) -> Counter:
    """n requests, each on a new connection; which server answered each."""
    script = f"for i in $(seq {n}); do curl -gs -m 3 {target} || echo FAIL; done"
    return Counter(lab.exec("client", ["bash", "-c", script], check=True).stdout.split())


def udp_names(lab: Lab, version: int, n: int, size: int, port: int = 9000) -> Counter:
    """n datagrams of `size` bytes, each from a new source port; which server echoed each."""
    res = lab.exec("client", ["python3", "-c", _UDP_CLIENT, vip(version), str(port), str(n), str(size)], check=True)
    return Counter(json.loads(res.stdout))


def wrk(lab: Lab, target: str, seconds: int = 2, connections: int = 16, extra: tuple[str, ...] = ()) -> dict:
    res = lab.exec("client", ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", *extra, target],
                   check=True, timeout=seconds + 30)
    out = res.stdout
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
