"""What every health checker is: one interface (Checker), its result (Result), what it checks
(Target), and the factory that picks the checker of a HealthCheck's type (one module per type).

A checker never raises: a refused connection, a wrong status, a timeout, a crash of the checker
itself all come back as Result(ok=False, reason=...), a reason written for people. The base class
gives every checker the same timeout and the same error wording.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import ssl
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Protocol

from xdplb.checks import CheckType, HealthCheck

log = logging.getLogger(__name__)

IPAddress = IPv4Address | IPv6Address


@dataclass(frozen=True)
class Target:
    address: IPAddress  # what to connect to (check.address or the backend's)
    port: int           # check.port or the service's port (backend.port for NAT)

    def __str__(self) -> str:
        host = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class Result:
    ok: bool
    reason: str                # for people: "connected in 0.8 ms", "HTTP 503 (expected 200-299)", ...
    weight: int | None = None  # MISC dynamic: the weight it gives (None: the configured one)
    elapsed: float = 0.0       # seconds the check took


class Checker(Protocol):
    async def check(self) -> Result:
        """One check. Never raises: every failure is a Result(ok=False, reason=...)."""
        ...

    async def close(self) -> None:
        """Release what the checker keeps between checks (keep-alive connections)."""
        ...


class CheckFailed(Exception):
    """Raised inside a checker with the reason of a failed check."""


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def seconds(value: float) -> str:
    """1.0 s, 0.25 s: one decimal at least, as many as the value has."""
    return f"{value:.1f} s" if value == round(value, 1) else f"{value:g} s"


def os_reason(stage: str, e: OSError) -> str:
    """`connect: Connection refused`: the errno's text rather than Python's wording of it."""
    if isinstance(e, ssl.SSLCertVerificationError):
        return f"{stage}: TLS certificate: {e.verify_message}"
    if isinstance(e, ssl.SSLError):
        return f"{stage}: TLS: {e.reason or e}"
    if e.errno is not None and e.errno in errno.errorcode:
        return f"{stage}: {os.strerror(e.errno)}"
    return f"{stage}: {e or type(e).__name__}"


class BaseChecker:
    """The frame of every checker: `probe()` does the work and returns or raises; `check()` bounds
    it by the check's timeout, times it and turns every exception into a failed Result."""

    def __init__(self, check: HealthCheck, target: Target) -> None:
        self.config, self.target = check, target

    async def probe(self) -> Result:
        raise NotImplementedError

    def on_timeout(self) -> Result:
        return Result(False, f"timed out after {seconds(self.config.timeout)}")

    async def check(self) -> Result:
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            async with asyncio.timeout(self.config.timeout):
                result = await self.probe()
        except TimeoutError:
            result = self.on_timeout()
        except CheckFailed as e:
            result = Result(False, str(e))
        except OSError as e:
            result = Result(False, os_reason("connect", e))
        except Exception as e:  # a checker's bug must not stop the monitor: it is a failed check
            log.exception("%s check of %s failed unexpectedly", self.config.type, self.target)
            result = Result(False, f"checker error: {type(e).__name__}: {e}")
        return Result(result.ok, result.reason, result.weight, loop.time() - start)

    async def close(self) -> None:
        return None


def make_checker(check: HealthCheck, target: Target) -> Checker:
    """The checker of the check's type for one target (keepalived's checker table)."""
    from xdplb.health import http, misc, tcp, udp  # here: they build on this module

    table: dict[CheckType, type[BaseChecker]] = {
        CheckType.TCP: tcp.TcpChecker,
        CheckType.HTTP: http.HttpChecker,
        CheckType.HTTPS: http.HttpChecker,
        CheckType.UDP: udp.UdpChecker,
        CheckType.MISC: misc.MiscChecker,
    }
    return table[check.type](check, target)
