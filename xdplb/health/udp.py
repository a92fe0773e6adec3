"""UDP check (keepalived UDP_CHECK): one datagram to the backend on a connected socket.

The payload is text sent as UTF-8, or bytes written in hex after a `hex:` prefix
(`hex:0001 0000` sends 00 01 00 00; spaces are ignored). With `expect`, the answer must come within
the timeout and match that regular expression, searched in the answer decoded as Latin-1 (one
character per byte, so any bytes can be matched: `\\x00` is a zero byte). Without it, an answer or
silence until the timeout both count as up; only an ICMP port unreachable, which the kernel reports
on a connected socket as ECONNREFUSED, is down.
"""

from __future__ import annotations

import asyncio
import re
import socket

from xdplb.checks import HealthCheck
from xdplb.health.probe import BaseChecker, CheckFailed, Result, Target, ms, os_reason, seconds
from xdplb.health.tcp import new_socket

HEX_PREFIX = "hex:"
MAX_DATAGRAM = 65535


def parse_payload(text: str) -> bytes:
    """What a check's payload sends; ValueError for bad hex."""
    if text.startswith(HEX_PREFIX):
        try:
            return bytes.fromhex(text[len(HEX_PREFIX):])
        except ValueError as e:
            raise ValueError(f"payload {text!r}: {e}") from None
    return text.encode("utf-8")


class UdpChecker(BaseChecker):
    def __init__(self, check: HealthCheck, target: Target) -> None:
        super().__init__(check, target)
        try:
            self.payload: bytes | None = parse_payload(check.payload)
            self.payload_error = ""
        except ValueError as e:  # reported by every check rather than raised from the factory
            self.payload, self.payload_error = None, str(e)
        self.expect = re.compile(check.expect) if check.expect is not None else None
        self._sent = False

    async def probe(self) -> Result:
        if self.payload is None:
            raise CheckFailed(self.payload_error)
        loop = asyncio.get_running_loop()
        self._sent = False
        sock = new_socket(self.target, self.config.source, socket.SOCK_DGRAM)
        try:
            try:
                sock.connect((str(self.target.address), self.target.port))  # UDP: no packet, no wait
                await loop.sock_sendall(sock, self.payload)
            except OSError as e:
                raise CheckFailed(os_reason("send", e)) from None
            self._sent = True
            start = loop.time()
            try:
                answer = await loop.sock_recv(sock, MAX_DATAGRAM)
            except ConnectionRefusedError:
                raise CheckFailed("ICMP port unreachable") from None
            except OSError as e:
                raise CheckFailed(os_reason("receive", e)) from None
            return self._judge(answer, loop.time() - start)
        finally:
            sock.close()

    def _judge(self, answer: bytes, elapsed: float) -> Result:
        if self.expect is None or self.expect.search(answer.decode("latin-1")):
            return Result(True, f"answered in {ms(elapsed)}")
        return Result(False, f"answer {answer[:40]!r} does not match {self.config.expect!r}")

    def on_timeout(self) -> Result:
        if not self._sent:
            return super().on_timeout()
        wait = seconds(self.config.timeout)
        if self.expect is None:
            return Result(True, f"no answer in {wait}, none required, no ICMP unreachable")
        return Result(False, f"no answer in {wait}")
