"""Python reads the C enums from bpf/lib/structs.h; here, that the reading is right."""

from __future__ import annotations

import pytest

from xdplb.cenum import parse_enums
from xdplb.datapath import COUNTERS, SCHEDULERS

pytestmark = [pytest.mark.datapath, pytest.mark.unit]


def test_parse_enums_values_and_comments():
    text = """
    enum a { X = 0, Y, /* Y is 1 */ Z = 0x10, W, // W is 17
    };
    enum b { P = 4 };
    """
    assert parse_enums(text) == {"a": {"X": 0, "Y": 1, "Z": 16, "W": 17}, "b": {"P": 4}}


def test_header_enums_are_dense_and_known():
    assert list(COUNTERS.values()) == list(range(len(COUNTERS)))
    assert {"rr", "wrr", "sh", "mh"} <= set(SCHEDULERS)
