"""Packet capture: a pcap of what the balancer receives and sends for a service or a flow, streamed
as it is taken (tcpdump sees neither the frames XDP sends back out nor those it drops)."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import StreamingResponse

from xdplb.api.deps import Context, ReadAccess
from xdplb.capture import Capture, CaptureBusy, CaptureFilter, pcap_header, pcap_record
from xdplb.model import Protocol, parse_key

router = APIRouter(prefix="/v1/capture", tags=["capture"])
PCAP = "application/vnd.tcpdump.pcap"


@router.get("", dependencies=[ReadAccess], response_class=StreamingResponse,
            responses={200: {"content": {PCAP: {}}, "description": "a pcap file, streamed"},
                       409: {"description": "another capture is running"}})
def capture(
    ctx: Context,
    service: Annotated[str | None, Query(description="a service id")] = None,
    client: Annotated[str | None, Query(description="a client address")] = None,
    client_port: Annotated[int | None, Query(ge=0, le=65535)] = None,
    protocol: Annotated[Protocol | None, Query()] = None,
    count: Annotated[int, Query(ge=1, le=1_000_000, description="stop after this many frames")] = 100,
    seconds: Annotated[float, Query(gt=0, le=3600, description="stop after this long")] = 10.0,
    rate: Annotated[int, Query(ge=1, le=1_000_000, description="at most this many frames a second")] = 1000,
    snaplen: Annotated[int, Query(ge=64, le=2048)] = 2048,
) -> StreamingResponse:
    """Each forwarded frame comes twice: as received, then as sent (rewritten or encapsulated); a
    frame passed or dropped comes once. The stream ends after `count` frames or `seconds`."""
    manager = ctx.manager
    try:
        flt = CaptureFilter(
            service_id=manager.dp.service_id(parse_key(service)) if service else None,
            client=ipaddress.ip_address(client) if client else None, client_port=client_port,
            protocol=protocol.number if protocol else None)
    except KeyError:
        raise HTTPException(404, f"no service {service}") from None
    except ValueError as e:
        raise HTTPException(422, str(e)) from None
    try:
        cap = manager.dp.capture(flt, rate, snaplen)
    except CaptureBusy as e:
        raise HTTPException(409, str(e)) from None
    return StreamingResponse(_stream(cap, count, seconds, snaplen), media_type=PCAP,
                             headers={"Content-Disposition": 'attachment; filename="xdplb.pcap"'})


def _stream(cap: Capture, count: int, seconds: float, snaplen: int) -> Iterator[bytes]:
    """Runs in a worker thread; the capture is closed when it ends, or when the client goes away."""
    try:
        yield pcap_header(snaplen)
        sent, end = 0, time.monotonic() + seconds
        while sent < count and (left := end - time.monotonic()) > 0:
            records = cap.poll(timeout_ms=int(min(left, 0.2) * 1000))[:count - sent]
            if records:
                sent += len(records)
                yield b"".join(pcap_record(r, snaplen) for r in records)
    finally:
        cap.close()
