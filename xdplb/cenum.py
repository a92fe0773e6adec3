"""Enums of bpf/lib/structs.h, read from the header itself so Python never restates a value."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

_ENUM = re.compile(r"enum\s+(\w+)\s*\{(.*?)\};", re.S)
_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)


def parse_enums(text: str) -> dict[str, dict[str, int]]:
    """Every `enum name { A = 1, B, ... }` in C text, as {enum name: {member: value}}."""
    enums: dict[str, dict[str, int]] = {}
    for name, body in _ENUM.findall(_COMMENT.sub("", text)):
        members: dict[str, int] = {}
        value = -1
        for item in filter(None, (part.strip() for part in body.split(","))):
            member, _, expr = (s.strip() for s in item.partition("="))
            value = int(expr, 0) if expr else value + 1
            members[member] = value
        enums[name] = members
    return enums


@cache
def header_enums(header: Path) -> dict[str, dict[str, int]]:
    return parse_enums(header.read_text())


def enum_values(header: Path, enum: str, prefix: str) -> dict[str, int]:
    """Members of one enum with `prefix` stripped and lower-cased: {"rr": 0, "wrr": 1, ...}."""
    return {k.removeprefix(prefix).lower(): v for k, v in header_enums(header)[enum].items()}
