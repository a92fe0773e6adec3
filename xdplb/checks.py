"""Health checks as configured: keepalived's checkers (TCP_CHECK, HTTP_GET, SSL_GET, UDP, MISC_CHECK)
with the rise/fall hysteresis keepalived's real-server checks lack, and what a service does with
the verdicts (inhibit, keep or reschedule connections, the sorry server, quorum, hooks).

A check is set on a service (for each of its backends) or on one backend (which then overrides the
service's). Hooks are argument lists, never run through a shell.
"""

from __future__ import annotations

import re
from enum import StrEnum
from ipaddress import IPv4Address, IPv6Address
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

IPAddress = IPv4Address | IPv6Address
Argv = Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]
_STATUS = re.compile(r"(\d{3})(?:-(\d{3}))?")


class CheckType(StrEnum):
    TCP = "tcp"      # keepalived TCP_CHECK: a connect
    HTTP = "http"    # HTTP_GET
    HTTPS = "https"  # SSL_GET
    UDP = "udp"      # UDP_CHECK: a datagram, optionally an expected answer
    MISC = "misc"    # MISC_CHECK: a program; its exit code says up/down, or gives the weight


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HealthCheck(_Strict):
    type: CheckType
    interval: float = Field(1.0, ge=0.05, le=3600, description="seconds between checks (keepalived delay_loop)")
    timeout: float = Field(1.0, gt=0, le=600, description="seconds a check may take (connect_timeout)")
    rise: int = Field(2, ge=1, le=100, description="successes in a row that bring a down backend up")
    fall: int = Field(2, ge=1, le=100, description="failures in a row that take an up backend down (retry)")
    warmup: float = Field(0.0, ge=0, le=3600, description="seconds before the first check, spread at random "
                          "up to this so checks do not all start together")
    source: IPAddress | None = Field(None, description="source address of the check (keepalived bindto)")
    address: IPAddress | None = Field(None, description="address to check, when not the backend's (connect_ip)")
    port: int | None = Field(None, ge=1, le=65535, description="port to check, when not the service's (connect_port)")
    # HTTP, HTTPS
    path: str = Field("/", pattern=r"^/", description="HTTP: the URL path")
    host: str | None = Field(None, description="HTTP: the Host header (virtualhost)")
    status: list[str] = Field(["200-299"], min_length=1, description="HTTP: expected status codes or ranges")
    body_regex: str | None = Field(None, description="HTTP: the body must match this regular expression")
    digest: str | None = Field(None, pattern=r"^[0-9a-fA-F]{32}$",
                               description="HTTP: MD5 of the body, as keepalived's digest")
    verify_tls: bool = Field(True, description="HTTPS: verify the server's certificate")
    # UDP
    payload: str = Field("", description="UDP: what to send")
    expect: str | None = Field(None, description="UDP: a regular expression the answer must match; None: any "
                               "answer, or none before the timeout, is up (an ICMP unreachable is down)")
    # MISC
    command: Argv | None = Field(None, description="MISC: the program and its arguments, run without a shell")
    dynamic: bool = Field(False, description="MISC: exit code 0 up at the configured weight, 1 down, 2-255 up at "
                          "weight code-2 (keepalived misc_dynamic)")
    notify: Argv | None = Field(None, description="run on each transition, with these arguments followed by the "
                                "service id, the backend, up|down and the reason")

    @field_validator("status")
    @classmethod
    def _codes(cls, v: list[str]) -> list[str]:
        for item in v:
            m = _STATUS.fullmatch(item)
            if not m or (m[2] and int(m[2]) < int(m[1])) or not 100 <= int(m[1]) <= 599:
                raise ValueError(f"status {item!r}: give a code (200) or a range (200-299) between 100 and 599")
        return v

    @field_validator("body_regex", "expect")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as e:
                raise ValueError(f"{v!r} is not a regular expression: {e}") from None
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.type == CheckType.MISC and not self.command:
            raise ValueError("a misc check needs a command")
        if self.type != CheckType.MISC and (self.command or self.dynamic):
            raise ValueError(f"command and dynamic are for misc checks, not {self.type}")
        return self


class OnDown(StrEnum):
    """What a service does with a backend its check found down."""

    REMOVE = "remove"  # out of the scheduling tables; its connections follow expire_nodest (rescheduled)
    KEEP = "keep"      # weight 0: no new connections, established ones go on (every backend inhibit_on_failure)


class Quorum(_Strict):
    """keepalived's quorum: below `up` total weight of live backends (less `hysteresis` once reached),
    the service is short; the sorry server, if any, takes its traffic then."""

    weight: int = Field(1, ge=1, description="total weight of the live backends the service needs")
    hysteresis: int = Field(0, ge=0)
    on_up: Argv | None = Field(None, description="run when the quorum is reached (service id appended)")
    on_down: Argv | None = Field(None, description="run when it is lost (service id appended)")
