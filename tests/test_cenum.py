"""Python reads the C enums from bpf/lib/structs.h; here, that the reading is right."""

from __future__ import annotations

from pathlib import Path

import pytest

from xdplb.cenum import enum_values, parse_enums

STRUCTS_H = Path(__file__).resolve().parent.parent / "bpf" / "lib" / "structs.h"

pytestmark = [pytest.mark.datapath, pytest.mark.unit]


def test_parse_enums_values_and_comments():
    text = """
    enum a { X = 0, Y, /* Y is 1 */ Z = 0x10, W, // W is 17
    };
    enum b { P = 4 };
    """
    assert parse_enums(text) == {"a": {"X": 0, "Y": 1, "Z": 16, "W": 17}, "b": {"P": 4}}


def test_header_enums_are_dense_and_known():
    counters = enum_values(STRUCTS_H, "xdplb_counter", "CNT_")
    assert list(counters.values()) == list(range(len(counters)))
    assert list(counters)[-1] == "max"
    assert {"rr", "wrr", "sh", "mh"} <= set(enum_values(STRUCTS_H, "xdplb_sched", "LB_SCHED_"))
