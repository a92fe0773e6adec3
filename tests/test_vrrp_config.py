"""The `ha:` section of the daemon's configuration: what it accepts, and what it refuses with the
file's line and a message saying why (nothing of a refused file is used)."""

from __future__ import annotations

import textwrap

import pytest

from xdplb.config import ConfigError, dump_config, parse_config

pytestmark = pytest.mark.unit

HEAD = "director: {name: lb1, interfaces: [front]}\nha:\n  instances:\n"


def ha(*instances: str) -> str:
    return HEAD + "".join(textwrap.indent(textwrap.dedent(i), "    ") for i in instances)


ONE = """\
- name: VI_1
  interface: front
  vrid: 51
  addresses: [10.100.0.100/32]
"""


def test_defaults_are_keepalived_like():
    inst = parse_config(ha(ONE)).ha.instances[0]
    assert (inst.priority, inst.advert_interval, inst.preempt, inst.pseudo_header) == (100, 1.0, True, True)
    assert (inst.family, inst.interval_cs, inst.unicast_peers) == (4, 100, [])
    assert [str(a) for a in inst.all_addresses()] == ["10.100.0.100/32 dev front"]


def test_addresses_in_keepalived_form_and_the_excluded_ones_of_another_family():
    text = ha(ONE.replace("addresses: [10.100.0.100/32]", 'addresses: ["10.100.0.100"]\n'
                          '  excluded_addresses: ["fd00:100::100/128", "10.200.0.1/24 dev back"]'))
    inst = parse_config(text).ha.instances[0]
    assert [str(a) for a in inst.all_addresses()] == [
        "10.100.0.100/32 dev front", "fd00:100::100/128 dev front", "10.200.0.1/24 dev back"]
    assert parse_config(dump_config(parse_config(text))) == parse_config(text)


@pytest.mark.parametrize(("change", "message"), [
    (("vrid: 51", "vrid: 0"), "greater than or equal to 1"),
    (("vrid: 51", "vrid: 256"), "less than or equal to 255"),
    (("vrid: 51", "vrid: 51\n  priority: 0"), "greater than or equal to 1"),
    (("vrid: 51", "vrid: 51\n  advert_interval: 41"), "less than or equal to 40.95"),
    (("addresses: [10.100.0.100/32]", "addresses: []"), "at least 1 item"),
    (("addresses: [10.100.0.100/32]", 'addresses: [10.100.0.100/32, "fd00::1"]'), "share one family"),
    (("addresses: [10.100.0.100/32]", 'addresses: ["10.100.0.100 via front"]'), "ADDRESS[/PREFIX] [dev INTERFACE]"),
    (("addresses: [10.100.0.100/32]", "addresses: [10.100.0.300]"), "addresses[0]"),
    (("vrid: 51", "vrid: 51\n  unicast_peers: ['fd00::3']"), "are not IPv4"),
    (("addresses: [10.100.0.100/32]", "addresses: ['fd00::100']\n  pseudo_header: false"),
     "always covers the pseudo-header"),
    (("interface: front", "interface: a/b"), "is not an interface name"),
    (("name: VI_1", "name: VI.1"), "letters, digits"),
    (("vrid: 51", "vrid: 51\n  track_interfaces: [{name: back, weight: 255}]"), "less than or equal to 254"),
    (("vrid: 51", "vrid: 51\n  notify: []"), "notify needs a program"),
    (("vrid: 51", "vrid: 51\n  colour: blue"), "Extra inputs are not permitted"),
])
def test_a_bad_instance_is_refused_with_its_line(change, message):
    with pytest.raises(ConfigError) as e:
        parse_config(ha(ONE.replace(*change)))
    assert message in str(e.value)
    assert " line " in str(e.value)


@pytest.mark.parametrize(("second", "message"), [
    (ONE.replace("vrid: 51", "vrid: 52").replace("10.100.0.100", "10.100.0.101"), "two instances are named VI_1"),
    (ONE.replace("VI_1", "VI_2").replace("10.100.0.100", "10.100.0.101"), "VRID 51 on front (IPv4)"),
    (ONE.replace("VI_1", "VI_2").replace("vrid: 51", "vrid: 52"), "10.100.0.100 on front is already"),
])
def test_instances_may_not_collide(second, message):
    with pytest.raises(ConfigError) as e:
        parse_config(ha(ONE, second))
    assert message in str(e.value)


def test_the_same_vrid_in_another_family_is_another_router():
    v6 = ONE.replace("VI_1", "VI_6").replace("10.100.0.100/32", "'fd00:100::100/128'")
    assert [i.family for i in parse_config(ha(ONE, v6)).ha.instances] == [4, 6]
