"""The daemon's configuration file: a bad file is refused with messages naming the line and the field,
a good one reads back equal from its dump, and what it leaves out takes its default."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from xdplb.config import Config, ConfigError, XdpMode, dump_config, load_config, parse_config
from xdplb.model import Service, Timeouts
from xdplb.sizes import Sizes

pytestmark = pytest.mark.unit

HEAD = """\
director:
  name: lb1
  interfaces: [eth0]
"""


def _file(body: str, head: str = HEAD) -> tuple[str, int]:
    """The file's text and the line marked `# <-`, where the error must be reported."""
    text = head + textwrap.dedent(body)
    marked = [n for n, line in enumerate(text.splitlines(), 1) if "# <-" in line]
    assert len(marked) == 1, "mark exactly one line"
    return text, marked[0]


# (description, file body after HEAD (or a whole file when head is ""), head, field, message)
BAD = [
    ("YAML syntax: unclosed flow sequence", """\
     services:
       - protocol: tcp
         vip: 10.100.0.100
         port: 80
         backends: [{address: 10.100.0.11}
     timeouts: {}  # <-
     """, HEAD, None, "did not find expected ',' or ']' (while parsing a flow sequence at line 8)"),
    ("YAML syntax: a tab indents", """\
     services:
     \t- protocol: tcp  # <-
     """, HEAD, None, "cannot start any token"),
    ("YAML: a key given twice", """\
     timeouts: {tcp: 10}
     timeouts: {tcp: 20}  # <-
     """, HEAD, "timeouts", "given twice (first at line 4)"),
    ("unknown top-level field", """\
     colour: red  # <-
     """, HEAD, "colour", "Extra inputs are not permitted"),
    ("unknown service field", """\
     services:
       - protocol: tcp
         vip: 10.100.0.100
         port: 80
         colour: red  # <-
     """, HEAD, "services[0].colour", "Extra inputs are not permitted"),
    ("weight above 65535", """\
     services:
       - protocol: tcp
         vip: 10.100.0.100
         port: 80
         backends:
           - address: 10.100.0.11
           - address: 10.100.0.12
             weight: 70000  # <-
     """, HEAD, "services[0].backends[1].weight", "Input should be less than or equal to 65535"),
    ("bad VIP", """\
     services:
       - protocol: tcp
         vip: 10.100.0.300  # <-
         port: 80
     """, HEAD, "services[0].vip", "'10.100.0.300' is not an IPv4 or IPv6 address"),
    ("bad backend address, second service", """\
     services:
       - {protocol: udp, vip: 10.100.0.100, port: 53}
       - protocol: tcp
         vip: fd00:100::100
         port: 80
         backends:
           - address: fd00:100::zz  # <-
     """, HEAD, "services[1].backends[0].address", "is not an IPv4 or IPv6 address"),
    ("a service's own rule (port mapping needs NAT) points at the service", """\
     services:
       - protocol: tcp  # <-
         vip: 10.100.0.100
         port: 80
         backends: [{address: 10.100.0.11, port: 8080}]
     """, HEAD, "services[0]", "port mapping (80 -> 8080) needs NAT"),
    ("two services with the same key", """\
     services:
       - {protocol: tcp, vip: 10.100.0.100, port: 80, scheduler: rr}
       - {protocol: udp, vip: 10.100.0.100, port: 80}
       - {protocol: tcp, vip: 10.100.0.100, port: 80, scheduler: mh}  # <-
     """, HEAD, "services[2]", "TCP 10.100.0.100:80 mh has the same key as services[0] (TCP 10.100.0.100:80 rr)"),
    ("two multi-port services with the same fwmark", """\
     services:
       - {protocol: tcp, vip: 10.100.0.100, port: 80, fwmark: 7}
       - {protocol: tcp, vip: 10.100.0.101, port: 80, fwmark: 7}  # <-
     """, HEAD, "services[1]", "FWM 7 wrr has the same key as services[0] (FWM 7 wrr)"),
    ("an endpoint another service holds", """\
     services:
       - protocol: tcp
         vip: 10.100.0.100
         port: 80
         fwmark: 7
         endpoints: [{protocol: tcp, vip: 10.100.0.100, port: 443}]
       - protocol: tcp  # <-
         vip: 10.100.0.100
         port: 443
     """, HEAD, "services[1]",
     "TCP 10.100.0.100:443 wrr listens on tcp/10.100.0.100:443, already an endpoint of services[0] (FWM 7 wrr)"),
    ("missing interfaces", """\
     director:  # <-
       name: lb1
     """, "", "director.interfaces", "Field required"),
    ("no interface", """\
     director:
       name: lb1
       interfaces: []  # <-
     """, "", "director.interfaces", "at least 1 item"),
    ("not an interface name", """\
     director:
       name: lb1
       interfaces:
         - eth0
         - eth/1  # <-
     """, "", "director.interfaces[1]", "'eth/1' is not an interface name"),
    ("an interface twice", """\
     director:
       name: lb1
       interfaces: [eth0, eth1, eth0]  # <-
     """, "", "director.interfaces", "an interface is listed twice"),
    ("missing director", """\
     services: []  # <-
     """, "", "director", "Field required"),
    ("a director name that is not a path component", """\
     director:
       name: ../lb1  # <-
       interfaces: [eth0]
     """, "", "director.name", "it names directories"),
    ("bad XDP mode", """\
     director:
       name: lb1
       interfaces: [eth0]
       xdp_mode: skb  # <-
     """, "", "director.xdp_mode", "'auto', 'native' or 'generic'"),
    ("relative state directory", """\
     director:
       name: lb1
       interfaces: [eth0]
       state_dir: var/lib/xdplb  # <-
     """, "", "director.state_dir", "not an absolute path"),
    ("size below sh's buckets", """\
     director:
       name: lb1
       interfaces: [eth0]
       sizes:
         conn_max: 65536
         seq_max: 100  # <-
     """, "", "director.sizes.seq_max", "greater than or equal to 256"),
    ("lc_max the verifier refuses", """\
     director:
       name: lb1
       interfaces: [eth0]
       sizes: {lc_max: 2048}  # <-
     """, "", "director.sizes.lc_max", "less than or equal to 1024"),
    ("unknown size", """\
     director:
       name: lb1
       interfaces: [eth0]
       sizes:
         conntrack: 65536  # <-
     """, "", "director.sizes.conntrack", "Unexpected keyword argument"),
    ("timeout zero", """\
     timeouts:
       udp: 0  # <-
     """, HEAD, "timeouts.udp", "greater than or equal to 1"),
    ("ha is a mapping", """\
     ha: 3  # <-
     """, HEAD, "ha", "valid dictionary"),
    ("not a mapping at all", """\
     - eth0  # <-
     """, "", None, "valid dictionary"),
]


@pytest.mark.parametrize(("body", "head", "field", "message"), [case[1:] for case in BAD],
                         ids=[case[0] for case in BAD])
def test_bad_file_names_line_and_field(tmp_path: Path, body: str, head: str, field: str | None, message: str):
    text, line = _file(body, head)
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert len(info.value.messages) == 1, info.value.messages
    expected = f"{path} line {line}: " + (f"{field}: " if field else "")
    got = info.value.messages[0]
    assert got.startswith(expected), got
    assert message in got


def test_every_problem_is_reported_in_file_order():
    text, _ = _file("""\
    timeouts: {tcp: 0}
    services:
      - protocol: sctp
        vip: 10.100.0.100
        port: 70000
        backends: [{address: 10.100.0.11, weight: -1}]  # <-
    """)
    with pytest.raises(ConfigError) as info:
        parse_config(text, "c.yaml")
    assert info.value.messages == [
        "c.yaml line 4: timeouts.tcp: Input should be greater than or equal to 1",
        "c.yaml line 6: services[0].protocol: Input should be 'tcp' or 'udp'",
        "c.yaml line 8: services[0].port: Input should be less than or equal to 65535",
        "c.yaml line 9: services[0].backends[0].weight: Input should be greater than or equal to 0",
    ]
    assert str(info.value) == "\n".join(info.value.messages)


def test_unreadable_file_is_a_config_error(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"missing\.yaml: .*No such file"):
        load_config(tmp_path / "missing.yaml")


FULL = """\
director:
  name: lb2
  interfaces: [front, back]
  xdp_mode: native
  pin_dir: /sys/fs/bpf/lab/lb2
  state_dir: /tmp/xdplb-lb2
  sizes: {max_services: 8, conn_max: 65536, ring_max: 4099, seq_max: 256}
services:
  - protocol: tcp
    vip: 10.100.0.100
    port: 80
    scheduler: mh
    sched_flags: [mh-port]
    ring_size: 4099
    persistence: {timeout: 60, netmask: 255.255.255.0}
    fwmark: 7
    endpoints: [{protocol: tcp, vip: 10.100.0.100, port: 443}]
    backends:
      - {address: 10.100.0.11, weight: 3, upper_threshold: 100}
      - {address: 10.100.0.12, weight: 0}
  - protocol: udp
    vip: fd00:100::100
    port: 0
    scheduler: wlc
    method: tun
    tunnel: {encap: gue, gue_port: 6081, vary_source_bits: 4}
    expire_nodest: false
    backends:
      - address: fd00:100::11
      - address: 10.100.0.12
        tunnel: {encap: ipip, source: 10.100.0.2}
timeouts: {tcp: 600, udp: 30}
checks: {http: {path: /health}}
ha:
  instances:
    - name: VI_1
      interface: eth0
      vrid: 51
      priority: 150
      advert_interval: 0.1
      addresses: [10.100.0.100/32]
      excluded_addresses: ["fd00:100::100/128", "10.200.0.1/24 dev eth1"]
      unicast_peers: [10.100.0.3]
      track_interfaces: [{name: eth1, weight: -60}]
      track_services: [{service: "tcp:10.100.0.100:80"}]
      notify: [/usr/local/bin/vrrp-notify, --verbose]
"""


def test_good_file_round_trips(tmp_path: Path):
    config = parse_config(FULL)
    assert config.director.xdp_mode == XdpMode.NATIVE
    assert config.services[0].persistence.netmask == 24
    assert config.services[1].backends[1].tunnel.source.version == 4
    dumped = dump_config(config)
    path = tmp_path / "dumped.yaml"
    path.write_text(dumped)
    again = load_config(path)
    assert again == config
    assert dump_config(again) == dumped


def test_defaults_fill_in():
    config = parse_config(HEAD)
    assert config.director.pin_dir == Path("/sys/fs/bpf/xdplb/lb1")
    assert config.director.state_dir == Path("/var/lib/xdplb/lb1")
    assert config.director.xdp_mode == XdpMode.AUTO
    assert config.director.sizes == Sizes()
    assert config.services == []
    assert config.timeouts == Timeouts()
    assert config.checks == {}
    assert config.ha is None
    assert parse_config(HEAD + "timeouts: {udp: 30}\n").timeouts == Timeouts(udp=30)
    assert dump_config(config) == textwrap.dedent("""\
        director:
          name: lb1
          interfaces:
          - eth0
          pin_dir: /sys/fs/bpf/xdplb/lb1
          state_dir: /var/lib/xdplb/lb1
        """)


def test_collisions_are_refused_outside_files_too():
    svc = dict(protocol="tcp", vip="10.100.0.100", port=80)
    with pytest.raises(ValidationError, match=re.escape("has the same key as services[0]")):
        Config(director={"name": "lb1", "interfaces": ["eth0"]}, services=[Service(**svc), Service(**svc)])
    # the port-0 wildcard and an exact port are two services: the exact one wins in the data plane
    Config(director={"name": "lb1", "interfaces": ["eth0"]}, services=[Service(**svc), Service(**{**svc, "port": 0})])


def test_sizes_are_the_data_planes_own():
    """The director's sizes are xdplb.sizes.Sizes itself, checked when the file is read."""
    config = parse_config(HEAD + "  sizes: {conn_max: 4096, lc_max: 1}\n")
    assert config.director.sizes == Sizes(conn_max=4096, lc_max=1)
    with pytest.raises(ConfigError, match="lc_max: Input should be less than or equal to 1024"):
        parse_config(HEAD + "  sizes: {lc_max: 1025}\n")
