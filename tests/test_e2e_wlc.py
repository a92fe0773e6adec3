"""wlc against real load, end to end in the namespace lab: long-lived TCP connections from the client
hold ActiveConn on their real servers, and the balancer places new connections by those counts. The
connections are plain sockets in one client process (each sends a request and stays open: nginx keeps
an idle keep-alive connection for its default 75 s, far longer than the test), and each server names
itself in its answer."""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from xdplb.labclients import ONE_CPU, address_of, dr_service, vip

pytestmark = pytest.mark.lab

SERVERS = ("rs1", "rs2", "rs3")
DEADLINE = 30.0  # generous: the lab may run on a loaded machine

# The client: reads commands on stdin, answers one JSON line each.
#   open K     K new connections, one after another, each sending GET / and reading the answer
#              before the next connects (so its ACK reached the director before the next SYN);
#              answers [[local port, server], ...]
#   ask        a request again on every open connection: {local port: server}
#   close P..  closes the connections from these local ports (a FIN each): answers their count
# It exits, closing everything, at the end of its input.
_HELD_CLIENT = r"""
import json, socket, sys
vip, port = sys.argv[1], int(sys.argv[2])
fam = socket.AF_INET6 if ":" in vip else socket.AF_INET
conns = {}  # local port -> socket

def request(s):
    s.sendall(b"GET / HTTP/1.1\r\nHost: wlc\r\nConnection: keep-alive\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("closed by the server")
        buf += chunk
    head, body = buf.split(b"\r\n\r\n", 1)
    fields = dict(line.split(b":", 1) for line in head.split(b"\r\n")[1:])
    fields = {k.strip().lower(): v.strip() for k, v in fields.items()}
    length = int(fields[b"content-length"])
    while len(body) < length:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("closed by the server")
        body += chunk
    assert len(body) == length, (head, body)  # one request in flight: nothing more follows
    return fields[b"x-server"].decode()

for line in sys.stdin:
    cmd, *args = line.split()
    if cmd == "open":
        out = []
        for _ in range(int(args[0])):
            s = socket.socket(fam, socket.SOCK_STREAM)
            s.settimeout(10)
            s.connect((vip, port))
            lport = s.getsockname()[1]
            conns[lport] = s
            out.append([lport, request(s)])
        print(json.dumps(out), flush=True)
    elif cmd == "ask":
        print(json.dumps({p: request(s) for p, s in conns.items()}), flush=True)
    elif cmd == "close":
        for p in args:
            conns.pop(int(p)).close()
        print(json.dumps(len(args)), flush=True)
"""


class HeldClient:
    """The client process in the client's namespace; every answer awaited with a deadline."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self._buf = b""

    def _command(self, line: str, timeout: float = DEADLINE):
        self.proc.stdin.write(f"{line}\n".encode())
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            assert left > 0, f"the client did not answer {line!r}"
            if select.select([fd], [], [], left)[0]:
                chunk = os.read(fd, 65536)
                if not chunk:
                    err = self.proc.stderr.read().decode() if self.proc.poll() is not None else ""
                    raise AssertionError(f"the client ended on {line!r}: {err}")
                self._buf += chunk
        answer, self._buf = self._buf.split(b"\n", 1)
        return json.loads(answer)

    def open(self, n: int) -> dict[int, str]:
        """n new connections: {local port: the server that answered}."""
        return {port: name for port, name in self._command(f"open {n}")}

    def ask(self) -> dict[int, str]:
        return {int(port): name for port, name in self._command("ask").items()}

    def close(self, ports) -> None:
        assert self._command("close " + " ".join(map(str, ports))) == len(ports)


@pytest.fixture
def empty_table(lb) -> None:
    """lb1 started from nothing (its daemon stopped, the balancer detached and unpinned, started again):
    the counts are exact only over an empty connection table, and the daemon has no flush. (Its
    sweeper also recounts an earlier test's closing connections onto the backends that reuse their
    slots, whatever their generation.)"""
    lb.detach()
    lb.attach()


@pytest.fixture
def held(lb) -> Iterator:
    """Starts held clients against a VIP's port 80; all of them (and their sockets) end after the test."""
    procs: list[subprocess.Popen] = []

    def start(version: int) -> HeldClient:
        proc = lb.lab.popen("client", [*ONE_CPU, "python3", "-u", "-c", _HELD_CLIENT, vip(version), "80"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        procs.append(proc)
        return HeldClient(proc)

    yield start
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(timeout=10)
        for f in (proc.stdin, proc.stdout, proc.stderr):
            f.close()


def wlc(version: int, rs2_rs3: int):
    return dr_service(version=version, weights={"rs1": 1, "rs2": rs2_rs3, "rs3": rs2_rs3}, scheduler="wlc")


def counts_by_name(lb, svc, version: int) -> dict[str, tuple[int, int]]:
    counts = lb.dp.backend_counts(svc.key)
    return {name: counts[address_of(name, version)] for name in SERVERS}


def wait_counts(lb, svc, version: int, want: dict[str, tuple[int, int]]) -> None:
    """Until the director's (active, inactive) per server are `want`."""
    deadline = time.monotonic() + DEADLINE
    while (got := counts_by_name(lb, svc, version)) != want:
        assert time.monotonic() < deadline, f"director counts {got}, expected {want}"
        time.sleep(0.05)


def director_view(lb, version: int, ports) -> dict[int, tuple[str, str]]:
    """The director's connection table for these client ports: {port: (server, state)}."""
    names = {address_of(n, version): n for n in SERVERS}
    ports = set(ports)
    return {c.client[1]: (names.get(c.backend, str(c.backend)), c.state)
            for c in lb.dp.connections() if c.protocol == "TCP" and c.client[1] in ports}


@pytest.mark.usefixtures("empty_table")
@pytest.mark.parametrize("version", [4, 6])
def test_wlc_places_new_connections_by_the_active_ones(lb, held, version):
    n, m = 12, 12
    svc = wlc(version, 0)  # rs1 alone; rs2 and rs3 quiescent
    lb.set_service(svc)
    client = held(version)

    first = client.open(n)
    assert len(first) == n and Counter(first.values()) == {"rs1": n}
    # every handshake's ACK went through the director before its request: all n are active
    wait_counts(lb, svc, version, {"rs1": (n, 0), "rs2": (0, 0), "rs3": (0, 0)})

    svc = wlc(version, 1)
    lb.set_service(svc)
    # the weights changed, the counts stayed with the servers
    assert counts_by_name(lb, svc, version) == {"rs1": (n, 0), "rs2": (0, 0), "rs3": (0, 0)}
    second = client.open(m)
    assert len(second) == m and not set(second) & set(first)
    names = Counter(second.values())
    # rs1's n active weigh n << 8 against the newcomers' few: wlc sends them all to rs2 and rs3, evenly
    assert names["rs1"] <= 1, names
    assert abs(names["rs2"] - names["rs3"]) <= 2, names  # 6/6, give or take one
    placed = Counter(first.values()) + names
    wait_counts(lb, svc, version, {s: (placed[s], 0) for s in SERVERS})

    # the director's table says the same as the servers, connection by connection
    both = first | second
    assert director_view(lb, version, both) == {p: (name, "ESTABLISHED") for p, name in both.items()}
    # the connections stayed open, each on its server
    assert client.ask() == both

    # rs1's connections end: a FIN each moves them to CLOSING, inactive
    rs1_ports = [p for p, name in both.items() if name == "rs1"]
    client.close(rs1_ports)
    left = {s: (placed[s], 0) for s in SERVERS} | {"rs1": (0, placed["rs1"])}
    wait_counts(lb, svc, version, left)
    assert {s for _, s in director_view(lb, version, rs1_ports).values()} == {"CLOSING"}
    # n inactive weigh less than one active: rs1 takes the next connection
    (port, name), = client.open(1).items()
    assert name == "rs1"
    left["rs1"] = (1, placed["rs1"])
    wait_counts(lb, svc, version, left)

    # everything ends: no active connection is left anywhere
    rest = [p for p, name in both.items() if name != "rs1"] + [port]
    client.close(rest)
    total = {s: (0, placed[s]) for s in SERVERS}
    total["rs1"] = (0, placed["rs1"] + 1)
    wait_counts(lb, svc, version, total)
    assert {s for _, s in director_view(lb, version, [*both, port]).values()} == {"CLOSING"}
