"""Which backend a flow goes to, and the frame the balancer would send: the real program run on a
built frame, marked as a simulation so it changes nothing."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from xdplb import frames
from xdplb.api.deps import Context, ReadAccess
from xdplb.api.schemas import SimulationView
from xdplb.model import Protocol

router = APIRouter(prefix="/v1/simulate", tags=["simulate"])


@router.get("", dependencies=[ReadAccess])
def simulate(
    ctx: Context,
    source: Annotated[str, Query(description="the client: ADDRESS:PORT ([v6]:port)")],
    destination: Annotated[str, Query(description="the VIP: ADDRESS:PORT")],
    protocol: Annotated[Protocol, Query()] = Protocol.TCP,
    tcp_flags: Annotated[str, Query(pattern="^[FSRPAUEC]{1,8}$", description="S: a new connection")] = "S",
) -> SimulationView:
    try:
        frame = frames.first_packet(frames.parse_endpoint(source), frames.parse_endpoint(destination),
                                    protocol, tcp_flags)
    except ValueError as e:
        raise HTTPException(422, str(e)) from None
    dp = ctx.manager.dp
    with dp.lock:
        sim = dp.simulate(frame, ingress_ifindex=ctx.ingress_ifindex)
    return SimulationView(
        verdict=sim.verdict, reason=sim.reason, service=sim.service.id if sim.service else None,
        backend=str(sim.backend) if sim.backend else None, frame_in=frame.hex(), frame_out=sim.frame.hex(),
        summary_in=frames.summary(frame), summary_out=frames.summary(sim.frame),
    )
