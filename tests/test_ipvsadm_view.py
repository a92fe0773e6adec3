"""The ipvsadm views, column for column against ipvsadm's own printf formats (ipvsadm.c: print_title,
print_service_entry, print_largenum, print_conn): known API documents in, exact text out."""

from __future__ import annotations

import pytest

from xdplb.ipvsadm_view import View, conn_state, connections, expire, largenum, listing, version_line

pytestmark = [pytest.mark.api, pytest.mark.unit]

WEB = {"id": "tcp:10.100.0.100:80", "protocol": "tcp", "vip": "10.100.0.100", "port": 80, "scheduler": "wlc",
       "method": "dr", "sched_flags": [], "persistence": {"timeout": 300, "netmask": 24}, "fwmark": None,
       "backends": [{"address": "10.100.1.12", "weight": 1, "port": None},
                    {"address": "10.100.1.11", "weight": 3, "port": None}]}
TLS = {"id": "tcp:10.100.0.100:443", "protocol": "tcp", "vip": "10.100.0.100", "port": 443, "scheduler": "rr",
       "method": "nat", "sched_flags": [], "persistence": None, "fwmark": None,
       "backends": [{"address": "10.100.2.1", "weight": 0, "port": 8443}]}
DNS6 = {"id": "udp:[2001:db8::100]:53", "protocol": "udp", "vip": "2001:db8::100", "port": 53, "scheduler": "sh",
        "method": "tun", "sched_flags": ["sh-port"], "persistence": {"timeout": 60, "netmask": 64}, "fwmark": None,
        "backends": [{"address": "2001:db8:1::11", "weight": 2, "port": None}]}
FWM = {"id": "fwm:7", "protocol": "tcp", "vip": "10.100.0.200", "port": 80, "scheduler": "wrr", "method": "dr",
       "sched_flags": [], "persistence": {"timeout": 600, "netmask": 32}, "fwmark": 7,
       "backends": [{"address": "10.100.1.13", "weight": 1, "port": None}]}


def _counters(conns: int, in_pkts: int, out_pkts: int, in_bytes: int, out_bytes: int) -> dict:
    return {"conns": conns, "in_pkts": in_pkts, "out_pkts": out_pkts, "in_bytes": in_bytes, "out_bytes": out_bytes}


STATS = [
    {"id": "tcp:10.100.0.100:80", "stats": _counters(3, 99_999_999, 0, 100_000_000, 999_999_999),
     "rates": {"cps": 12.4, "inpps": 300.0, "outpps": 0.0, "inbps": 123_456_789.0, "outbps": 0.0},
     "backends": [
         {"address": "10.100.1.11", "active": 2, "inactive": 1, "stats": _counters(2, 5, 0, 300, 0),
          "rates": {"cps": 2.6, "inpps": 7.0, "outpps": 0.0, "inbps": 1_000_000_000.0, "outbps": 0.0}},
         {"address": "10.100.1.12", "active": 0, "inactive": 0, "stats": _counters(1, 1, 0, 60, 0), "rates": None}]},
    {"id": "udp:[2001:db8::100]:53", "stats": _counters(1, 1, 0, 1_000_000_000, 99_999_999_999), "rates": None,
     "backends": [{"address": "2001:db8:1::11", "active": 0, "inactive": 4,
                   "stats": _counters(1, 1, 0, 100_000_000_000, 10**14), "rates": None}]},
]


@pytest.mark.parametrize(("n", "text"), [
    (0, "        0"), (99_999_999, " 99999999"), (100_000_000, "  100000K"), (999_999_999, "  999999K"),
    (1_000_000_000, "    1000M"), (99_999_999_999, "   99999M"), (100_000_000_000, "     100G"),
    (99_999_999_999_999, "   99999G"), (10**14, "     100T"),
])
def test_largenum_suffix_thresholds(n, text):
    assert largenum(n) == text


def test_largenum_exact_widens_past_eight_digits():
    assert largenum(12, exact=True) == "       12"
    assert largenum(123_456_789, exact=True) == " 123456789"


def test_plain_listing_like_ipvsadm_ln():
    text = listing([DNS6, TLS, WEB, FWM], STATS, View.PLAIN, header=version_line("0.1.0", 4096))
    assert text.split("\n") == [
        "IP Virtual Server version 0.1.0 (size=4096)",
        "Prot LocalAddress:Port Scheduler Flags",
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn",
        "TCP  10.100.0.100:80 wlc persistent 300 mask 255.255.255.0",
        "  -> 10.100.1.11:80               Route   3      2          1         ",
        "  -> 10.100.1.12:80               Route   1      0          0         ",
        "TCP  10.100.0.100:443 rr",
        "  -> 10.100.2.1:8443              Masq    0      0          0         ",
        "UDP  [2001:db8::100]:53 sh (sh-port) persistent 60 mask 64",
        "  -> [2001:db8:1::11]:53          Tunnel  2      0          4         ",
        "FWM  7 wrr persistent 600",
        "  -> 10.100.1.13:80               Route   1      0          0         ",
        "",
    ]


def test_one_service_has_no_version_line():
    assert listing([TLS], [], View.PLAIN).split("\n")[:3] == [
        "Prot LocalAddress:Port Scheduler Flags",
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn",
        "TCP  10.100.0.100:443 rr",
    ]


def test_stats_listing_like_ipvsadm_ln_stats():
    text = listing([WEB, DNS6], STATS, View.STATS)
    assert text.split("\n") == [
        "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes",
        "  -> RemoteAddress:Port",
        "TCP  10.100.0.100:80                     3 99999999        0  100000K  999999K",
        "  -> 10.100.1.11:80                      2        5        0      300        0",
        "  -> 10.100.1.12:80                      1        1        0       60        0",
        "UDP  [2001:db8::100]:53                  1        1        0    1000M   99999M",
        "  -> [2001:db8:1::11]:53                 1        1        0     100G     100T",
        "",
    ]


def test_rate_listing_like_ipvsadm_ln_rate():
    text = listing([WEB], STATS, View.RATE)
    assert text.split("\n") == [
        "Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS",
        "  -> RemoteAddress:Port",
        "TCP  10.100.0.100:80                    12      300        0  123456K        0",
        "  -> 10.100.1.11:80                      3        7        0    1000M        0",
        "  -> 10.100.1.12:80                      0        0        0        0        0",
        "",
    ]


def test_ipv6_names_are_not_cut_ipv4_ones_are():
    long6 = {**DNS6, "vip": "2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff", "id": "x",
             "backends": [{"address": "2001:db8:aaaa:bbbb:cccc:dddd:eeee:1", "weight": 1, "port": None}]}
    lines = listing([long6], [], View.PLAIN).split("\n")
    assert lines[2].startswith("UDP  [2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff]:53 sh")
    assert lines[3].startswith("  -> [2001:db8:aaaa:bbbb:cccc:dddd:eeee:1]:53 Tunnel")


def test_connections_like_ipvsadm_lnc():
    timeouts = {"tcp": 900, "tcpfin": 120, "udp": 300, "syn": 60}
    rows = [
        {"protocol": "TCP", "client": "10.99.0.10", "client_port": 40000, "virtual": "10.100.0.100",
         "virtual_port": 80, "backend": "10.100.1.11", "state": "ESTABLISHED", "idle_s": 10.0},
        {"protocol": "TCP", "client": "10.99.0.11", "client_port": 1234, "virtual": "10.100.0.100",
         "virtual_port": 80, "backend": "10.100.1.12", "state": "NEW", "idle_s": 59.5},
        {"protocol": "UDP", "client": "2001:db8:99::10", "client_port": 5353, "virtual": "2001:db8::100",
         "virtual_port": 53, "backend": "2001:db8:1::11", "state": "ESTABLISHED", "idle_s": 0.2},
        {"protocol": "TCP", "client": "10.99.0.12", "client_port": 999, "virtual": "10.100.0.100",
         "virtual_port": 80, "backend": None, "state": "CLOSING", "idle_s": 500.0},
    ]
    assert connections(rows, timeouts).split("\n") == [
        "IPVS connection entries",
        "pro expire state       source             virtual            destination",
        "TCP 14:50  ESTABLISHED 10.99.0.10:40000   10.100.0.100:80    10.100.1.11:80",
        "TCP 00:00  SYN_RECV    10.99.0.11:1234    10.100.0.100:80    10.100.1.12:80",
        "UDP 04:59  UDP         [2001:db8:99::10]:5353 [2001:db8::100]:53 [2001:db8:1::11]:53",
        "TCP 00:00  CLOSING     10.99.0.12:999     10.100.0.100:80    -",
        "",
    ]
    assert [conn_state(r) for r in rows] == ["ESTABLISHED", "SYN_RECV", "UDP", "CLOSING"]
    assert expire({**rows[0], "idle_s": 0}, {"tcp": 6000}) == "100:00"  # minutes past 99, as ipvsadm
