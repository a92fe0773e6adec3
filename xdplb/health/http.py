"""HTTP and HTTPS checks (keepalived HTTP_GET, SSL_GET): GET the check's path, expect a status in
its ranges, optionally a body matching a regular expression and an MD5 digest of the body.

The connection is kept between checks when the server allows it (HTTP/1.1 without `Connection:
close`, or HTTP/1.0 with `keep-alive`), so a check usually costs one request and one response on a
socket already open. A kept connection the server closed while idle is opened again at once, and a
request it drops unanswered is sent once more on a new connection (what every HTTP client does
with an idle connection), so a server whose keep-alive timeout is shorter than the interval is not
reported down.

The client is a small HTTP/1.1 response parser run from the connection's asyncio Protocol as bytes
arrive, so a check awaits once; measured as the cheapest of httpx, h11 and this (bench/health.py
--clients). It reads Content-Length, chunked and close-delimited bodies (RFC 9112 section 6),
skips 1xx interim responses, and reads no body for 204 and 304. What it holds is bounded: 16 kB of
head, the first 64 kB of the body (kept only for `body_regex`, which is searched in it decoded as
UTF-8), while the MD5 `digest` sees every byte; a server that never ends its body meets the
timeout.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import ssl
from urllib.parse import quote

from xdplb.checks import CheckType, HealthCheck
from xdplb.health import tcp
from xdplb.health.probe import BaseChecker, CheckFailed, Result, Target, ms, os_reason

MAX_HEAD = 16 * 1024
MAX_BODY = 64 * 1024
MAX_BUFFER = 1 << 20    # unread bytes a connection may hold (a server talking while not asked)
MAX_LINE = 1024         # a chunk-size or trailer line
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_LINE_END = re.compile(rb"\r?\n")
_PATH_SAFE = "!#$%&'()*+,/:;=?@[]~-._"  # what a request target may hold unquoted (RFC 3986)


class _Stale(Exception):
    """The connection ended before any byte of the response: on a kept connection, the server
    closed it idle; the request goes again on a new one."""


class Head:
    """A response's status line and headers (names lowercased, repeated ones joined by commas)."""

    def __init__(self, version: bytes, status: int, headers: dict[bytes, bytes]) -> None:
        self.version, self.status, self.headers = version, status, headers

    def tokens(self, name: bytes) -> set[bytes]:
        return {t.strip().lower() for t in self.headers.get(name, b"").split(b",")} - {b""}


def parse_head(raw: bytes) -> Head:
    """Status line and header fields (RFC 9112 sections 4 and 5); CheckFailed if malformed."""
    lines = raw.split(b"\n")
    version, _, rest = lines[0].rstrip(b"\r").partition(b" ")
    code = rest[:3]
    if not version.startswith(b"HTTP/1.") or len(code) != 3 or not code.isdigit() or rest[3:4] not in (b"", b" "):
        raise CheckFailed(f"receive: not an HTTP/1 status line: {lines[0][:80]!r}")
    headers: dict[bytes, bytes] = {}
    name = b""
    for line in lines[1:]:
        line = line.rstrip(b"\r")
        if line[:1] in (b" ", b"\t") and name:  # obsolete line folding: part of the previous value
            headers[name] += b" " + line.strip()
            continue
        name, sep, value = line.partition(b":")
        name = name.lower()
        if not sep or not name or name != name.strip():
            raise CheckFailed(f"receive: malformed header line {line[:80]!r}")
        value = value.strip()
        headers[name] = headers[name] + b", " + value if name in headers else value
    return Head(version, int(code), headers)


class Body:
    """The body as the check needs it: the first MAX_BODY bytes if it has a regex, the MD5 of all
    of it if it has a digest, nothing otherwise."""

    def __init__(self, keep: bool, digest: bool) -> None:
        self.keep = keep
        self.wanted = keep or digest
        self.data = bytearray()
        self.md5 = hashlib.md5(usedforsecurity=False) if digest else None

    def feed(self, chunk: bytes | bytearray) -> None:
        if self.keep and len(self.data) < MAX_BODY:
            self.data += chunk[:MAX_BODY - len(self.data)]
        if self.md5 is not None:
            self.md5.update(chunk)


# What the parser waits for next.
HEAD, LENGTH, CHUNK_SIZE, CHUNK_DATA, CHUNK_END, TRAILER, TO_CLOSE, DONE = range(8)


class ResponseParser:
    """One response, parsed as its bytes arrive: feed() takes what it can from the buffer and says
    when the response is complete; CheckFailed when it is malformed."""

    def __init__(self, body: Body) -> None:
        self.body = body
        self.state = HEAD
        self.head: Head | None = None
        self.remaining = 0
        self.started = False      # a byte of the response has arrived
        self.until_close = False  # the body ends with the connection

    def feed(self, buf: bytearray) -> bool:
        self.started = self.started or bool(buf)
        while True:
            state = self.state
            if state == HEAD:
                if not self._head(buf):
                    return False
            elif state in (LENGTH, CHUNK_DATA):
                self._take(buf)
                if self.remaining:
                    return False
                self.state = DONE if state == LENGTH else CHUNK_END
            elif state == TO_CLOSE:
                self._take(buf)
                return False
            elif state == DONE:
                return True
            else:
                line = self._line(buf)
                if line is None:
                    return False
                self._chunked(line)

    def eof(self) -> bool:
        """The connection ended: True if that completes the response (a close-delimited body)."""
        if self.state == TO_CLOSE:
            self.state = DONE
        return self.state == DONE

    @property
    def persistent(self) -> bool:
        """Whether the connection may carry another request once this response is complete."""
        head = self.head
        if head is None or head.status == 101 or self.until_close:
            return False
        connection = head.tokens(b"connection")
        return b"keep-alive" in connection if head.version == b"HTTP/1.0" else b"close" not in connection

    def _head(self, buf: bytearray) -> bool:
        m = _HEAD_END.search(buf)
        if m is None:
            if len(buf) > MAX_HEAD:
                raise CheckFailed(f"receive: response head over {MAX_HEAD // 1024} kB")
            return False
        head = parse_head(bytes(buf[:m.start()]))
        del buf[:m.end()]
        if 100 <= head.status < 200 and head.status != 101:
            return True  # an interim response: the final one follows
        self.head = head
        self.state = self._framing(head)
        return True

    def _framing(self, head: Head) -> int:
        """How the body ends (RFC 9112 section 6.3)."""
        if head.status in (101, 204, 304):
            return DONE
        if b"transfer-encoding" in head.headers:  # wins over Content-Length
            last = head.headers[b"transfer-encoding"].rsplit(b",", 1)[-1].strip().lower()
            if last == b"chunked":
                return CHUNK_SIZE
            self.until_close = True
            return TO_CLOSE
        if b"content-length" in head.headers:
            values = {v.strip() for v in head.headers[b"content-length"].split(b",")}
            value = values.pop()
            if values or not value.isdigit():
                raise CheckFailed(f"receive: invalid Content-Length {head.headers[b'content-length'][:40]!r}")
            self.remaining = int(value)
            return LENGTH if self.remaining else DONE
        self.until_close = True
        return TO_CLOSE

    def _take(self, buf: bytearray) -> None:
        take = len(buf) if self.state == TO_CLOSE else min(self.remaining, len(buf))
        if take:
            if self.body.wanted:
                self.body.feed(buf[:take])
            del buf[:take]
            self.remaining -= take

    @staticmethod
    def _line(buf: bytearray) -> bytes | None:
        m = _LINE_END.search(buf, 0, MAX_LINE + 2)
        if m is None:
            if len(buf) > MAX_LINE:
                raise CheckFailed("receive: chunked body: line too long")
            return None
        line = bytes(buf[:m.start()])
        del buf[:m.end()]
        return line

    def _chunked(self, line: bytes) -> None:
        if self.state == CHUNK_SIZE:
            try:
                self.remaining = int(line.partition(b";")[0].strip(), 16)
            except ValueError:
                raise CheckFailed(f"receive: chunked body: bad chunk size {line[:40]!r}") from None
            if self.remaining < 0:
                raise CheckFailed(f"receive: chunked body: bad chunk size {line[:40]!r}")
            self.state = CHUNK_DATA if self.remaining else TRAILER
        elif self.state == CHUNK_END:
            if line:
                raise CheckFailed("receive: chunked body: no CRLF after a chunk")
            self.state = CHUNK_SIZE
        elif not line:  # TRAILER: fields up to the empty line
            self.state = DONE


class Connection(asyncio.Protocol):
    """One kept connection: its bytes go to the parser of the exchange in progress, which the
    check awaits once."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.closed = False  # EOF, reset or closed: nothing more will come
        self.error: BaseException | None = None
        self._parser: ResponseParser | None = None
        self._waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self._parser is None:
            if len(self.buf) > MAX_BUFFER:  # a server talking while not asked
                self.abort()
            return
        try:
            if self._parser.feed(self.buf):
                self._finish(None)
        except CheckFailed as e:
            self._finish(e)

    def eof_received(self) -> bool:
        self._ended()
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.error = self.error or exc
        self._ended()

    def _ended(self) -> None:
        self.closed = True
        parser = self._parser
        if parser is None:
            return
        if parser.eof():
            self._finish(None)
        elif not parser.started:
            self._finish(_Stale())
        else:
            self._finish(CheckFailed("receive: connection closed in the middle of the response"))

    def _finish(self, error: BaseException | None) -> None:
        waiter, self._parser = self._waiter, None
        if waiter is not None and not waiter.done():
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(error)

    async def exchange(self, request: bytes, parser: ResponseParser) -> bool:
        """Send the request and wait for the parser to complete the response; whether the
        connection may carry another request."""
        assert self.transport is not None and not self.closed
        self.buf.clear()  # nothing unasked counts as an answer
        self._parser, self._waiter = parser, asyncio.get_running_loop().create_future()
        try:
            self.transport.write(request)
            await self._waiter
        finally:
            self._parser = self._waiter = None
        return parser.persistent and not self.buf and not self.closed

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


_contexts: dict[bool, ssl.SSLContext] = {}


def tls_context(verify: bool) -> ssl.SSLContext:
    """One context per verification choice for every checker: loading the CA store is costly."""
    if verify not in _contexts:
        ctx = ssl.create_default_context()
        if not verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        _contexts[verify] = ctx
    return _contexts[verify]


def _host_field(text: str) -> str:
    """check.host as a header value: no control characters, a non-ASCII name in IDNA form."""
    text = "".join(c for c in text if " " <= c != "\x7f")
    if not text.isascii():
        try:
            text = text.encode("idna").decode("ascii")
        except UnicodeError:
            text = text.encode("ascii", "replace").decode("ascii")
    return text


def request_bytes(check: HealthCheck, target: Target) -> bytes:
    """The GET, built once. Host: check.host, else the address with the port unless it is the
    scheme's default."""
    default_port = 443 if check.type == CheckType.HTTPS else 80
    host = f"[{target.address}]" if target.address.version == 6 else str(target.address)
    if check.host:
        host = _host_field(check.host)
    elif target.port != default_port:
        host = f"{host}:{target.port}"
    path = quote(check.path, safe=_PATH_SAFE)
    return (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: xdplb-health-check\r\n"
            "Accept: */*\r\n\r\n").encode("ascii")


def status_ranges(check: HealthCheck) -> tuple[tuple[int, int], ...]:
    """check.status as (low, high) pairs, parsed once rather than at every check."""
    ranges = []
    for item in check.status:
        low, _, high = item.partition("-")
        ranges.append((int(low), int(high or low)))
    return tuple(ranges)


class HttpChecker(BaseChecker):
    def __init__(self, check: HealthCheck, target: Target) -> None:
        super().__init__(check, target)
        self.request = request_bytes(check, target)
        self.tls = check.type == CheckType.HTTPS
        self.ranges = status_ranges(check)
        self.body_regex = re.compile(check.body_regex) if check.body_regex else None
        self.digest = check.digest.lower() if check.digest else None
        self._conn: Connection | None = None
        self.connections = 0  # opened so far (keep-alive shows as few)

    async def probe(self) -> Result:
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            if self._conn is not None and not self._conn.closed:
                try:
                    return self._judge(await self._exchange(), loop.time() - start)
                except _Stale:
                    self._drop()
            await self._connect()
            try:
                return self._judge(await self._exchange(), loop.time() - start)
            except _Stale:
                raise CheckFailed(self._closed_reason()) from None
        except BaseException:  # a failed or cancelled exchange leaves the connection in an unknown state
            self._drop()
            raise

    async def _connect(self) -> None:
        try:
            sock = await tcp.connect(self.target, self.config.source)
        except OSError as e:
            raise CheckFailed(os_reason("connect", e)) from None
        kwargs = {}
        if self.tls:
            verify = self.config.verify_tls
            host = self.config.host or (str(self.target.address) if verify else "")  # "": no SNI, no name check
            kwargs = {"ssl": tls_context(verify), "server_hostname": host,
                      "ssl_handshake_timeout": self.config.timeout}
        try:
            _, self._conn = await asyncio.get_running_loop().create_connection(Connection, sock=sock, **kwargs)
        except OSError as e:
            sock.close()
            raise CheckFailed(os_reason("TLS handshake" if self.tls else "connect", e)) from None
        self.connections += 1

    async def _exchange(self) -> ResponseParser:
        conn = self._conn
        assert conn is not None
        parser = ResponseParser(Body(self.body_regex is not None, self.digest is not None))
        if not await conn.exchange(self.request, parser):
            self._close()
        return parser

    def _judge(self, parser: ResponseParser, elapsed: float) -> Result:
        status = parser.head.status if parser.head else 0
        if not any(low <= status <= high for low, high in self.ranges):
            return Result(False, f"HTTP {status} (expected {','.join(self.config.status)})")
        body = parser.body
        if self.body_regex is not None and not self.body_regex.search(body.data.decode("utf-8", "replace")):
            return Result(False, f"HTTP {status}: the body does not match {self.config.body_regex!r}")
        if body.md5 is not None and body.md5.hexdigest() != self.digest:
            return Result(False, f"HTTP {status}: body MD5 {body.md5.hexdigest()}, expected {self.digest}")
        return Result(True, f"HTTP {status} in {ms(elapsed)}")

    def _closed_reason(self) -> str:
        error = self._conn.error if self._conn else None
        if isinstance(error, OSError):
            return os_reason("receive", error)
        return "receive: connection closed before the response"

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.abort()
        self._conn = None

    async def close(self) -> None:
        self._close()
