"""Small validated types shared by the configuration's sections (xdplb.config, xdplb.vrrp.config)."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

IFNAME = re.compile(r"[^/:\s]{1,15}")  # the kernel's dev_valid_name: under IFNAMSIZ, no '/', ':' or space
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")  # a path component under bpffs (no dots there) and /var/lib


def _ifname(name: str) -> str:
    if not IFNAME.fullmatch(name) or name in (".", ".."):
        raise ValueError(f"{name!r} is not an interface name")
    return name


def _name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise ValueError(f"name {name!r}: letters, digits, '_', '-' (up to 64)")
    return name


IfName = Annotated[str, AfterValidator(_ifname)]
Name = Annotated[str, AfterValidator(_name)]
