"""The keepalived importer: a site's keepalived.conf (VRRP, a virtual_server_group with ranges, DR and
TUN services with health checks, includes) becomes exactly the services keepalived would run, with
their checks, sorry server and quorum; what xdplb cannot take is listed with its file and line and
why, and a configuration keepalived would refuse or misread is refused whole, with every bad line
named."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from pydantic import TypeAdapter

from xdplb.checks import HealthCheck, Quorum
from xdplb.config import ServiceList
from xdplb.imports import keepalived
from xdplb.imports.keepalived_syntax import Block, parse_blocks, words
from xdplb.imports.result import Imported, ImportFormatError
from xdplb.model import Backend, Persistence, Service, Tunnel

pytestmark = pytest.mark.api

SITE = Path(__file__).parent / "data" / "imports" / "keepalived"


def _web(vip: str) -> Service:
    # delay_loop 6 is the interval and the warmup; retry 3 is fall 4; one success brings a server up
    timing = {"interval": 6, "timeout": 3, "rise": 1, "warmup": 6}
    return Service(protocol="tcp", vip=vip, port=80, scheduler="wlc", method="dr",
                   persistence=Persistence(timeout=600, netmask=24),
                   backends=(Backend(address="10.100.1.11", weight=3, upper_threshold=1000, lower_threshold=800,
                                     inhibit_on_failure=True,
                                     check=HealthCheck(type="http", path="/healthz", status=["200"], fall=4,
                                                       **timing)),
                             Backend(address="10.100.1.12", check=HealthCheck(type="tcp", port=80, fall=2, **timing))),
                   sorry_server=Backend(address="10.100.0.250"),
                   quorum=Quorum(weight=2, hysteresis=1, on_up=["/usr/local/bin/notify.sh", "web", "up"]))


EXPECTED = [
    *(_web(vip) for vip in ("10.100.0.100", "10.100.0.110", "10.100.0.111", "10.100.0.112")),
    Service(protocol="tcp", vip="10.100.0.101", port=443, scheduler="sh", sched_flags={"sh-port"}, method="tun",
            tunnel=Tunnel(encap="gue", gue_port=6080), persistence=Persistence(timeout=360),
            backends=(Backend(address="10.100.1.13", weight=2, check=HealthCheck(
                          type="https", path="/", digest="9b3a0c85a887a256d6939da88aabd8cd", verify_tls=False,
                          interval=10, timeout=5, rise=1, fall=2, warmup=10)),
                      Backend(address="10.100.1.14", check=HealthCheck(
                          type="misc", command=["/usr/local/bin/check_tls.sh", "10.100.1.14"], interval=10,
                          timeout=5, rise=1, fall=1, warmup=10)))),
    Service(protocol="udp", vip="10.100.0.100", port=53, scheduler="rr", method="tun",
            backends=(Backend(address="10.100.1.11"), Backend(address="10.100.1.12"))),
    Service(protocol="udp", vip="fd00:100::100", port=53, scheduler="mh", sched_flags={"mh-port"}, method="dr",
            backends=(Backend(address="fd00:100::11"), Backend(address="fd00:100::12"))),
    Service(protocol="tcp", vip="10.100.0.102", port=587, scheduler="wrr", method="nat",
            backends=(Backend(address="10.200.0.21", weight=2, port=2587), Backend(address="10.200.0.22"))),
]

# (file, line, what the message says) for every item of the site not translated
EXPECTED_SKIPPED = [
    ("keepalived.conf", 4, "global_defs not translated"),
    ("keepalived.conf", 15, "vrrp_sync_group not translated: xdplb has no sync groups"),
    ("keepalived.conf", 21, "vrrp_instance VI_WEB runs VRRPv2 in keepalived"),  # its VRRP: test_import_keepalived_vrrp
    ("keepalived.conf", 27, "authentication not translated: VRRPv3 has no authentication"),
    ("keepalived.conf", 34, "virtual_ipaddress fd00:100::100/64 moved to excluded_addresses"),
    ("keepalived.conf", 41, "fwmark 80 of group WEB_VIPS not translated: a firewall-mark service"),
    ("keepalived.conf", 51, "alpha not translated: xdplb starts a backend up"),
    ("keepalived.conf", 69, "delay_before_retry not translated: xdplb checks again at the interval"),
    ("conf.d/dns.conf", 6, "ops not translated: one-packet scheduling"),
    ("conf.d/dns.conf", 9, "DNS_CHECK not translated: xdplb has no DNS check"),
    ("conf.d/legacy.conf", 2, "virtual_server 10.100.0.102 25 not imported: an LVS scheduler xdplb does not have "
                              "(lblc)"),
    ("conf.d/legacy.conf", 18, "SMTP_CHECK not translated: xdplb has no SMTP check"),
    ("conf.d/legacy.conf", 24, "virtual_server fwmark 7 not imported: a firewall-mark service"),
]


def _conf(text: str) -> str:
    return textwrap.dedent(text)


def _says(skipped: list[str], expected: list[tuple[str, int, str]]) -> None:
    """`skipped` holds exactly one message per expected (file, line, text), in that order."""
    assert len(skipped) == len(expected), "\n".join(skipped)
    for message, (source, line, text) in zip(skipped, expected, strict=True):
        assert message.startswith(f"{source} line {line}: "), message
        assert text in message, message


def _site() -> Imported:
    return keepalived.parse((SITE / "keepalived.conf").read_text(), base_dir=SITE)


def test_site_becomes_exactly_the_services_keepalived_runs():
    imported = _site()
    assert imported.services == EXPECTED
    assert TypeAdapter(ServiceList).validate_python(imported.services) == EXPECTED


def test_site_lists_what_is_not_translated_with_file_and_line():
    _says(_site().skipped, EXPECTED_SKIPPED)


def test_without_a_directory_includes_are_skipped_with_a_line():
    imported = keepalived.parse((SITE / "keepalived.conf").read_text())
    assert imported.services == EXPECTED[:5]
    assert imported.skipped[-1] == ("keepalived.conf line 108: include conf.d/*.conf not followed: no directory "
                                    "to read it from was given; import its files too")


def test_checkers_are_read_from_the_tree_with_their_lines():
    tree = parse_blocks((SITE / "keepalived.conf").read_text(), base_dir=SITE)
    group = next(b for b in tree if b.keyword == "virtual_server" and b.args == ["group", "WEB_VIPS"])
    real = next(b for b in group.children if b.keyword == "real_server" and b.args == ["10.100.1.11", "80"])
    check = next(b for b in real.children if b.keyword == "HTTP_GET")
    url = check.children[0]
    assert (check.where, url.keyword, url.line) == ("keepalived.conf line 62", "url", 63)
    assert [(b.keyword, b.args) for b in url.children] == [("path", ["/healthz"]), ("status_code", ["200"])]
    assert [(b.keyword, b.args) for b in check.children[1:]] == [
        ("connect_timeout", ["3"]), ("retry", ["3"]), ("delay_before_retry", ["2"])]
    misc = next(b for b in tree if b.args == ["10.100.0.101", "443"]).children[-1].children[0]
    assert (misc.keyword, misc.children[0].args) == ("MISC_CHECK", ["/usr/local/bin/check_tls.sh 10.100.1.14"])
    dns = next(b for b in tree if b.source == "conf.d/dns.conf")
    assert (dns.where, dns.args) == ("conf.d/dns.conf line 2", ["10.100.0.100", "53"])


def test_blocks_braces_comments_and_quotes():
    text = _conf("""\
        virtual_server 10.0.0.1 80{   # a comment { not a brace
        real_server 10.0.1.1 80 { weight 2 }
        real_server 10.0.1.2 80
        {
            MISC_CHECK { misc_path "/bin/check a{b}" ! another comment
            }}
        }
        """)
    assert parse_blocks(text, "t.conf") == [Block("virtual_server", ["10.0.0.1", "80"], "t.conf", 1, [
        Block("real_server", ["10.0.1.1", "80"], "t.conf", 2, [Block("weight", ["2"], "t.conf", 2)]),
        Block("real_server", ["10.0.1.2", "80"], "t.conf", 3, [
            Block("MISC_CHECK", [], "t.conf", 5, [Block("misc_path", ["/bin/check a{b}"], "t.conf", 5)])]),
    ])]


@pytest.mark.parametrize(("line", "expected"), [
    ('auth_pass "s3cr!t#1"', ["auth_pass", "s3cr!t#1"]),
    ("notify 'abcd\" efg h jkl \"mnop'", ["notify", 'abcd" efg h jkl "mnop']),
    ('abcd" efg h jkl "mnop', ["abcd efg h jkl mnop"]),
    ('a "b c" d', ["a", "b c", "d"]),
    ('x "tab\\there \\"q\\" \\x41\\101"', ["x", 'tab\there "q" AA']),
    ('empty ""', ["empty", ""]),
    ("lb_algo rr ! keepalived's other comment", ["lb_algo", "rr"]),
])
def test_words(line, expected):
    assert words(line) == expected


def test_includes_are_relative_to_their_file_and_loops_are_refused(tmp_path):
    (tmp_path / "conf.d" / "web").mkdir(parents=True)
    (tmp_path / "keepalived.conf").write_text("include conf.d/*.conf\ninclude missing/*.conf\n")
    (tmp_path / "conf.d" / "a.conf").write_text("include web/*.conf\n")
    (tmp_path / "conf.d" / "web" / "vs.conf").write_text(_conf("""\
        virtual_server 10.0.0.1 80 {
            lb_kind DR
            protocol TCP
            real_server 10.0.1.1 80 {
            }
        }
        """))
    imported = keepalived.parse((tmp_path / "keepalived.conf").read_text(), base_dir=tmp_path)
    assert imported.services == [Service(protocol="tcp", vip="10.0.0.1", port=80, scheduler="wlc",
                                         backends=(Backend(address="10.0.1.1"),))]
    assert imported.skipped == ["keepalived.conf line 2: include missing/*.conf not followed: no file matches "
                                "(keepalived goes on without it too)"]
    (tmp_path / "conf.d" / "web" / "loop.conf").write_text("\n\ninclude ../*.conf\n")
    with pytest.raises(ImportFormatError) as error:
        keepalived.parse((tmp_path / "keepalived.conf").read_text(), base_dir=tmp_path)
    assert error.value.messages == [f"conf.d/web/loop.conf line 3: include loop: {tmp_path}/conf.d/web/../a.conf "
                                    "is already being read"]


def _vs(body: str, head: str = "10.0.0.1 80") -> str:
    return f"virtual_server {head} {{\n{textwrap.dedent(body)}}}\n"


def test_keepalived_defaults_are_wlc_nat_udp_weight_1():
    imported = keepalived.parse(_vs("""\
        real_server 10.0.1.1 8080 {
        }
        """))
    assert imported.services == [Service(protocol="udp", vip="10.0.0.1", port=80, scheduler="wlc", method="nat",
                                         backends=(Backend(address="10.0.1.1", port=8080),))]
    assert imported.skipped == ["keepalived.conf line 1: no protocol: UDP, keepalived's default",
                                "keepalived.conf line 1: no lvs_method: NAT, keepalived's default"]


def test_persistence_as_keepalived_reads_it():
    text = (_vs("protocol TCP\nlb_kind DR\npersistence_timeout 0\nreal_server 10.0.1.1 80\n") +
            _vs("protocol TCP\nlb_kind DR\npersistence_granularity 255.255.0.0\nreal_server 10.0.1.1 80\n",
                "10.0.0.2 80") +
            _vs("protocol TCP\nlb_kind DR\nreal_server 10.0.1.1\n", "10.0.0.3") +
            _vs("protocol TCP\nlb_kind DR\npersistence_timeout 90\npersistence_granularity 48\n"
                "real_server fd00::11 443\n", "fd00::1 443"))
    imported = keepalived.parse(text)
    dr = {"protocol": "tcp", "scheduler": "wlc", "method": "dr"}
    assert imported.services == [
        Service(vip="10.0.0.1", port=80, backends=(Backend(address="10.0.1.1"),), **dr),
        Service(vip="10.0.0.2", port=80, persistence=Persistence(timeout=360, netmask=16),
                backends=(Backend(address="10.0.1.1"),), **dr),
        Service(vip="10.0.0.3", port=0, persistence=Persistence(timeout=360),
                backends=(Backend(address="10.0.1.1"),), **dr),
        Service(vip="fd00::1", port=443, persistence=Persistence(timeout=90, netmask=48),
                backends=(Backend(address="fd00::11"),), **dr),
    ]
    assert imported.skipped == ["keepalived.conf line 13: port 0 (every port) is persistent: keepalived sets "
                                "persistence_timeout 360 for it"]


def test_group_ranges_each_become_a_service():
    text = _conf("""\
        virtual_server_group V6 {
            fd00:100::10-12 443
            fd00:100::20
        }
        virtual_server_group V4 {
            10.0.0.8/30 80
            10.0.0.254-10.0.1.1 80
        }
        virtual_server group V6 {
            lb_kind TUN
            protocol TCP
            persistence_timeout 60
            real_server fd00:200::1 443 {
            }
        }
        virtual_server group V4 {
            lb_algo rr
            lb_kind DR
            protocol TCP
            real_server 10.0.1.1 80
        }
        """)
    imported = keepalived.parse(text)
    v6 = [(str(s.vip), s.port) for s in imported.services if s.vip.version == 6]
    v4 = [str(s.vip) for s in imported.services if s.vip.version == 4]
    assert v6 == [("fd00:100::10", 443), ("fd00:100::11", 443), ("fd00:100::12", 443), ("fd00:100::20", 0)]
    assert v4 == ["10.0.0.8", "10.0.0.9", "10.0.0.10", "10.0.0.11", "10.0.0.254", "10.0.0.255", "10.0.1.0",
                  "10.0.1.1"]
    assert imported.services[0] == Service(protocol="tcp", vip="fd00:100::10", port=443, scheduler="wlc",
                                           method="tun", persistence=Persistence(timeout=60),
                                           backends=(Backend(address="fd00:200::1"),))
    assert imported.skipped == ["keepalived.conf line 13: port 443 of real server fd00:200::1 not translated: TUN "
                                "cannot change the port (LVS uses 0)"]


def test_scheduler_flags_and_tunnels():
    text = (_vs("""\
        lvs_sched sh
        flag-1
        flag-2
        protocol UDP
        lvs_method TUN type gue port 7000 csum
        real_server 10.0.1.1 80 {
            lvs_method TUN
        }
        real_server 10.0.1.2 80
        """) + _vs("""\
        mh-port
        lvs_sched mh
        protocol TCP
        lb_kind DR
        real_server 10.0.1.1 80
        """, "10.0.0.2 80"))
    imported = keepalived.parse(text)
    assert imported.services == [
        Service(protocol="udp", vip="10.0.0.1", port=80, scheduler="sh", sched_flags={"sh-port"}, method="tun",
                tunnel=Tunnel(encap="gue", gue_port=7000),
                backends=(Backend(address="10.0.1.1", tunnel=Tunnel()), Backend(address="10.0.1.2"))),
        Service(protocol="tcp", vip="10.0.0.2", port=80, scheduler="mh", method="dr",
                backends=(Backend(address="10.0.1.1"),)),
    ]
    _says(imported.skipped, [
        ("keepalived.conf", 3, "flag-1 not translated: it is sh-fallback"),
        ("keepalived.conf", 6, "tunnel option csum not translated"),
        ("keepalived.conf", 13, "mh-port not translated: keepalived ignores it: it applies to lvs_sched mh, "
                                "given before it"),
    ])


def test_real_server_of_the_other_family_is_skipped_as_keepalived_does():
    imported = keepalived.parse(_vs("""\
        lb_kind DR
        protocol TCP
        real_server 10.0.1.1 80
        real_server fd00::11 80
        """))
    assert imported.services == [Service(protocol="tcp", vip="10.0.0.1", port=80, scheduler="wlc",
                                         backends=(Backend(address="10.0.1.1"),))]
    _says(imported.skipped, [("keepalived.conf", 5, "real server fd00::11 not translated for 10.0.0.1: IPv6 "
                                                    "behind an IPv4 VIP without a tunnel (keepalived skips it too)")])


def test_conditions_parameters_and_seq_are_not_evaluated():
    text = _conf("""\
        $VIP=10.0.0.9
        @lb2 virtual_server 10.0.0.2 80 {
            real_server 10.0.1.1 80
        }
        virtual_server $VIP 80 {
            real_server 10.0.1.1 80
        }
        ~SEQ(i, 1, 1, 3) virtual_server 10.0.0.${i} 80
        virtual_server 10.0.0.1 80 {
            lb_kind DR
            protocol TCP
            @lb1 weight 5
            real_server 10.0.1.1 80 {
                weight ${W}
            }
        }
        """)
    imported = keepalived.parse(text)
    assert imported.services == [Service(protocol="tcp", vip="10.0.0.1", port=80, scheduler="wlc",
                                         backends=(Backend(address="10.0.1.1"),))]
    _says(imported.skipped, [
        ("keepalived.conf", 1, "$VIP=10.0.0.9 not translated: parameter definitions are not evaluated"),
        ("keepalived.conf", 2, "@lb2 virtual_server 10.0.0.2 80 not translated: conditional configuration (@lb2)"),
        ("keepalived.conf", 5, "virtual_server $VIP 80 not translated: it uses a parameter"),
        ("keepalived.conf", 8, "not translated: ~SEQ line replication is not evaluated"),
        ("keepalived.conf", 12, "@lb1 weight 5 not translated: conditional configuration"),
        ("keepalived.conf", 14, "weight ${W} not translated: it uses a parameter"),
    ])


def test_unknown_keywords_are_skipped_as_keepalived_ignores_them():
    text = "linkbeat_use_polling\nnet_mask 255.255.255.0\n" + _vs("""\
        lb_kind DR
        protocol TCP
        nat_mask 255.255.255.0
        real_server 10.0.1.1 80 {
            nb_get_retry 3
        }
        """)
    imported = keepalived.parse(text)
    assert len(imported.services) == 1
    _says(imported.skipped, [
        ("keepalived.conf", 1, "linkbeat_use_polling not translated: xdplb reads link states from the kernel"),
        ("keepalived.conf", 2, "net_mask not translated: unknown keyword: keepalived ignores it"),
        ("keepalived.conf", 6, "nat_mask not translated: unknown keyword"),
        ("keepalived.conf", 8, "nb_get_retry not translated: unknown keyword"),
    ])


# (description, virtual_server body, why it is skipped whole)
SKIPPED_WHOLE = [
    ("fwmark", ("lb_kind DR\nreal_server 10.0.1.1 80\n", "fwmark 5"),
     "virtual_server fwmark 5 not imported: a firewall-mark service"),
    ("SCTP", ("protocol SCTP\nlb_kind NAT\nreal_server 10.0.1.1 3868\n", "10.0.0.1 3868"),
     "virtual_server 10.0.0.1 3868 not imported: SCTP"),
    ("lblcr", ("lvs_sched lblcr\nprotocol TCP\nreal_server 10.0.1.1 80\n",),
     "an LVS scheduler xdplb does not have (lblcr)"),
    ("persistence engine", ("persistence_engine sip\nprotocol UDP\nreal_server 10.0.1.1 80\n",),
     "persistence engine sip"),
    ("no real servers", ("protocol TCP\nlb_kind DR\ndelay_loop 5\n",),
     "it has no real servers (keepalived ignores it too)"),
    ("mixed methods", ("protocol TCP\nlb_kind DR\nreal_server 10.0.1.1 80\nreal_server 10.0.1.2 80 {\n"
                       "lvs_method TUN\n}\n",),
     "its real servers use different forwarding methods (DR at keepalived.conf line 9, TUN at keepalived.conf "
     "line 10)"),
    ("GRE", ("protocol TCP\nlb_kind TUN type gre\nreal_server 10.0.1.1 80\n",), "GRE tunnels"),
    ("one address on two NAT ports", ("protocol TCP\nlb_kind NAT\nreal_server 10.0.1.1 8080\n"
                                      "real_server 10.0.1.1 8081\n",),
     "real server 10.0.1.1 is listed on two ports"),
]


@pytest.mark.parametrize(("body", "reason"), [s[1:] for s in SKIPPED_WHOLE], ids=[s[0] for s in SKIPPED_WHOLE])
def test_untranslatable_virtual_server_is_skipped_whole_and_the_rest_imports(body, reason):
    kept = _vs("protocol TCP\nlb_kind DR\nreal_server 10.0.1.9 22\n", "10.0.0.9 22")
    imported = keepalived.parse(kept + _vs(*body))
    assert imported.services == [Service(protocol="tcp", vip="10.0.0.9", port=22, scheduler="wlc",
                                         backends=(Backend(address="10.0.1.9"),))]
    assert len(imported.skipped) == 1
    assert imported.skipped[0].startswith("keepalived.conf line 6: ")
    assert reason in imported.skipped[0]


# (description, keepalived.conf, the error's file, line and words)
ERRORS = [
    ("a } too many", "global_defs {\n}\n}\n", "keepalived.conf line 3: this } closes no block"),
    ("a { never closed", "global_defs {\nrouter_id a\n\nvirtual_server 10.0.0.1 80 {\n",
     "keepalived.conf line 4: the { of virtual_server is never closed"),
    ("a { opening nothing", "{\n}\n", "keepalived.conf line 1: { opens no statement's block"),
    ("unterminated quote", 'global_defs {\nrouter_id "lb1\n}\n', "keepalived.conf line 2: unterminated \"quote\""),
    ("bad VIP", _vs("real_server 10.0.1.1 80\n", "10.0.0.300 80"),
     "keepalived.conf line 1: virtual server address '10.0.0.300' is not an IP address"),
    ("bad virtual server port", _vs("real_server 10.0.1.1 80\n", "10.0.0.1 http"),
     "keepalived.conf line 1: virtual server port 'http' is not a number"),
    ("bad real server", _vs("protocol TCP\nreal_server rs1.example.net 80\n"),
     "keepalived.conf line 3: real server address 'rs1.example.net' is not an IP address"),
    ("real server port out of range", _vs("real_server 10.0.1.1 65536\n"),
     "keepalived.conf line 2: real server port 65536 is out of range (0-65535)"),
    ("weight out of range", _vs("real_server 10.0.1.1 80 {\nweight 65536\n}\n"),
     "keepalived.conf line 3: weight 65536 is out of range (0-65535)"),
    ("negative weight", _vs("real_server 10.0.1.1 80 {\nweight -1\n}\n"),
     "keepalived.conf line 3: weight '-1' is not a number"),
    ("unknown scheduler name", _vs("lb_algo loadbalance\nreal_server 10.0.1.1 80\n"),
     "keepalived.conf line 2: lb_algo loadbalance: not an LVS scheduler"),
    ("unknown method", _vs("lb_kind FULLNAT\nreal_server 10.0.1.1 80\n"),
     "keepalived.conf line 2: lb_kind FULLNAT: not NAT, DR or TUN"),
    ("gue without port", _vs("lvs_method TUN type gue\nreal_server 10.0.1.1 80\n"),
     "keepalived.conf line 2: a gue tunnel needs a port"),
    ("ipip with a checksum", _vs("real_server 10.0.1.1 80 {\nlvs_method TUN csum\n}\n"),
     "keepalived.conf line 3: a ipip tunnel does not take csum"),
    ("unknown protocol", _vs("protocol ICMP\nreal_server 10.0.1.1 80\n"),
     "keepalived.conf line 2: protocol ICMP: not TCP, UDP or SCTP"),
    ("persistence timeout beyond 31 days", _vs("persistence_timeout 2678401\nreal_server 10.0.1.1 80\n"),
     "keepalived.conf line 2: persistence_timeout 2678401 is out of range"),
    ("granularity not contiguous", _vs("persistence_granularity 255.0.255.0\nreal_server 10.0.1.1 80\n"),
     "keepalived.conf line 2: netmask 255.0.255.0 is not a contiguous netmask"),
    ("lower threshold without an upper one", _vs("real_server 10.0.1.1 80 {\nlthreshold 10\n}\n"),
     "keepalived.conf line 2: backend 10.0.1.1: a lower threshold needs an upper one"),
    ("real server listed twice", _vs("lb_kind DR\nreal_server 10.0.1.1 80\nreal_server 10.0.1.1 80\n"),
     "keepalived.conf line 1: real server 10.0.1.1 is listed twice (keepalived.conf line 3, keepalived.conf line 4)"),
    ("undefined group", _vs("real_server 10.0.1.1 80\n", "group WEB"),
     "keepalived.conf line 1: virtual_server_group WEB is not defined"),
    ("group defined twice", "virtual_server_group G {\n10.0.0.1 80\n}\nvirtual_server_group G {\n10.0.0.2 80\n}\n",
     "keepalived.conf line 4: virtual_server_group G is defined twice (first at keepalived.conf line 1)"),
    ("bad range", "virtual_server_group G {\n10.0.0.9-3 80\n}\n",
     "keepalived.conf line 2: range 10.0.0.9-3: its end is before its start"),
    ("range too long", "virtual_server_group G {\n10.0.0.0/16 80\n}\n",
     "keepalived.conf line 2: range 10.0.0.0/16 holds 65536 addresses"),
    ("not an address in a group", "virtual_server_group G {\nweb.example.net 80\n}\n",
     "keepalived.conf line 2: 'web.example.net' is not an address, range or prefix"),
    ("two services on one endpoint", _vs("lb_kind DR\nreal_server 10.0.1.1 80\n") +
     _vs("lb_kind DR\nreal_server 10.0.1.2 80\n"),
     "keepalived.conf line 5: UDP 10.0.0.1:80 wlc has the same key as keepalived.conf line 1 (UDP 10.0.0.1:80 wlc)"),
    ("a group entry on a virtual_server's endpoint",
     "virtual_server_group G {\n10.0.0.1-2 80\n}\n" + _vs("protocol TCP\nreal_server 10.0.1.1 80\n", "group G") +
     _vs("protocol TCP\nreal_server 10.0.1.1 80\n", "10.0.0.2 80"),
     "keepalived.conf line 8: TCP 10.0.0.2:80 wlc has the same key as keepalived.conf line 4 (group G, "
     "keepalived.conf line 2)"),
]


@pytest.mark.parametrize(("text", "fragment"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_refused_configuration_names_the_line(text, fragment):
    with pytest.raises(ImportFormatError) as error:
        keepalived.parse(text)
    assert any(fragment in m for m in error.value.messages), error.value.messages


def test_every_error_is_reported():
    text = _vs("""\
        lb_algo nope
        real_server 10.0.1.1 80 {
            weight 99999
        }
        real_server 10.0.1.300 80
        """)
    with pytest.raises(ImportFormatError) as error:
        keepalived.parse(text, source="/etc/keepalived/keepalived.conf")
    assert [m.split(": ")[0] for m in error.value.messages] == [
        f"/etc/keepalived/keepalived.conf line {n}" for n in (2, 4, 6)]


# ---- health checks, sorry servers, quorum (issue 8) ------------------------------------------------

CHECKS = "keepalived-checks.conf"


def _checks() -> Imported:
    return keepalived.parse((SITE / CHECKS).read_text(), source=CHECKS)


def _web_checks() -> Service:
    web = {"interval": 5, "timeout": 2, "rise": 1}  # the virtual server's delay_loop 5, connect_timeout 2
    return Service(
        protocol="tcp", vip="10.100.0.100", port=80, scheduler="wlc", method="dr",
        backends=(
            Backend(address="10.100.1.11", weight=2, inhibit_on_failure=True, check=HealthCheck(
                type="http", path="/healthz", status=["200-299", "301"], body_regex="(?i)ok|ready",
                host="www.example.net", port=8080, source="10.100.1.2", fall=3, warmup=2.5,
                notify=["/usr/local/sbin/rs-notify.sh", "web"], **web)),
            Backend(address="10.100.1.12", weight=2, check=HealthCheck(
                type="http", path="/healthz", digest="9b3a0c85a887a256d6939da88aabd8cd", host="health.example.net",
                address="10.100.1.112", interval=3, timeout=2, rise=1, fall=5, warmup=3)),
            Backend(address="10.100.1.13", inhibit_on_failure=True, check=HealthCheck(
                type="tcp", interval=5, timeout=1.5, rise=1, fall=1, warmup=5)),
        ),
        sorry_server=Backend(address="10.100.0.250"),
        quorum=Quorum(weight=3, hysteresis=1, on_up=["/usr/local/sbin/quorum.sh", "web", "up"],
                      on_down=["/usr/local/sbin/quorum.sh", "web", "down"]))


EXPECTED_CHECKS = [
    _web_checks(),
    # the same SSL_GET in every real server: the service's check
    Service(protocol="tcp", vip="10.100.0.100", port=443, scheduler="rr", method="dr",
            backends=(Backend(address="10.100.1.11"), Backend(address="10.100.1.12")),
            check=HealthCheck(type="https", path="/status", status=["200"], verify_tls=False, interval=10, timeout=4,
                              rise=1, fall=2, warmup=10)),
    Service(protocol="udp", vip="10.100.0.100", port=4000, scheduler="rr", method="dr", backends=(
        Backend(address="10.100.1.11", check=HealthCheck(
            type="udp", payload="PING\n", expect="^PONG[0123456789:;<=>\\?]", interval=2, timeout=5, rise=1, fall=2,
            warmup=2)),
        Backend(address="10.100.1.12", check=HealthCheck(
            type="udp", expect="(?s).*", interval=2, timeout=4, rise=1, fall=2, warmup=2)),
        Backend(address="10.100.1.13"))),
    Service(protocol="tcp", vip="10.100.0.101", port=9000, scheduler="wrr", method="tun", quorum=Quorum(weight=45),
            backends=(
                Backend(address="10.100.1.21", weight=20, check=HealthCheck(
                    type="misc", command=["/usr/local/libexec/load-check", "--host", "10.100.1.21", "--max",
                                          "load average"], dynamic=True, interval=15, timeout=8, rise=1, fall=1,
                    warmup=15)),
                Backend(address="10.100.1.22", weight=20),
                Backend(address="10.100.1.23", weight=5, check=HealthCheck(
                    type="misc", command=["/usr/local/libexec/ping-batch"], interval=15, timeout=15, rise=1, fall=3,
                    warmup=15)))),
]

EXPECTED_CHECKS_SKIPPED = [
    (CHECKS, 2, "global_defs not translated"),
    (CHECKS, 8, "SSL not translated: xdplb's https checks send no client certificate"),
    (CHECKS, 23, "sorry_server_inhibit not translated"),
    (CHECKS, 27, "user keepalived_script of quorum_down not translated: xdplb runs hooks as itself"),
    (CHECKS, 40, "url not translated: xdplb checks one URL, the first"),
    (CHECKS, 43, "http_protocol not translated"),
    (CHECKS, 61, "delay_before_retry not translated: xdplb checks again at the interval after a failure"),
    (CHECKS, 63, f"TCP_CHECK not translated: xdplb runs one check per backend: the HTTP_GET at {CHECKS} line 53 "
                 "is the one translated"),
    (CHECKS, 67, "notify_down not translated: xdplb has one hook for both transitions"),
    (CHECKS, 71, "log_all_failures not translated"),
    (CHECKS, 88, "enable_sni not translated"),
    (CHECKS, 98, "enable_sni not translated"),
    (CHECKS, 113, "require_reply: an answer shorter than its bytes is down for xdplb"),
    (CHECKS, 114, "min_reply_length not translated"),
    (CHECKS, 118, "PING_CHECK not translated: xdplb has no ICMP echo check"),
    (CHECKS, 120, "UDP_CHECK without a payload: keepalived sends random bytes, xdplb an empty datagram"),
    (CHECKS, 126, "UDP_CHECK not translated: require_reply has bytes past ASCII"),
    (CHECKS, 140, "quorum 50 is above the real servers' total weight 45: keepalived lowers it to 45"),
    (CHECKS, 147, "user not translated: xdplb runs checks as itself"),
    (CHECKS, 152, "MISC_CHECK not translated: misc_path '/usr/bin/curl -s http://10.100.1.22:9000/ | grep -q ok': "
                  "it uses the shell's |, and xdplb runs checks without a shell"),
]


def test_checks_become_exactly_these_health_checks():
    imported = _checks()
    assert imported.services == EXPECTED_CHECKS
    assert TypeAdapter(ServiceList).validate_python(imported.services) == EXPECTED_CHECKS


def test_checks_list_what_is_not_translated_with_file_and_line():
    _says(_checks().skipped, EXPECTED_CHECKS_SKIPPED)


def _rs(body: str, real: str = "real_server 10.0.1.1 80", head: str = "10.0.0.1 80", vs: str = "") -> str:
    """A DR TCP virtual server with one real server holding `body`."""
    return _vs(f"protocol TCP\nlb_kind DR\n{vs}{real} {{\n{textwrap.dedent(body)}}}\n", head)


def _one_check(text: str) -> tuple[HealthCheck | None, list[str]]:
    imported = keepalived.parse(text)
    [service] = imported.services
    return service.check or service.backends[0].check, imported.skipped


def test_defaults_are_keepalived_s_delay_loop_connect_timeout_and_retry():
    check, skipped = _one_check(_rs("TCP_CHECK {\n}\n"))
    assert check == HealthCheck(type="tcp", interval=60, timeout=5, rise=1, fall=2, warmup=60)
    assert skipped == []
    check, _ = _one_check(_rs('MISC_CHECK {\nmisc_path "/bin/true"\n}\n', vs="delay_loop 4\n"))
    assert check == HealthCheck(type="misc", command=["/bin/true"], interval=4, timeout=4, rise=1, fall=1, warmup=4)


def test_timing_comes_from_the_checker_then_the_real_server_then_the_virtual_server():
    check, _ = _one_check(_rs("delay_loop 7\nconnect_timeout 3\nTCP_CHECK {\nconnect_timeout 0.5\n}\n",
                              vs="delay_loop 9\nretry 4\nwarmup 0\nconnect_timeout 8\n"))
    assert (check.interval, check.timeout, check.fall, check.warmup) == (7, 0.5, 5, 0)


@pytest.mark.parametrize(("path", "argv"), [
    ("/usr/lib/check a b", ["/usr/lib/check", "a", "b"]),
    ("/usr/lib/check 'a b' c", ["/usr/lib/check", "a b", "c"]),
    ("/usr/lib/check 'x|y' 'a;b' '>'", ["/usr/lib/check", "x|y", "a;b", ">"]),  # quoted: plain arguments
])
def test_misc_path_splits_like_a_shell_without_one(path, argv):
    check, _ = _one_check(_rs(f'MISC_CHECK {{\nmisc_path "{path}"\n}}\n'))
    assert check.command == argv


@pytest.mark.parametrize(("path", "why"), [
    ("/bin/check | grep ok", "the shell's |"),
    ("/bin/check; /bin/other", "the shell's ;"),
    ("/bin/check && /bin/other", "the shell's &&"),
    ("/bin/check >/dev/null 2>&1", "the shell's > >&"),
    ("/bin/check `hostname`", "a backquote"),
    ("(/bin/check)", "the shell's ( )"),
])
def test_misc_path_needing_a_shell_is_left_out(path, why):
    check, skipped = _one_check(_rs(f'MISC_CHECK {{\nmisc_path "{path}"\n}}\n'))
    assert check is None
    assert skipped[0].startswith("keepalived.conf line 5: MISC_CHECK not translated: ") and why in skipped[0]


@pytest.mark.parametrize(("hooks", "notify", "said"), [
    (('notify_up "/bin/n web"', 'notify_down "/bin/n web"'), ["/bin/n", "web"], []),
    (('notify_up "/bin/n web up"', 'notify_down "/bin/n web down"'), None,
     ["notify_up and notify_down run different commands"] * 2),
    (('notify_down "/bin/n"',), None, ["xdplb has one hook for both transitions"]),
    (('notify_up "/bin/n | logger"', 'notify_down "/bin/n | logger"'), None,
     ["it uses the shell's |, and xdplb runs hooks without a shell"] * 2),
])
def test_notify_up_and_down_make_one_hook_only_when_they_are_one_command(hooks, notify, said):
    check, skipped = _one_check(_rs("\n".join(hooks) + "\nTCP_CHECK {\n}\n"))
    assert check.notify == notify
    assert len(skipped) == len(said) and all(s in m for s, m in zip(said, skipped, strict=True)), skipped


def test_a_hook_without_a_check_is_left_out():
    imported = keepalived.parse(_rs('notify_up "/bin/n"\nnotify_down "/bin/n"\nDNS_CHECK {\n}\n'))
    _says(imported.skipped, [("keepalived.conf", 5, "notify_up not translated: the real server has no check"),
                             ("keepalived.conf", 6, "notify_down not translated: the real server has no check"),
                             ("keepalived.conf", 7, "DNS_CHECK not translated: xdplb has no DNS check")])
    assert imported.services[0].backends[0].check is None


def test_urls_without_a_path_are_passed_over_and_a_checker_without_one_is_dropped():
    check, skipped = _one_check(_rs("HTTP_GET {\nurl {\nstatus_code 200\n}\nurl {\npath /b\n}\nurl {\npath /c\n}\n}\n"))
    assert (check.path, check.status) == ("/b", ["200-299"])
    _says(skipped, [("keepalived.conf", 6, "url not translated: it has no path"),
                    ("keepalived.conf", 12, "url not translated: xdplb checks one URL, the first")])
    check, skipped = _one_check(_rs("SSL_GET {\nconnect_timeout 2\n}\n"))
    assert check is None and "SSL_GET not translated: it has no url with a path" in skipped[0]


@pytest.mark.parametrize(("text", "data"), [
    ("Ab12f 3 456 546443123", [0xAB, 0x12, 0x0F, 0x03, 0x45, 0x06, 0x54, 0x64, 0x43, 0x12, 0x03]),  # keepalived's
    ("50494e470a", [0x50, 0x49, 0x4E, 0x47, 0x0A]),
])
def test_hex_strings_read_as_keepalived_reads_them(text, data):
    from xdplb.imports.keepalived_checks import hex_bytes

    assert [value for value, _ in hex_bytes(text, "payload", wildcards=False)] == data


def test_sorry_server_with_the_services_method_or_left_out():
    head = "protocol TCP\nlb_kind NAT\nreal_server 10.0.1.1 8080\n"
    [nat] = keepalived.parse(_vs(head + "sorry_server 10.0.2.1 8081\n")).services
    assert nat.sorry_server == Backend(address="10.0.2.1", port=8081)
    for line, why in (("sorry_server 10.0.2.1 80\nsorry_server_lvs_method DR\n", "its method DR is not its real "
                                                                                   "servers' NAT"),
                      ("sorry_server fd00::1 80\n", "IPv6 behind an IPv4 VIP without a tunnel"),
                      ("sorry_server 10.0.1.1 80\n", "it is also a real server")):
        imported = keepalived.parse(_vs(head + line))
        assert imported.services[0].sorry_server is None
        assert any(f"sorry_server {line.split()[1]} not translated for 10.0.0.1: {why}" in m
                   for m in imported.skipped), imported.skipped
    [dr] = keepalived.parse(_rs("", vs="sorry_server 10.0.2.1 8080\n")).services
    assert dr.sorry_server == Backend(address="10.0.2.1")


def test_hysteresis_not_below_the_quorum_is_lowered_as_keepalived_does():
    imported = keepalived.parse(_rs("weight 5\n", vs="quorum 3\nhysteresis 3\n"))
    assert imported.services[0].quorum == Quorum(weight=3, hysteresis=2)
    _says(imported.skipped, [("keepalived.conf", 5, "hysteresis 3 is not below the quorum 3: keepalived lowers it "
                                                    "to 2")])


def test_inhibit_on_failure_of_the_virtual_server_is_its_real_servers_default():
    text = _vs("protocol TCP\nlb_kind DR\ninhibit_on_failure\nreal_server 10.0.1.1 80\n"
               "real_server 10.0.1.2 80 {\ninhibit_on_failure off\n}\n")
    [svc] = keepalived.parse(text).services
    assert [b.inhibit_on_failure for b in svc.backends] == [True, False]


# (description, real server body, the error's line and words)
CHECK_ERRORS = [
    ("status code out of range", "HTTP_GET {\nurl {\npath /\nstatus_code 200 600\n}\n}\n",
     "line 8: status_code 600 is out of range (100-599)"),
    ("status range backwards", "HTTP_GET {\nurl {\npath /\nstatus_code 299-200\n}\n}\n",
     "line 8: status_code 299-200: the range ends before it starts"),
    ("status code not a number", "HTTP_GET {\nurl {\npath /\nstatus_code ok\n}\n}\n",
     "line 8: status_code 'ok' is not a number"),
    ("digest", "HTTP_GET {\nurl {\npath /\ndigest 12345\n}\n}\n", "line 8: digest '12345' is not an MD5 digest"),
    ("path", "HTTP_GET {\nurl {\npath index.html\n}\n}\n", "line 5: HTTP_GET: path: String should match pattern"),
    ("connect_port", "TCP_CHECK {\nconnect_port 0\n}\n", "line 6: connect_port 0 is out of range (1-65535)"),
    ("connect_ip", "TCP_CHECK {\nconnect_ip rs1\n}\n", "line 6: connect_ip 'rs1' is not an IP address"),
    ("bindto", "TCP_CHECK {\nbindto 10.0.0.300\n}\n", "line 6: bindto '10.0.0.300' is not an IP address"),
    ("timer", "TCP_CHECK {\nconnect_timeout 3s\n}\n", "line 6: connect_timeout '3s' is not a number of seconds"),
    ("zero timeout", "TCP_CHECK {\nconnect_timeout 0\n}\n", "line 6: connect_timeout 0: a check needs time"),
    ("retry", "retry 100\nTCP_CHECK {\n}\n", "line 5: retry 100 is out of range (0-99)"),
    ("delay_loop too long", "delay_loop 7200\nTCP_CHECK {\n}\n",
     "line 6: TCP_CHECK: interval: Input should be less than or equal to 3600"),
    ("misc_timeout", 'MISC_CHECK {\nmisc_path /bin/true\nmisc_timeout 900\n}\n',
     "line 7: misc_timeout 900 is out of range (0-600)"),
    ("unclosed quote", "MISC_CHECK {\nmisc_path \"/bin/check 'a b\"\n}\n",
     "line 6: misc_path \"/bin/check 'a b\": No closing quotation"),
    ("payload", "UDP_CHECK {\npayload 41zz\n}\n", "line 6: payload '41zz': 'z' is not a hex digit"),
    ("inhibit", "inhibit_on_failure maybe\n", "line 5: inhibit_on_failure 'maybe': not one of"),
    ("notify quote", "notify_up \"/bin/n 'x\"\nnotify_down /bin/n\nTCP_CHECK {\n}\n",
     "line 5: notify_up \"/bin/n 'x\": No closing quotation"),
    ("empty hook", "", "line 4: quorum_up is empty"),
    ("quorum 0", "", "line 4: quorum 0 is out of range"),
]


@pytest.mark.parametrize(("body", "fragment"), [e[1:] for e in CHECK_ERRORS], ids=[e[0] for e in CHECK_ERRORS])
def test_a_check_keepalived_would_refuse_is_an_error(body, fragment):
    vs = {"quorum 0": "quorum 0\n", "quorum_up": 'quorum_up ""\n'}
    text = _rs(body, vs=next((line for word, line in vs.items() if word in fragment), ""))
    with pytest.raises(ImportFormatError) as error:
        keepalived.parse(text)
    assert any(f"keepalived.conf {fragment}" in m for m in error.value.messages), error.value.messages
