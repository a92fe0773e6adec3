"""What the API reads and writes beyond the models of xdplb/model.py (which it uses as they are)."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, computed_field

from xdplb.checks import HealthCheck
from xdplb.config_types import Name
from xdplb.diff import StateDiff
from xdplb.manager import Change
from xdplb.model import Count, Port, Service, Timeouts, Tunnel, Weight


class ServiceView(Service):
    """A service as the API shows it: with its id, the name the URLs use."""

    @computed_field(description="tcp:VIP:PORT, udp:VIP:PORT or fwm:MARK")
    @property
    def id(self) -> str:
        return super().id

    @classmethod
    def of(cls, service: Service) -> Self:
        return cls.model_validate(service.model_dump())


class BackendPatch(BaseModel):
    """The fields of a backend to change; the others stay (a tunnel or check given as null is removed)."""

    model_config = ConfigDict(extra="forbid")

    weight: Weight | None = None
    port: Port | None = None
    upper_threshold: Count | None = None
    lower_threshold: Count | None = None
    tunnel: Tunnel | None = None
    inhibit_on_failure: bool | None = None
    check: HealthCheck | None = Field(None, description="its own health check; null removes it (the service's "
                                      "applies again)")


class ConfigDocument(BaseModel):
    """The whole configuration: what `PUT /v1/config` replaces all-or-nothing."""

    model_config = ConfigDict(extra="forbid")

    services: list[Service] = []
    timeouts: Timeouts | None = Field(None, description="absent: the timeouts stay as they are")


class ConfigView(BaseModel):
    version: int
    services: list[ServiceView]
    timeouts: Timeouts


class ChangeView(BaseModel):
    """What a change did: the state's version after it, and the difference it made (or would make)."""

    version: int
    dry_run: bool
    diff: StateDiff
    written: dict[str, int] = Field({}, description="map entries written, by table")

    @classmethod
    def of(cls, change: Change) -> Self:
        return cls(version=change.version, dry_run=change.dry_run, diff=change.diff, written=change.written)


class Counters(BaseModel):
    """ipvsadm --stats: totals since the service (or backend) was added."""

    conns: int
    in_pkts: int
    out_pkts: int
    in_bytes: int
    out_bytes: int


class Rates(BaseModel):
    """ipvsadm --rate: per second, smoothed like IPVS's estimator (2 s samples)."""

    cps: float
    inpps: float
    outpps: float
    inbps: float
    outbps: float


class BackendStatsView(BaseModel):
    address: str
    port: int
    weight: int
    active: int = Field(description="ActiveConn: established connections")
    inactive: int = Field(description="InActConn: half-open and closing ones")
    stats: Counters
    rates: Rates | None = None


class ServiceStatsView(BaseModel):
    id: str
    scheduler: str
    method: str
    persistence: int | None = Field(None, description="persistence timeout, seconds")
    stats: Counters
    rates: Rates | None = None
    backends: list[BackendStatsView]


class ConnectionView(BaseModel):
    """One row of ipvsadm -Lc."""

    protocol: str
    client: str
    client_port: int
    virtual: str
    virtual_port: int
    backend: str | None
    state: str
    idle_s: float


class ConnectionPage(BaseModel):
    total: int = Field(description="rows matching the filter")
    offset: int
    items: list[ConnectionView]


class SimulationView(BaseModel):
    verdict: str = Field(description="the XDP action: TX, REDIRECT, PASS, DROP")
    reason: str = Field(description="why: the data plane's counter it would move")
    service: str | None = Field(description="id of the service the frame matched")
    backend: str | None
    frame_in: str = Field(description="the frame simulated, hex")
    frame_out: str = Field(description="the frame the balancer would send, hex")
    summary_in: str
    summary_out: str


class BackendHealth(BaseModel):
    service: str
    backend: str
    up: bool
    state: str = Field(description="up or down")
    check: str = Field(description="the check's type")
    reason: str = Field(description="why it is in this state: the last result")
    weight: int | None = Field(description="a MISC dynamic check's weight")
    since: float | None = Field(description="Unix time of the last transition")
    checked: float | None = Field(description="Unix time of the last result")
    successes: int
    failures: int


# ---- high availability: the VRRP speaker (xdplb/vrrp) ---------------------------------------------

VrrpState = Literal["init", "backup", "master", "fault"]
InstanceName = Annotated[Name | None, Field(description="one VRRP instance; null: every instance")]


class HaFailover(BaseModel):
    """`hand-over`: priority 1 and a priority 0 advert, a peer takes over at once and is not preempted
    back; `take-over`: one above the master's priority, master now; `auto`: neither, the configured
    priority again."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["hand-over", "take-over", "auto"]
    instance: InstanceName = None


class HaPriority(BaseModel):
    """The instance's priority (the configured one until the speaker restarts); clears a failover."""

    model_config = ConfigDict(extra="forbid")

    priority: Annotated[StrictInt, Field(ge=1, le=255, description="255: the address owner, master at once")]
    instance: InstanceName = None


class HaMaintenance(BaseModel):
    """Maintenance on: never master (a master hands over now); off: back to the election."""

    model_config = ConfigDict(extra="forbid")

    on: StrictBool
    instance: InstanceName = None


class VrrpTransition(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    at: float = Field(description="Unix time")
    from_: VrrpState = Field(alias="from")
    to: VrrpState
    reason: str


class VrrpCounters(BaseModel):
    """Since the speaker started; the speaker may count more than these."""

    model_config = ConfigDict(extra="allow")

    adverts_sent: int = 0
    adverts_received: int = 0
    send_errors: int = 0
    transitions: int = 0
    became_master: int = 0
    address_mismatch: int = Field(0, description="adverts whose addresses differ from ours (accepted)")
    announcements: int = Field(0, description="gratuitous ARPs and unsolicited NAs sent")
    invalid: dict[str, int] = Field({}, description="adverts dropped, by reason")


class VrrpInstanceStatus(BaseModel):
    name: str
    interface: str
    vrid: int
    family: int
    state: VrrpState
    priority: int = Field(description="configured, or set by the operator")
    effective_priority: int = Field(description="what it advertises: tracking and failover applied; 0 in "
                                    "maintenance")
    override: str | None = Field(description="a failover in force: hand-over or take-over")
    maintenance: bool
    faults: list[str] = Field(description="what keeps it in fault")
    degraded: list[str] = Field(description="what lowers its priority")
    master: str | None = Field(description="the master's address (ours when master); null when unknown")
    master_priority: int | None
    source: str | None = Field(description="the address it advertises from")
    advert_interval: float
    preempt: bool
    addresses: list[str]
    since: float = Field(description="Unix time of the last transition")
    transitions: list[VrrpTransition] = Field(description="the last ones, oldest first")
    counters: VrrpCounters


class HaStatus(BaseModel):
    pid: int = Field(description="the speaker's process")
    started: float
    services_down: list[str] = Field(description="tracked services the daemon says lost their quorum")
    instances: list[VrrpInstanceStatus]
