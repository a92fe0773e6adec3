"""The ipvsadm importer: a real `ipvsadm-save -n` dump becomes exactly the services it defines, what
xdplb cannot take is listed with its line and why, and a dump ipvsadm itself would refuse is refused
whole, with every bad line named."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import TypeAdapter

from xdplb.config import ServiceList
from xdplb.imports import ipvsadm
from xdplb.imports.result import ImportFormatError
from xdplb.model import Backend, Persistence, Service, Tunnel

pytestmark = pytest.mark.api

DUMP = Path(__file__).parent / "data" / "imports" / "ipvsadm-save.txt"
GUE_5555 = Tunnel(encap="gue", gue_port=5555)

EXPECTED = [
    Service(protocol="tcp", vip="10.100.0.100", port=80, scheduler="wlc",
            persistence=Persistence(timeout=300, netmask=24),
            backends=(Backend(address="10.100.1.11", weight=3, upper_threshold=100, lower_threshold=50),
                      Backend(address="10.100.1.12"), Backend(address="10.100.1.13", weight=0))),
    Service(protocol="tcp", vip="10.100.0.100", port=443, scheduler="sh", sched_flags={"sh-port"},
            backends=(Backend(address="10.100.1.11"), Backend(address="10.100.1.12"))),
    Service(protocol="tcp", vip="10.100.0.101", port=8080, scheduler="rr", method="nat",
            backends=(Backend(address="10.200.0.21", port=80), Backend(address="10.200.0.22", weight=2))),
    Service(protocol="tcp", vip="10.100.0.103", port=443, scheduler="nq", method="tun", tunnel=GUE_5555,
            backends=(Backend(address="10.100.1.21", weight=5), Backend(address="fd00:100::21", weight=5))),
    Service(protocol="tcp", vip="10.100.0.104", port=0, scheduler="fo", persistence=Persistence(timeout=120),
            backends=(Backend(address="10.100.1.13", weight=10),)),
    Service(protocol="tcp", vip="10.100.0.105", port=25, scheduler="lc"),
    Service(protocol="tcp", vip="fd00:100::100", port=80, scheduler="mh", sched_flags={"mh-port"},
            persistence=Persistence(timeout=1800, netmask=64),
            backends=(Backend(address="fd00:100::11"), Backend(address="fd00:100::12"))),
    Service(protocol="udp", vip="10.100.0.100", port=53, scheduler="wrr", method="tun", tunnel=Tunnel(),
            backends=(Backend(address="10.100.1.11"),
                      Backend(address="10.100.1.12", tunnel=Tunnel(encap="gue", gue_port=6080)))),
]

# (line, what the message says) for every item of the dump not translated
EXPECTED_SKIPPED = [
    (5, "sh-fallback not translated"),
    (11, "TCP 10.100.0.102:80 not imported: its real servers use different forwarding methods "
         "(DR at line 12, TUN at line 13)"),
    (15, "--tun-csum not translated"),
    (16, "--tun-csum not translated"),
    (23, "-o not translated: one-packet scheduling"),
    (26, "UDP [fd00:100::100]:53 not imported: an LVS scheduler xdplb does not have (lblc)"),
    (28, "FWM 7 not imported: a firewall-mark service"),
]


def _lines(*lines: str) -> str:
    return "\n".join(lines) + "\n"


def _says(skipped: list[str], expected: list[tuple[int, str]], source: str = "ipvsadm-save") -> None:
    """`skipped` holds exactly one message per expected (line, text), in line order."""
    assert len(skipped) == len(expected), skipped
    for message, (line, text) in zip(skipped, expected, strict=True):
        assert message.startswith(f"{source} line {line}: "), message
        assert text in message, message


def test_dump_becomes_exactly_its_services():
    imported = ipvsadm.parse(DUMP.read_text())
    assert imported.services == EXPECTED
    assert TypeAdapter(ServiceList).validate_python(imported.services) == EXPECTED


def test_dump_lists_what_is_not_translated_with_its_line():
    _says(ipvsadm.parse(DUMP.read_text()).skipped, EXPECTED_SKIPPED)


def test_fwmark_skip_says_endpoints_are_given_by_hand():
    skipped = ipvsadm.parse(DUMP.read_text()).skipped
    fwmark = next(m for m in skipped if "FWM 7" in m)
    assert "fwmark and endpoints" in fwmark and "iptables/nft" in fwmark


# (description, dump, the error's line and words)
ERRORS = [
    ("unknown option", _lines("-A -t 10.0.0.1:80 -s rr --bogus"), "line 1: unknown option '--bogus'"),
    ("stray argument", _lines("-A -t 10.0.0.1:80 rr"), "line 1: unexpected argument 'rr'"),
    ("missing argument", _lines("-A -t"), "line 1: -t needs an argument"),
    ("no command", _lines("-t 10.0.0.1:80 -s rr"), "line 1: no command"),
    ("not a rule", _lines("-C"), "line 1: -C is not a rule"),
    ("option given twice", _lines("-A -t 10.0.0.1:80 -s rr -s wrr"), "line 1: -s is given twice"),
    ("two forwarding methods", _lines("-A -t 10.0.0.1:80", "-a -t 10.0.0.1:80 -r 10.0.1.1 -g -m"),
     "line 2: more than one forwarding method"),
    ("server option on a service", _lines("-A -t 10.0.0.1:80 -w 3"), "line 1: --weight does not go with"),
    ("bad VIP", _lines("-A -t 10.0.0.300:80"), "line 1: virtual service address '10.0.0.300' is not an IP"),
    ("bad IPv6 VIP", _lines("-A -u [fd00::zz]:53"), "line 1: virtual service address 'fd00::zz' is not an IP"),
    ("unbracketed IPv6 with port", _lines("-A -t fd00::1:80:x"), "line 1: virtual service address"),
    ("port out of range", _lines("-A -t 10.0.0.1:70000"), "line 1: virtual service port 70000 is out of range"),
    ("port by name", _lines("-A -t 10.0.0.1:http"), "line 1: virtual service port 'http' is not a number"),
    ("bad real server", _lines("-A -t 10.0.0.1:80", "-a -t 10.0.0.1:80 -r rs1.example.net:80"),
     "line 2: real server address 'rs1.example.net' is not an IP address"),
    ("weight out of range", _lines("-A -t 10.0.0.1:80", "-a -t 10.0.0.1:80 -r 10.0.1.1:80 -w 65536"),
     "line 2: weight 65536 is out of range (0-65535)"),
    ("negative weight", _lines("-A -t 10.0.0.1:80", "-a -t 10.0.0.1:80 -r 10.0.1.1:80 -w -1"),
     "line 2: weight '-1' is not a number"),
    ("threshold out of range", _lines("-A -t 10.0.0.1:80", "-a -t 10.0.0.1:80 -r 10.0.1.1 -x 2147483648"),
     "line 2: upper threshold 2147483648 is out of range"),
    ("lower threshold not below upper", _lines("-A -t 10.0.0.1:80", "-a -t 10.0.0.1:80 -r 10.0.1.1 -x 10 -y 20"),
     "line 2: backend 10.0.1.1: lower threshold 20 must be below the upper one 10"),
    ("persistence timeout 0", _lines("-A -t 10.0.0.1:80 -p 0"), "line 1: persistence timeout 0 is out of range"),
    ("persistence timeout beyond 31 days", _lines("-A -t 10.0.0.1:80 -p 2678401"), "line 1: persistence timeout"),
    ("netmask not contiguous", _lines("-A -t 10.0.0.1:80 -p 300 -M 255.0.255.0"),
     "line 1: netmask 255.0.255.0 is not a contiguous netmask"),
    ("dotted netmask on IPv6", _lines("-A -t [fd00::1]:80 -p 300 -M 255.255.0.0"),
     "line 1: netmask 255.255.0.0: a dotted netmask on an IPv6 service"),
    ("IPv6 prefix too long", _lines("-A -t [fd00::1]:80 -p 300 -M 129"), "line 1: netmask 129 is out of range"),
    ("port 0 not persistent", _lines("-A -t 10.0.0.1:0 -s rr"), "line 1: port 0 (every port) needs -p"),
    ("sched flag of another scheduler", _lines("-A -t 10.0.0.1:80 -s rr -b sh-port"),
     "line 1: scheduler flag sh-port needs scheduler sh"),
    ("unknown sched flag", _lines("-A -t 10.0.0.1:80 -s sh -b sh-ports"), "line 1: invalid scheduler flag 'sh-ports'"),
    ("real server before its service", _lines("-a -t 10.0.0.1:80 -r 10.0.1.1:80 -g"),
     "line 1: a real server of TCP 10.0.0.1:80, which no -A line defined before"),
    ("edit of an undefined service", _lines("-E -t 10.0.0.1:80 -s rr"),
     "line 1: -E edits TCP 10.0.0.1:80, which no -A line defined before"),
    ("service defined twice", _lines("-A -t 10.0.0.1:80 -s rr", "-A -t 10.0.0.1:80 -s wrr"),
     "line 2: TCP 10.0.0.1:80 is defined twice (first at line 1)"),
    ("real server listed twice", _lines("-A -t 10.0.0.1:80", "-a -t 10.0.0.1:80 -r 10.0.1.1:80 -g -w 1",
                                        "-a -t 10.0.0.1:80 -r 10.0.1.1:80 -g -w 2"),
     "line 3: real server 10.0.1.1:80 of TCP 10.0.0.1:80 is listed twice (first at line 2)"),
    ("DR real server twice on two ports (LVS keeps the service's)",
     _lines("-A -t 10.0.0.1:80", "-a -t 10.0.0.1:80 -r 10.0.1.1:80", "-a -t 10.0.0.1:80 -r 10.0.1.1:81"),
     "line 3: real server 10.0.1.1:80 of TCP 10.0.0.1:80 is listed twice"),
    ("edit of an undefined real server", _lines("-A -t 10.0.0.1:80", "-e -t 10.0.0.1:80 -r 10.0.1.1:80 -w 3"),
     "line 2: -e edits real server 10.0.1.1:80 of TCP 10.0.0.1:80, which no -a line added before"),
    ("real server of the other family without a tunnel",
     _lines("-A -t 10.0.0.1:80", "-a -t 10.0.0.1:80 -r [fd00::1]:80"),
     "line 2: real server fd00::1 is IPv6, TCP 10.0.0.1:80 IPv4: only tunneling crosses"),
    ("tunnel options without -i", _lines("-A -t 10.0.0.1:80", "-a -t 10.0.0.1:80 -r 10.0.1.1 -g --tun-type gue"),
     "line 2: tunnel options need -i"),
    ("gue without a port", _lines("-A -t 10.0.0.1:80", "-a -t 10.0.0.1:80 -r 10.0.1.1 -i --tun-type gue"),
     "line 2: --tun-type gue needs --tun-port"),
    ("port of an ipip tunnel", _lines("-A -t 10.0.0.1:80", "-a -t 10.0.0.1:80 -r 10.0.1.1 -i --tun-port 6080"),
     "line 2: --tun-port goes with --tun-type gue, not ipip"),
    ("unknown tunnel type", _lines("-A -t 10.0.0.1:80", "-a -t 10.0.0.1:80 -r 10.0.1.1 -i --tun-type vxlan"),
     "line 2: tunnel type 'vxlan' is not ipip, gue or gre"),
    ("-6 without -f", _lines("-A -t 10.0.0.1:80 -6"), "line 1: -6 goes with -f only"),
    ("fwmark 0", _lines("-A -f 0 -s rr"), "line 1: fwmark 0 is out of range"),
]


@pytest.mark.parametrize(("text", "fragment"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_refused_dump_names_the_line(text, fragment):
    with pytest.raises(ImportFormatError) as error:
        ipvsadm.parse(text)
    assert any(fragment in m for m in error.value.messages), error.value.messages
    assert all(m.startswith("ipvsadm-save line ") for m in error.value.messages)


def test_every_error_is_reported_in_line_order():
    text = _lines("-A -t 10.0.0.1:80 -s rr",
                  "-a -t 10.0.0.1:80 -r 10.0.1.1:80 -g -w 70000",
                  "-A -t 10.0.0.2:80 --bogus",
                  "-A -t 10.0.0.1:80 -s wrr",
                  "-a -t 10.0.0.1:80 -r 10.0.1.2:80 -x 5 -y 9")
    with pytest.raises(ImportFormatError) as error:
        ipvsadm.parse(text, source="lb1.rules")
    assert [m.split(":")[0] for m in error.value.messages] == [
        "lb1.rules line 2", "lb1.rules line 3", "lb1.rules line 4", "lb1.rules line 5"]


# (description, dump, the skipped service's line and why)
SKIPPED_WHOLE = [
    ("fwmark, IPv6", _lines("-A -f 9 -6 -s rr -p 300 -M 64", "-a -f 9 -6 -r [fd00::11]:0 -g -w 1"),
     "line 1: FWM 9 IPv6 not imported: a firewall-mark service"),
    ("SCTP", _lines("-A --sctp-service 10.0.0.1:3868 -s rr", "-a --sctp-service 10.0.0.1:3868 -r 10.0.1.1 -m"),
     "line 1: SCTP 10.0.0.1:3868 not imported: SCTP"),
    ("dh", _lines("-A -t 10.0.0.1:80 -s dh"), "line 1: TCP 10.0.0.1:80 not imported: an LVS scheduler xdplb "
                                              "does not have (dh)"),
    ("ovf", _lines("-A -t 10.0.0.1:80 -s ovf"), "an LVS scheduler xdplb does not have (ovf)"),
    ("an unknown scheduler", _lines("-A -t 10.0.0.1:80 -s foo"), "a scheduler xdplb does not have (foo)"),
    ("SIP persistence engine", _lines("-A -u 10.0.0.1:5060 -s rr -p 60 --pe sip"),
     "line 1: UDP 10.0.0.1:5060 not imported: persistence engine sip"),
    ("GRE", _lines("-A -t 10.0.0.1:80", "-a -t 10.0.0.1:80 -r 10.0.1.1:80 -i -w 1 --tun-type gre --tun-csum"),
     "line 1: TCP 10.0.0.1:80 not imported: GRE tunnels"),
    ("one address on two NAT ports", _lines("-A -t 10.0.0.1:80", "-a -t 10.0.0.1:80 -r 10.0.1.1:8080 -m",
                                           "-a -t 10.0.0.1:80 -r 10.0.1.1:8081 -m"),
     "line 1: TCP 10.0.0.1:80 not imported: real server 10.0.1.1 is listed on two ports"),
]


@pytest.mark.parametrize(("text", "fragment"), [s[1:] for s in SKIPPED_WHOLE], ids=[s[0] for s in SKIPPED_WHOLE])
def test_untranslatable_service_is_skipped_whole_and_the_rest_imports(text, fragment):
    imported = ipvsadm.parse(_lines("-A -t 10.9.9.9:22 -s rr", "-a -t 10.9.9.9:22 -r 10.9.9.10:22 -g -w 1") +
                             text.replace("line 1", "line 3"))
    assert imported.services == [Service(protocol="tcp", vip="10.9.9.9", port=22, scheduler="rr",
                                         backends=(Backend(address="10.9.9.10"),))]
    assert len(imported.skipped) == 1
    assert fragment.replace("line 1:", "line 3:") in imported.skipped[0]


def test_long_options_prefix_comments_and_defaults():
    text = _lines("# /etc/sysconfig/ipvsadm, kept by hand",
                  "",
                  "ipvsadm --add-service --tcp-service 10.0.0.1:443 --persistent --scheduler=sed  # the API",
                  "ipvsadm --add-server --tcp-service 10.0.0.1:443 --real-server 10.0.1.1 --weight 4 "
                  "--u-threshold=400")
    imported = ipvsadm.parse(text)
    assert imported.services == [Service(
        protocol="tcp", vip="10.0.0.1", port=443, scheduler="sed", persistence=Persistence(timeout=360),
        backends=(Backend(address="10.0.1.1", weight=4, upper_threshold=400),))]
    assert imported.skipped == []


def test_ipvsadm_defaults_are_wlc_and_direct_routing():
    imported = ipvsadm.parse(_lines("-A -u 10.0.0.1:53", "-a -u 10.0.0.1:53 -r 10.0.1.1"))
    assert imported.services == [Service(protocol="udp", vip="10.0.0.1", port=53, scheduler="wlc", method="dr",
                                         backends=(Backend(address="10.0.1.1"),))]


def test_edit_lines_replace_what_they_name():
    text = _lines("-A -t 10.0.0.1:80 -s rr -p 60",
                  "-a -t 10.0.0.1:80 -r 10.0.1.1:80 -g -w 1",
                  "-E -t 10.0.0.1:80 -s wlc",
                  "-e -t 10.0.0.1:80 -r 10.0.1.1:80 -g -w 7")
    assert ipvsadm.parse(text).services == [Service(protocol="tcp", vip="10.0.0.1", port=80, scheduler="wlc",
                                                    backends=(Backend(address="10.0.1.1", weight=7),))]


def test_notes_for_what_changes_no_flow():
    text = _lines("--set 900 120 300",
                  "--start-daemon master --mcast-interface eth1 --syncid 51",
                  "-A -u 10.0.0.1:53 -s wrr -p 60 ops",  # ipvsadm-save before 1.27: a bare "ops"
                  "-a -u 10.0.0.1:53 -r 10.0.1.1:5353 -g -w 1",
                  "-A -t 10.0.0.1:80 -s sh -b flag-1,flag-2",
                  "-a -t 10.0.0.1:80 -r 10.0.1.1:80 -g -w 1",
                  "-A -t 10.0.0.1:81 -s rr -M 255.255.255.0 -b flag-3")
    imported = ipvsadm.parse(text)
    assert imported.services == [
        Service(protocol="udp", vip="10.0.0.1", port=53, scheduler="wrr", persistence=Persistence(timeout=60),
                backends=(Backend(address="10.0.1.1"),)),
        Service(protocol="tcp", vip="10.0.0.1", port=80, scheduler="sh", sched_flags={"sh-port"},
                backends=(Backend(address="10.0.1.1"),)),
        Service(protocol="tcp", vip="10.0.0.1", port=81, scheduler="rr"),
    ]
    _says(imported.skipped, [
        (1, "--set not translated: IPVS timeouts"),
        (2, "--start-daemon not translated: no connection sync"),
        (3, "-o not translated"),
        (4, "port 5353 of real server 10.0.1.1 not translated: DR cannot change the port"),
        (5, "sh-fallback not translated"),
        (7, "scheduler flag flag-3 not translated: no meaning for rr"),
        (7, "-M not translated: a netmask without -p has no effect"),
    ])


def test_nat_keeps_port_mapping_and_tun_crosses_families():
    text = _lines("-A -t [fd00:100::100]:443 -s mh -b mh-fallback,mh-port",
                  "-a -t [fd00:100::100]:443 -r 10.100.1.11:443 -i -w 2 --tun-type ipip",
                  "-A -t 10.0.0.1:80 -s rr",
                  "-a -t 10.0.0.1:80 -r 10.0.1.1:8080 -m -w 1",
                  "-a -t 10.0.0.1:80 -r 10.0.1.2 -m -w 1")
    imported = ipvsadm.parse(text)
    assert imported.services == [
        Service(protocol="tcp", vip="fd00:100::100", port=443, scheduler="mh", sched_flags={"mh-port"},
                method="tun", backends=(Backend(address="10.100.1.11", weight=2),)),
        Service(protocol="tcp", vip="10.0.0.1", port=80, scheduler="rr", method="nat",
                backends=(Backend(address="10.0.1.1", port=8080), Backend(address="10.0.1.2"))),
    ]
    _says(imported.skipped, [(1, "mh-fallback not translated")])


def test_empty_dump_imports_nothing():
    assert ipvsadm.parse("") == ipvsadm.parse("\n# nothing yet\n")
    assert ipvsadm.parse("").services == []
