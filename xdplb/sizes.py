"""The data plane's compile-time sizes (bpf/lib/maps.h), passed to the compiler with -D. Apart from
xdplb/datapath.py so the configuration file validates them, field by field, without importing BCC."""

from __future__ import annotations

from dataclasses import fields

from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass

from xdplb import maglev, schedule

LC_MAX_LOADABLE = 1024  # the most backends the verifier accepts in the lc scan here (kernel 6.18)


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class Sizes:
    """Compile-time sizes of the maps (bpf/lib/maps.h), passed to the compiler with -D."""

    max_services: int = Field(64, ge=1)
    max_vips: int = Field(256, ge=1)
    max_backends: int = Field(4096, ge=1)
    ring_max: int = Field(maglev.DEFAULT_SIZE, ge=7)
    seq_max: int = Field(4096, ge=schedule.SH_BUCKETS, description="holds sh's buckets")
    conn_max: int = Field(1 << 20, ge=1)
    syn_max: int = Field(1 << 18, ge=1)
    persist_max: int = Field(1 << 18, ge=1)
    max_tx_ports: int = Field(64, ge=1)
    max_exthdr: int = Field(4, ge=1)
    lc_max: int = Field(LC_MAX_LOADABLE, ge=1, le=LC_MAX_LOADABLE, description="more does not pass the verifier")

    def cflags(self) -> list[str]:
        return [f"-DXDPLB_{f.name.upper()}={getattr(self, f.name)}" for f in fields(self)]
