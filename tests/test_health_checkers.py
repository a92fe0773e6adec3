"""The health checkers against real servers on loopback and in a namespace: TCP, HTTP (status,
body regex, digest, keep-alive, reconnects, chunked and HTTP/1.0 bodies, timeouts), HTTPS with a
self-signed certificate (verification on and off), UDP (answers, silence, ICMP unreachable), MISC
(exit codes, dynamic weights, timeouts, missing programs), the source address; and the HTTP
response parser fed byte by byte.

The servers here (HttpServer, TcpListener, UdpServer) run in threads of their own, so they serve
the monitor's thread as well (tests/test_health_monitor.py uses them).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import ipaddress
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from xdplb.checks import HealthCheck
from xdplb.health import http as H
from xdplb.health.probe import Checker, CheckFailed, Result, Target, make_checker

pytestmark = pytest.mark.health

T = TypeVar("T")
LOCAL = ipaddress.ip_address("127.0.0.1")
SECOND = ipaddress.ip_address("127.0.0.2")  # also local: the whole of 127/8 is
BODY = b"hello world"


# --- servers ---

class HttpServer:
    """An HTTP/1.1 server on a thread per connection, answering as `mode` says:

    ok (200 with Content-Length), 503, slow (`delay` seconds, then 200), close (200 with
    Connection: close), idle_close (answers the first request of a connection, then closes at the
    next one without answering: a keep-alive timeout racing the request), chunked, http10 (a
    close-delimited HTTP/1.0 body), alternate (200, 503, 200...), big (a 1 MB body).
    """

    def __init__(self, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> None:
        self.mode, self.body, self.delay, self.tls = "ok", BODY, 0.0, tls
        self.connections = self.requests = self.active = self.most_active = 0
        self.open = 0  # connections not closed yet (by either side)
        self.peers: list[str] = []
        self.heads: list[bytes] = []
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._sock = socket.create_server((host, 0), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, peer = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self.open += 1
                self.peers.append(peer[0])
                self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            self._requests(conn)
        except OSError:
            pass
        finally:
            conn.close()
            with self._lock:
                self.open -= 1

    def _requests(self, conn: socket.socket) -> None:
        buf, served = b"", 0
        while True:
            while b"\r\n\r\n" not in buf:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
            head, _, buf = buf.partition(b"\r\n\r\n")
            with self._lock:
                self.requests += 1
                self.heads.append(head)
                n = self.requests
                self.active += 1
                self.most_active = max(self.most_active, self.active)
            try:
                if self.mode == "idle_close" and served:
                    return
                if not self._answer(conn, n):
                    return
            finally:
                with self._lock:
                    self.active -= 1
            served += 1

    def _answer(self, conn: socket.socket, n: int) -> bool:
        """Send one response; False when the connection ends with it."""
        mode, body = self.mode, self.body
        if mode == "slow":
            time.sleep(self.delay)
        if mode == "503" or (mode == "alternate" and n % 2 == 0):
            conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\ndown")
        elif mode == "close":
            conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            return False
        elif mode == "chunked":
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for i in range(0, len(body), 4):
                conn.sendall(b"%x;ext=1\r\n%s\r\n" % (len(body[i:i + 4]), body[i:i + 4]))
            conn.sendall(b"0\r\nX-Trailer: yes\r\n\r\n")
        elif mode == "http10":
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n" + body)
            return False
        elif mode == "big":
            big = b"x" * (1 << 20) + b"the end"
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(big), big))
        else:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        return True

    def close(self) -> None:
        self._sock.shutdown(socket.SHUT_RDWR)  # wakes the accept
        self._sock.close()
        with self._lock:
            for c in self._conns:
                with contextlib.suppress(OSError):
                    c.shutdown(socket.SHUT_RDWR)
                c.close()
        self._thread.join(5)


class TcpListener:
    """A listening socket that accepts and closes; stop() and start() again on the same port."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host, self.port, self.accepted = host, port, 0
        self.peers: list[str] = []
        self._sock: socket.socket | None = None
        self.start()

    def start(self) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(64)
        self.port, self._sock = sock.getsockname()[1], sock
        threading.Thread(target=self._accept, args=(sock,), daemon=True).start()

    def _accept(self, sock: socket.socket) -> None:
        while True:
            try:
                conn, peer = sock.accept()
            except OSError:
                return
            self.accepted += 1
            self.peers.append(peer[0])
            conn.close()

    def stop(self) -> None:
        if self._sock is not None:
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the accept
            self._sock.close()
            self._sock = None


class UdpServer:
    """Answers each datagram with b"PONG " + it, or stays silent."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.silent = False
        self.peers: list[str] = []
        self.received: list[bytes] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((host, 0))
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                data, peer = self._sock.recvfrom(65535)
            except OSError:
                return
            if data == b"__stop__":
                return
            self.peers.append(peer[0])
            self.received.append(data)
            if not self.silent:
                self._sock.sendto(b"PONG " + data, peer)

    def close(self) -> None:
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"__stop__", ("127.0.0.1", self.port))
        self._thread.join(5)
        self._sock.close()


def wait_for(cond: Callable[[], T], deadline: float = 10.0) -> T:
    """Poll until cond() is true (its value is returned), or fail."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = cond()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"not within {deadline} s: {cond}")


def closed_port(kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    """A port nothing listens on (bound, then let go)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def web() -> Iterator[HttpServer]:
    server = HttpServer()
    yield server
    server.close()


@pytest.fixture
def udp_server() -> Iterator[UdpServer]:
    server = UdpServer()
    yield server
    server.close()


def self_signed(directory: Path) -> ssl.SSLContext:
    """A server context with a fresh self-signed certificate for 127.0.0.1."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "xdplb test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(LOCAL)]), critical=False)
            .sign(key, hashes.SHA256()))
    (directory / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                          serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    return ctx


def checks(check: HealthCheck, target: Target, n: int = 1, pause: float = 0.0) -> tuple[list[Result], Checker]:
    """n checks in a row by one checker (closed after), in a loop of their own."""
    async def run() -> tuple[list[Result], Checker]:
        checker = make_checker(check, target)
        results = []
        try:
            for _ in range(n):
                results.append(await checker.check())
                await asyncio.sleep(pause)
        finally:
            await checker.close()
        return results, checker
    return asyncio.run(run())


def one(check: HealthCheck, target: Target) -> Result:
    return checks(check, target)[0][0]


# --- TCP ---

def test_tcp_up_refused_and_closes_with_reset():
    listener = TcpListener()
    try:
        r = one(HealthCheck(type="tcp"), Target(LOCAL, listener.port))
        assert r.ok and r.reason.startswith("connected in ") and r.elapsed > 0, r
        wait_for(lambda: listener.accepted == 1)
    finally:
        listener.stop()
    r = one(HealthCheck(type="tcp"), Target(LOCAL, closed_port()))
    assert (r.ok, r.reason) == (False, "connect: Connection refused")


def test_tcp_unreachable_and_timeout_in_a_namespace(netns_veth):
    """In a namespace of its own: no route at all, and an on-link address nobody answers ARP for."""
    from xdplb.net import configure_link

    a, _ = netns_veth
    configure_link(a.name, "10.250.0.1/24")
    r = one(HealthCheck(type="tcp", timeout=2), Target(ipaddress.ip_address("192.0.2.1"), 80))
    assert (r.ok, r.reason) == (False, "connect: Network is unreachable")
    r = one(HealthCheck(type="tcp", timeout=0.3), Target(ipaddress.ip_address("10.250.0.9"), 80))
    assert (r.ok, r.reason) == (False, "timed out after 0.3 s")
    assert 0.3 <= r.elapsed < 2


def test_tcp_ipv6():
    listener = socket.create_server(("::1", 0), family=socket.AF_INET6)
    try:
        r = one(HealthCheck(type="tcp"), Target(ipaddress.ip_address("::1"), listener.getsockname()[1]))
        assert r.ok, r
    finally:
        listener.close()


# --- HTTP ---

def test_http_status(web):
    target = Target(LOCAL, web.port)
    r = one(HealthCheck(type="http"), target)
    assert r.ok and r.reason.startswith("HTTP 200 in "), r
    web.mode = "503"
    r = one(HealthCheck(type="http"), target)
    assert (r.ok, r.reason) == (False, "HTTP 503 (expected 200-299)")
    assert one(HealthCheck(type="http", status=["200", "500-503"]), target).ok
    r = one(HealthCheck(type="http"), Target(LOCAL, closed_port()))
    assert (r.ok, r.reason) == (False, "connect: Connection refused")


def test_http_keep_alive_one_connection(web):
    results, checker = checks(HealthCheck(type="http"), Target(LOCAL, web.port), n=10)
    assert all(r.ok for r in results), results
    assert (web.connections, web.requests, checker.connections) == (1, 10, 1)


@pytest.mark.parametrize("mode", ["close", "http10"])
def test_http_new_connection_when_the_server_closes(web, mode):
    web.mode = mode
    results, _ = checks(HealthCheck(type="http", body_regex="^hello"), Target(LOCAL, web.port), n=4)
    assert all(r.ok for r in results), results
    assert (web.connections, web.requests) == (4, 4)


def test_http_request_lost_to_a_keep_alive_timeout_goes_again(web):
    """The server closes a kept connection as the next request arrives: that request goes again on
    a new connection, and the check is up."""
    web.mode = "idle_close"
    results, checker = checks(HealthCheck(type="http"), Target(LOCAL, web.port), n=4)
    assert all(r.ok for r in results), results
    assert checker.connections == 4
    assert web.requests == 7  # 4 answered, 3 dropped unanswered on a kept connection


def test_http_body_regex_and_digest(web):
    target = Target(LOCAL, web.port)
    md5 = hashlib.md5(BODY).hexdigest()
    for mode in ("ok", "chunked"):
        web.mode = mode
        assert one(HealthCheck(type="http", body_regex=r"wor.d$", digest=md5.upper()), target).ok, mode
        r = one(HealthCheck(type="http", body_regex="goodbye"), target)
        assert (r.ok, r.reason) == (False, "HTTP 200: the body does not match 'goodbye'")
        r = one(HealthCheck(type="http", digest="0" * 32), target)
        assert (r.ok, r.reason) == (False, f"HTTP 200: body MD5 {md5}, expected {'0' * 32}")


def test_http_big_body_is_bounded_but_digested_whole(web):
    web.mode = "big"
    target = Target(LOCAL, web.port)
    big = b"x" * (1 << 20) + b"the end"
    assert one(HealthCheck(type="http", digest=hashlib.md5(big).hexdigest()), target).ok
    assert one(HealthCheck(type="http", body_regex="^x{100}"), target).ok
    r = one(HealthCheck(type="http", body_regex="the end"), target)  # beyond the first 64 kB: not seen
    assert not r.ok and "does not match" in r.reason


def test_http_request_host_and_path(web):
    one(HealthCheck(type="http", path="/health check?full=1"), Target(LOCAL, web.port))
    one(HealthCheck(type="http", host="www.example.test"), Target(LOCAL, web.port))
    first, second = (h.split(b"\r\n") for h in web.heads)
    assert first[0] == b"GET /health%20check?full=1 HTTP/1.1"
    assert f"Host: 127.0.0.1:{web.port}".encode() in first
    assert b"Host: www.example.test" in second


def test_http_timeout_then_a_new_connection(web):
    web.mode, web.delay = "slow", 1.0
    target = Target(LOCAL, web.port)

    async def run() -> list[Result]:
        checker = make_checker(HealthCheck(type="http", timeout=0.2), target)
        slow = await checker.check()
        web.mode = "ok"
        fast = await checker.check()
        await checker.close()
        return [slow, fast]

    slow, fast = asyncio.run(run())
    assert (slow.ok, slow.reason) == (False, "timed out after 0.2 s")
    assert fast.ok, fast
    assert web.connections == 2  # the timed-out connection was not reused


def test_https_verification_on_and_off(tmp_path):
    server = HttpServer(tls=self_signed(tmp_path))
    try:
        target = Target(LOCAL, server.port)
        r = one(HealthCheck(type="https"), target)
        assert not r.ok and r.reason.startswith("TLS handshake: TLS certificate: self-signed certificate"), r
        results, checker = checks(HealthCheck(type="https", verify_tls=False), target, n=3)
        assert all(r.ok for r in results), results
        assert checker.connections == 1  # keep-alive over TLS too
        assert f"Host: 127.0.0.1:{server.port}".encode() in server.heads[-1].split(b"\r\n")
    finally:
        server.close()


def test_https_verified_against_a_trusted_certificate(tmp_path, monkeypatch):
    """The certificate trusted (the CA store is SSL_CERT_FILE): up, its IP address matching; the
    name checked when a host is given."""
    server = HttpServer(tls=self_signed(tmp_path))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "cert.pem"))
    monkeypatch.setattr(H, "_contexts", {})  # contexts load the store once
    try:
        target = Target(LOCAL, server.port)
        r = one(HealthCheck(type="https"), target)
        assert r.ok, r
        r = one(HealthCheck(type="https", host="www.example.test"), target)
        assert not r.ok and "Hostname mismatch" in r.reason, r
    finally:
        server.close()


def test_http_ipv6():
    server = HttpServer("::1")
    try:
        target = Target(ipaddress.ip_address("::1"), server.port)
        assert one(HealthCheck(type="http"), target).ok
        assert f"Host: [::1]:{server.port}".encode() in server.heads[0].split(b"\r\n")
    finally:
        server.close()


# --- the response parser, byte by byte ---

def parse(raw: bytes, eof: bool = False, digest: bool = False) -> H.ResponseParser:
    """Feed a response one byte at a time, as slowly as a server could send it."""
    parser = H.ResponseParser(H.Body(True, digest))
    buf = bytearray()
    done = False
    for i in range(len(raw)):
        buf += raw[i:i + 1]
        done = parser.feed(buf)
        if done:
            assert not raw[i + 1:], "the parser stopped before the end"
            break
    if eof:
        done = parser.eof()
    assert done, "the response is not complete"
    return parser


PARSED = [
    ("Content-Length", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 200, b"hello", True),
    ("chunked, extensions, trailer", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
     b"3;a=b\r\nhel\r\n2\r\nlo\r\n0\r\nX-T: 1\r\n\r\n", 200, b"hello", True),
    ("1xx then the response", b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", 204, b"", True),
    ("304 has no body", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", 304, b"", True),
    ("Connection: close", b"HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 0\r\n\r\n", 200, b"", False),
    ("HTTP/1.0 keep-alive", b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
     200, b"ok", True),
    ("bare LF, folded header, no reason", b"HTTP/1.1 503\nX-A: 1\n  more\nContent-Length: 1\n\nx", 503, b"x", True),
    ("repeated equal lengths", b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok", 200, b"ok", True),
]


@pytest.mark.unit
@pytest.mark.parametrize(("raw", "status", "body", "persistent"), [p[1:] for p in PARSED],
                         ids=[p[0] for p in PARSED])
def test_parser(raw, status, body, persistent):
    p = parse(raw)
    assert (p.head.status, bytes(p.body.data), p.persistent) == (status, body, persistent)


@pytest.mark.unit
def test_parser_close_delimited_body():
    p = parse(b"HTTP/1.1 200 OK\r\n\r\nall of it", eof=True, digest=True)
    assert bytes(p.body.data) == b"all of it" and not p.persistent
    assert p.body.md5.hexdigest() == hashlib.md5(b"all of it").hexdigest()


@pytest.mark.unit
@pytest.mark.parametrize(("raw", "reason"), [
    (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP/1 status line"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\n", "invalid Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "invalid Content-Length"),
    (b"HTTP/1.1 200 OK\r\nBad Header : x\r\n\r\n", "malformed header line"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n", "no CRLF after a chunk"),
    (b"HTTP/1.1 200 OK\r\n" + b"X: " + b"y" * 20000, "response head over 16 kB"),
])
def test_parser_refuses(raw, reason):
    parser = H.ResponseParser(H.Body(False, False))
    with pytest.raises(CheckFailed, match=reason):
        parser.feed(bytearray(raw))


# --- UDP ---

def test_udp_answer_expected(udp_server):
    target = Target(LOCAL, udp_server.port)
    r = one(HealthCheck(type="udp", payload="ping", expect="^PONG ping$"), target)
    assert r.ok and r.reason.startswith("answered in "), r
    r = one(HealthCheck(type="udp", payload="ping", expect="^pong"), target)
    assert (r.ok, r.reason) == (False, "answer b'PONG ping' does not match '^pong'")
    r = one(HealthCheck(type="udp", payload="hex:00 01 ff", expect=r"^PONG \x00\x01\xff$"), target)
    assert r.ok, r
    assert udp_server.received[-1] == b"\x00\x01\xff"


def test_udp_silence_and_unreachable(udp_server):
    udp_server.silent = True
    target = Target(LOCAL, udp_server.port)
    r = one(HealthCheck(type="udp", payload="ping", timeout=0.2), target)
    assert (r.ok, r.reason) == (True, "no answer in 0.2 s, none required, no ICMP unreachable")
    r = one(HealthCheck(type="udp", payload="ping", expect="PONG", timeout=0.2), target)
    assert (r.ok, r.reason) == (False, "no answer in 0.2 s")
    r = one(HealthCheck(type="udp", payload="ping"), Target(LOCAL, closed_port(socket.SOCK_DGRAM)))
    assert (r.ok, r.reason) == (False, "ICMP port unreachable")
    r = one(HealthCheck(type="udp", payload="hex:zz"), target)
    assert not r.ok and r.reason.startswith("payload 'hex:zz': non-hexadecimal"), r


# --- MISC ---

def sh(script: str, **kw: object) -> HealthCheck:
    return HealthCheck(type="misc", command=["/bin/sh", "-c", script], **kw)


TARGET = Target(LOCAL, 80)


@pytest.mark.parametrize(("script", "dynamic", "ok", "reason", "weight"), [
    ("exit 0", False, True, "exit 0", None),
    ("exit 1", False, False, "exit 1", None),
    ("exit 5", False, False, "exit 5", None),
    ("exit 0", True, True, "exit 0", None),       # the configured weight
    ("exit 1", True, False, "exit 1", None),
    ("exit 5", True, True, "exit 5: weight 3", 3),
    ("exit 2", True, True, "exit 2: weight 0", 0),
    ("echo lots; kill -9 $$", False, False, "killed by SIGKILL", None),
])
def test_misc_exit_codes(script, dynamic, ok, reason, weight):
    r = one(sh(script, dynamic=dynamic), TARGET)
    assert (r.ok, r.reason, r.weight) == (ok, reason, weight)


def test_misc_timeout_kills_the_program_and_its_children(tmp_path):
    pids = tmp_path / "pids"
    r = one(sh(f"sleep 30 & echo $$ $! > {pids}; wait", timeout=0.3), TARGET)
    assert (r.ok, r.reason) == (False, "timed out after 0.3 s")
    for pid in map(int, pids.read_text().split()):
        deadline = time.monotonic() + 5
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not _alive(pid), f"process {pid} outlived the check"


def test_misc_judged_at_its_exit_not_its_background_children():
    r = one(sh("sleep 2 & echo started; exit 0", timeout=1.5), TARGET)
    assert (r.ok, r.reason) == (True, "exit 0") and r.elapsed < 1


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_misc_missing_program():
    r = one(HealthCheck(type="misc", command=["/nonexistent/check", "x"]), TARGET)
    assert (r.ok, r.reason) == (False, "cannot run /nonexistent/check: No such file or directory")


# --- the source address ---

def test_source_address(web, udp_server):
    listener = TcpListener()
    try:
        assert one(HealthCheck(type="tcp", source=SECOND), Target(LOCAL, listener.port)).ok
        assert wait_for(lambda: listener.peers) == ["127.0.0.2"]
    finally:
        listener.stop()
    assert one(HealthCheck(type="http", source=SECOND), Target(LOCAL, web.port)).ok
    assert web.peers == ["127.0.0.2"]
    assert one(HealthCheck(type="udp", payload="x", expect="PONG", source=SECOND), Target(LOCAL, udp_server.port)).ok
    assert udp_server.peers == ["127.0.0.2"]
    r = one(HealthCheck(type="tcp", source=ipaddress.ip_address("192.0.2.55")), Target(LOCAL, web.port))
    assert (r.ok, r.reason) == (False, "bind 192.0.2.55: Cannot assign requested address")
    r = one(HealthCheck(type="tcp", source=ipaddress.ip_address("::1")), Target(LOCAL, web.port))
    assert (r.ok, r.reason) == (False, "source ::1 is IPv6, the target 127.0.0.1 IPv4")
