"""Facts about the running kernel the data plane depends on: its tick rate and current jiffies."""

from __future__ import annotations

import gzip
import logging
import platform
import re
from functools import cache
from pathlib import Path

log = logging.getLogger(__name__)
_DEFAULT_HZ = 250


@cache
def hz() -> int:
    """CONFIG_HZ: the unit of bpf_jiffies64(), so of every connection's last-seen time."""
    candidates = [Path("/proc/config.gz"), Path(f"/boot/config-{platform.release()}")]
    for path in candidates:
        if path.exists():
            text = gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()
            m = re.search(r"^CONFIG_HZ=(\d+)$", text, re.M)
            if m:
                return int(m.group(1))
    log.warning("kernel config not readable: assuming HZ=%d", _DEFAULT_HZ)
    return _DEFAULT_HZ


def jiffies() -> int:
    """The kernel's jiffies counter now, as bpf_jiffies64() reads it."""
    with open("/proc/timer_list") as f:
        for line in f:
            if line.startswith("jiffies:"):
                return int(line.split()[1])
    raise RuntimeError("no jiffies line in /proc/timer_list")
