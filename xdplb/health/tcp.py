"""TCP check (keepalived TCP_CHECK): the backend accepts a connection within the timeout.

Also the sockets the other network checkers start from: non-blocking, bound to the check's source
address when it has one. A bound socket asks the kernel for its port only at connect time
(IP_BIND_ADDRESS_NO_PORT), so thousands of checks from one source address do not run out of ports
(a port chosen at bind time is one per socket, whatever the destination).
"""

from __future__ import annotations

import asyncio
import socket
import struct

from xdplb.checks import HealthCheck
from xdplb.health.probe import BaseChecker, CheckFailed, IPAddress, Result, Target, ms, os_reason

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)  # linux/in.h


def new_socket(target: Target, source: IPAddress | None, kind: socket.SocketKind) -> socket.socket:
    """A non-blocking socket of the target's family, bound to `source` if given."""
    if source is not None and source.version != target.address.version:
        raise CheckFailed(f"source {source} is IPv{source.version}, the target {target.address} "
                          f"IPv{target.address.version}")
    sock = socket.socket(socket.AF_INET6 if target.address.version == 6 else socket.AF_INET, kind)
    try:
        sock.setblocking(False)
        if source is not None:
            if kind == socket.SOCK_STREAM:
                sock.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((str(source), 0))
    except OSError as e:
        sock.close()
        raise CheckFailed(os_reason(f"bind {source}", e)) from None
    except BaseException:
        sock.close()
        raise
    return sock


async def connect(target: Target, source: IPAddress | None) -> socket.socket:
    """A connected TCP socket; OSError (refused, unreachable...) as the kernel says it."""
    sock = new_socket(target, source, socket.SOCK_STREAM)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (str(target.address), target.port))
    except BaseException:
        sock.close()
        raise
    return sock


_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a RST


class TcpChecker(BaseChecker):
    """Connects, then closes with a RST rather than a FIN: the director keeps no TIME_WAIT socket
    per check (1,000 checks a second would hold 60,000 of them)."""

    def __init__(self, check: HealthCheck, target: Target) -> None:
        super().__init__(check, target)
        self.address = (str(target.address), target.port)

    async def probe(self) -> Result:
        loop = asyncio.get_running_loop()
        start = loop.time()
        sock = new_socket(self.target, self.config.source, socket.SOCK_STREAM)
        try:
            await loop.sock_connect(sock, self.address)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
        except OSError as e:
            raise CheckFailed(os_reason("connect", e)) from None
        finally:
            sock.close()
        return Result(True, f"connected in {ms(loop.time() - start)}")
