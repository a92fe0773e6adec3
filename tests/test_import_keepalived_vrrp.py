"""keepalived's vrrp_instance blocks become xdplb's `ha:` section: a director pair's keepalived.conf
(two instances, IPv4 and IPv6, unicast peers, tracked interfaces with weights, notify, garp settings
and global_defs defaults, through an include) becomes exactly the instances keepalived would run; what
keepalived corrects is corrected and said, what xdplb has no counterpart for is said with its file and
line, and an instance keepalived (or xdplb) would refuse refuses the whole import. `xdplb import
keepalived --ha-yaml PATH` writes the section as YAML that the daemon's configuration takes back equal,
and a file of VRRP instances alone leaves the running services as they are."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tests import test_cli_ops
from tests.test_cli_ops import CLEAN_ENV, Cli
from xdplb.cli import app
from xdplb.cli_apply import ha_document
from xdplb.config import parse_config
from xdplb.imports import ipvsadm, keepalived
from xdplb.imports.result import Imported, ImportFormatError
from xdplb.model import Backend, Service
from xdplb.vrrp.config import HaSettings, Instance, TrackInterface

pytestmark = [pytest.mark.api, pytest.mark.ha]

# the CLI against a real API on a Unix socket, and no settings of this host: test_cli_ops's fixtures
server, cli, no_host_settings = test_cli_ops.server, test_cli_ops.cli, test_cli_ops.no_host_settings

PAIR = Path(__file__).parent / "data" / "imports" / "keepalived-vrrp"
SITE = Path(__file__).parent / "data" / "imports" / "keepalived"
NOTIFY = "/usr/local/sbin/lb-notify.sh"

EXPECTED_HA = HaSettings(instances=[
    Instance(name="VI_FRONT4", interface="eth0", vrid=51, priority=170, advert_interval=0.5, preempt_delay=30,
             addresses=["10.100.0.100/24 dev eth0", "10.100.0.101/24 dev eth0", "10.100.0.102/32"],
             excluded_addresses=["10.200.0.1/24 dev eth1"],
             unicast_source="10.100.0.2", unicast_peers=["10.100.0.3"],
             track_interfaces=[TrackInterface(name="eth1", weight=-60), TrackInterface(name="bond0", weight=-20),
                               TrackInterface(name="eth2")],
             notify=[NOTIFY, "front"], garp_repeat=3, garp_delay=2, garp_refresh=60),
    Instance(name="VI_FRONT6", interface="eth0", vrid=52, priority=150, preempt=False,
             addresses=["fd00:100::100/64 dev eth0", "fd00:100::101/64"],
             unicast_source="fd00:100::2", unicast_peers=["fd00:100::3"],
             track_interfaces=[TrackInterface(name="eth1", weight=-60)],
             notify=[NOTIFY], garp_repeat=1, garp_delay=0, garp_refresh=120),
])

EXPECTED_SERVICES = [
    Service(protocol="tcp", vip="10.100.0.100", port=80, scheduler="wlc", method="dr",
            backends=(Backend(address="10.100.1.11", weight=3), Backend(address="10.100.1.12"))),
    Service(protocol="tcp", vip="fd00:100::100", port=80, scheduler="rr", method="dr",
            backends=(Backend(address="fd00:100:1::11"),)),
]

# (file, line, what the message says) for every item of the pair's configuration not translated as is
EXPECTED_SKIPPED = [
    ("keepalived.conf", 6, "global_defs not translated"),
    ("keepalived.conf", 17, "vrrp_script not translated: xdplb's instances track interfaces, and services"),
    ("keepalived.conf", 23, "vrrp_sync_group not translated: xdplb has no sync groups"),
    ("keepalived.conf", 31, "keepalived adds a positive track_interface weight while the interface is up"),
    ("keepalived.conf", 42, "authentication not translated: VRRPv3 has no authentication"),
    ("keepalived.conf", 47, "label eth0:web of 10.100.0.100/24 not translated"),
    ("keepalived.conf", 59, "track_script not translated"),
    ("keepalived.conf", 62, "user root of notify not translated: xdplb runs hooks as itself"),
    ("keepalived.conf", 63, "notify_master not translated: xdplb runs one notify command for every transition"),
    ("conf.d/front6.conf", 10, "min_ttl 255 of unicast peer fd00:100::3 not translated"),
    ("conf.d/front6.conf", 11, "unicast peer 10.100.0.3 not translated: it is not IPv6, like the instance"),
]

HEAD = """\
director:
  name: lb1
  interfaces: [eth0]
"""


def _pair() -> Imported:
    return keepalived.parse((PAIR / "keepalived.conf").read_text(), base_dir=PAIR)


def _says(skipped: list[str], expected: list[tuple[str, int, str]]) -> None:
    """`skipped` holds exactly one message per expected (file, line, text), in that order."""
    assert len(skipped) == len(expected), "\n".join(skipped)
    for message, (source, line, text) in zip(skipped, expected, strict=True):
        assert message.startswith(f"{source} line {line}: "), message
        assert text in message, message


# ---- a director pair's configuration -----------------------------------------------------------------

def test_a_director_pairs_instances_become_the_ha_section():
    imported = _pair()
    assert imported.ha == EXPECTED_HA
    assert imported.ha.instances[1].family == 6 and imported.ha.instances[0].pseudo_header


def test_the_pairs_services_are_imported_as_without_vrrp():
    imported = _pair()
    assert imported.services == EXPECTED_SERVICES
    alone = keepalived.parse((PAIR / "conf.d" / "web.conf").read_text(), "conf.d/web.conf")
    assert alone.services == imported.services and alone.ha is None


def test_the_pair_lists_what_is_not_translated_with_file_and_line():
    _says(_pair().skipped, EXPECTED_SKIPPED)


@pytest.mark.parametrize("where", [PAIR, SITE], ids=["pair", "site"])
def test_the_yaml_in_a_daemon_configuration_is_the_imported_ha(where):
    imported = keepalived.parse((where / "keepalived.conf").read_text(), base_dir=where)
    document = ha_document(imported.ha, "imported from keepalived.conf")
    assert document.startswith("# imported from keepalived.conf\n#")
    assert list(yaml.safe_load(document)) == ["ha"]
    assert parse_config(HEAD + document, "xdplb.yaml").ha == imported.ha


def test_the_sites_mixed_families_go_to_the_excluded_addresses():
    imported = keepalived.parse((SITE / "keepalived.conf").read_text(), base_dir=SITE)
    assert imported.ha == HaSettings(instances=[Instance(
        name="VI_WEB", interface="eth0", vrid=51, priority=150,
        addresses=["10.100.0.100/24 dev eth0", "10.100.0.101/24 dev eth0"],
        excluded_addresses=["fd00:100::100/64 dev eth0"], garp_refresh=0)])


def test_no_vrrp_instance_no_ha():
    assert keepalived.parse("global_defs {\n  vrrp_version 3\n}\n").ha is None
    assert ipvsadm.parse("-A -t 10.0.0.1:80 -s rr\n").ha is None


# ---- each mapping ----------------------------------------------------------------------------------------

def _instance(body: str, name: str = "VI_1") -> str:
    return f"vrrp_instance {name} {{\n{textwrap.dedent(body)}}}\n"


BASE = """\
    interface eth0
    virtual_router_id 51
    virtual_ipaddress {
        10.0.0.100/24
    }
"""


def _said(imported: Imported) -> list[str]:
    """What was said, but that global_defs is not translated."""
    return [m for m in imported.skipped if "global_defs not translated" not in m]


def _one(body: str = "", head: str = "") -> tuple[Instance, list[str]]:
    """The instance of BASE + body (after `head`, e.g. a global_defs), and what was said of it (but
    that global_defs is not translated)."""
    imported = keepalived.parse(head + _instance(textwrap.dedent(BASE) + textwrap.dedent(body)))
    assert imported.ha is not None and len(imported.ha.instances) == 1
    return imported.ha.instances[0], _said(imported)


V3 = "global_defs {\n    vrrp_version 3\n}\n"  # lines 1-3: the instance is on line 4, BASE 5-9, the body from 10


def _v3(body: str = "") -> tuple[Instance, list[str]]:
    return _one(body, V3)


def test_keepalived_defaults():
    inst, skipped = _one()
    assert inst == Instance(name="VI_1", interface="eth0", vrid=51, priority=100, advert_interval=1, preempt=True,
                            preempt_delay=0, addresses=["10.0.0.100/24"], garp_repeat=5, garp_delay=5,
                            garp_refresh=0)  # keepalived refreshes no gratuitous ARP unless told
    assert skipped == ["keepalived.conf line 1: vrrp_instance VI_1 runs VRRPv2 in keepalived (keepalived's default "
                       "for IPv4): xdplb speaks VRRPv3 (RFC 5798) only; set vrrp_version 3 on its keepalived peers "
                       "while they run beside xdplb"]


@pytest.mark.parametrize(("head", "body", "said"), [
    ("", "version 2\n", "(version 2 at keepalived.conf line 7)"),
    ("global_defs {\n    vrrp_version 2\n}\n", "", "(vrrp_version 2 at keepalived.conf line 2)"),
])
def test_vrrp_version_2_is_said(head, body, said):
    _, skipped = _one(body, head)
    assert len(skipped) == 1 and "runs VRRPv2 in keepalived " + said in skipped[0]


@pytest.mark.parametrize(("head", "body"), [(V3, ""), ("", "version 3\n"), (V3.replace("3", "2"), "version 3\n")])
def test_vrrp_version_3_is_what_xdplb_speaks(head, body):
    assert _one(body, head)[1] == []


def test_an_ipv6_instance_runs_version_3_in_keepalived_too():
    imported = keepalived.parse(_instance("""\
        interface eth0
        virtual_router_id 51
        virtual_ipaddress {
            fe80::51/64
            2001:db8::100/64 dev eth0
        }
        """))
    assert imported.skipped == []
    [inst] = imported.ha.instances
    assert inst.family == 6 and [str(a) for a in inst.addresses] == ["fe80::51/64", "2001:db8::100/64 dev eth0"]


def test_state_is_left_aside_but_state_master_without_priority_is_the_owner():
    assert _v3("state MASTER\npriority 100\n") == (_v3()[0], [])
    assert _v3("state BACKUP\n")[0].priority == 100
    inst, skipped = _v3("state MASTER\n")
    assert inst.priority == 255
    assert skipped == ["keepalived.conf line 10: state MASTER without a priority: keepalived makes the instance the "
                       "address owner (priority 255), and so does the import"]


@pytest.mark.parametrize(("body", "preempt", "delay", "said"), [
    ("nopreempt\n", False, 0, []),
    ("preempt_delay 12.5\n", True, 12.5, []),
    ("nopreempt\npreempt\n", True, 0, []),
    ("state MASTER\npriority 150\nnopreempt\n", True, 0,
     [(12, "nopreempt not translated: keepalived drops it with state MASTER, and so does the import")]),
    ("state MASTER\npriority 150\npreempt_delay 30\n", True, 0,
     [(12, "preempt_delay not translated: keepalived drops it with state MASTER")]),
    ("nopreempt\npreempt_delay 30\n", False, 0,
     [(11, "preempt_delay not translated: keepalived drops it with nopreempt")]),
    ("priority 255\nnopreempt\n", True, 0,
     [(11, "nopreempt not translated: keepalived drops it with priority 255 (the address owner)")]),
])
def test_preemption_as_keepalived_resets_it(body, preempt, delay, said):
    inst, skipped = _v3(body)
    assert (inst.preempt, inst.preempt_delay) == (preempt, delay)
    _says(skipped, [("keepalived.conf", line, text) for line, text in said])


@pytest.mark.parametrize(("value", "interval", "said"), [
    ("3", 3.0, None),
    ("0.25", 0.25, None),
    ("0.125", 0.13, "advert_int 0.125 is not in units of 10 ms: keepalived rounds it to 0.13 s"),
    ("0.001", 0.01, "advert_int 0.001 is not in units of 10 ms: keepalived rounds it to 0.01 s"),
    ("0", 1.0, "advert_int 0: keepalived takes its default of 1 s"),
    ("60", 40.95, "advert_int 60 is above VRRPv3's 40.95 s: keepalived sends 40.95 s"),
])
def test_advert_int_in_centiseconds_as_keepalived_sends_it(value, interval, said):
    inst, skipped = _v3(f"advert_int {value}\n")
    assert inst.advert_interval == interval
    _says(skipped, [("keepalived.conf", 10, said)] if said else [])


def test_addresses_keep_their_dev_and_leave_the_rest_out():
    inst, skipped = _v3("""\
        virtual_ipaddress {
            10.0.0.101/24 brd 10.0.0.255 dev eth0.100 scope global label eth0.100:vip
            10.0.0.102 -nodad no_track
        }
        virtual_ipaddress_excluded {
            10.1.0.1/24 dev eth1
            2001:db8::1/64 dev eth1
            192.168.7.7
        }
        """)
    assert [str(a) for a in inst.addresses] == ["10.0.0.100/24", "10.0.0.101/24 dev eth0.100", "10.0.0.102/32"]
    assert [str(a) for a in inst.excluded_addresses] == ["10.1.0.1/24 dev eth1", "2001:db8::1/64 dev eth1",
                                                         "192.168.7.7/32"]
    assert [str(a) for a in inst.all_addresses()][-1] == "192.168.7.7/32 dev eth0"
    assert skipped == [
        "keepalived.conf line 11: brd 10.0.0.255, scope global, label eth0.100:vip of 10.0.0.101/24 not translated: "
        "xdplb adds the address with its prefix on its interface, nothing more",
        "keepalived.conf line 12: -nodad, no_track of 10.0.0.102 not translated: xdplb adds the address with its "
        "prefix on its interface, nothing more"]


def test_the_first_address_gives_the_family_the_others_are_excluded():
    imported = keepalived.parse(V3 + _instance("""\
        interface eth0
        virtual_router_id 51
        virtual_ipaddress {
            2001:db8::100/64
            10.0.0.100/24 dev eth0
            2001:db8::101/64
        }
        virtual_ipaddress_excluded {
            10.0.0.200
        }
        """))
    [inst] = imported.ha.instances
    assert [str(a) for a in inst.addresses] == ["2001:db8::100/64", "2001:db8::101/64"]
    assert [str(a) for a in inst.excluded_addresses] == ["10.0.0.100/24 dev eth0", "10.0.0.200/32"]
    assert _said(imported) == [
        "keepalived.conf line 9: virtual_ipaddress 10.0.0.100/24 moved to excluded_addresses: an instance advertises "
        "one family, here IPv6 (its first address's); keepalived drops it, xdplb moves it with the instance without "
        "advertising it"]


def test_unicast_source_and_peers_of_the_instances_family():
    inst, skipped = _v3("""\
        mcast_src_ip 10.0.0.1
        unicast_peer {
            10.0.0.2
            10.0.0.3 max_ttl 64
            2001:db8::3
            10.0.0.2
        }
        """)
    assert (str(inst.unicast_source), [str(p) for p in inst.unicast_peers]) == ("10.0.0.1", ["10.0.0.2", "10.0.0.3"])
    _says(skipped, [("keepalived.conf", 13, "max_ttl 64 of unicast peer 10.0.0.3 not translated: xdplb bounds no "
                                            "peer's TTL"),
                    ("keepalived.conf", 14, "unicast peer 2001:db8::3 not translated: it is not IPv4"),
                    ("keepalived.conf", 15, "unicast peer 10.0.0.2 is listed twice")])
    inst, skipped = _v3("unicast_src_ip 2001:db8::1\n")
    assert inst.unicast_source is None
    _says(skipped, [("keepalived.conf", 10, "unicast_src_ip 2001:db8::1 not translated: it is not IPv4")])


@pytest.mark.parametrize(("entries", "priority", "tracks", "said"), [
    # keepalived: a negative weight comes off while the interface is down: the same number in xdplb
    (["eth1 weight -30", "eth2"], 100, [("eth1", -30), ("eth2", 0)], []),
    # a positive one is added while the interface is up: in the priority, off while it is down
    (["eth1 weight 20", "eth2 weight 30"], 150, [("eth1", -20), ("eth2", -30)],
     [(4, "keepalived adds a positive track_interface weight while the interface is up (a `reverse` one takes it "
          "off): the import puts it in the priority (100 becomes 150) and takes it off while the interface is down, "
          "the priorities keepalived has in every state")]),
    # reverse turns the sign: a positive weight off while up, a negative one added while down
    (["eth1 weight 20 reverse", "eth2 weight -30 reverse", "eth3 weight 5 noreverse"], 85,
     [("eth1", 20), ("eth2", 30), ("eth3", -5)], [(4, "(100 becomes 85)")]),
    (["eth1 weight 254", "eth2 weight -254"], 254, [("eth1", -253), ("eth2", -253)],
     [(4, "keepalived's would be 353, and stops at 254: with a tracked interface down, xdplb's is lower by its "
          "weight from 254, keepalived's from 353"),
      (11, "track_interface eth1 weight 254: keepalived takes 253, and so does the import"),
      (12, "track_interface eth2 weight -254: keepalived takes -253, and so does the import")]),
    (["eth0 weight -10", "eth1", "eth1 weight -10", "eth2 weight 0 reverse"], 100, [("eth1", 0)],
     [(11, "track_interface eth0 not translated: it is the instance's own interface"),
      (13, "track_interface eth1 not translated: it is tracked already (keepalived.conf line 12)"),
      (14, "track_interface eth2 not translated: `reverse` with no weight is a fault while the interface is up")]),
])
def test_track_interface_weights_give_keepaliveds_priorities(entries, priority, tracks, said):
    block = "track_interface {\n" + "".join(f"    {e}\n" for e in entries) + "}\n"
    inst, skipped = _v3(block)
    assert inst.priority == priority
    assert [(t.name, t.weight) for t in inst.track_interfaces] == tracks
    _says(skipped, [("keepalived.conf", line, text) for line, text in said])


def test_the_owner_keeps_priority_255_whatever_it_tracks():
    inst, skipped = _v3("priority 255\ntrack_interface {\n    eth1 weight 20\n}\n")
    assert (inst.priority, inst.track_interfaces, skipped) == (255, [TrackInterface(name="eth1", weight=-20)], [])


@pytest.mark.parametrize(("line", "notify", "said"), [
    ('notify "/usr/local/bin/vrrp-notify --site lb"', ["/usr/local/bin/vrrp-notify", "--site", "lb"], None),
    ("notify /usr/local/bin/vrrp-notify", ["/usr/local/bin/vrrp-notify"], None),
    ("notify \"/usr/local/bin/vrrp-notify 'a b'\" keepalived_script",
     ["/usr/local/bin/vrrp-notify", "a b"], "user keepalived_script of notify not translated"),
    ('notify "/usr/local/bin/vrrp-notify | logger"', None, "notify not translated: it uses the shell's |"),
])
def test_notify_is_the_one_hook(line, notify, said):
    inst, skipped = _v3(line + "\n")
    assert inst.notify == notify
    _says(skipped, [("keepalived.conf", 10, said)] if said else [])


@pytest.mark.parametrize("keyword", ["notify_master", "notify_backup", "notify_fault", "notify_stop"])
def test_notify_per_state_is_left_out_with_a_hint(keyword):
    inst, skipped = _v3(f'{keyword} "/etc/keepalived/{keyword}.sh"\n')
    assert inst.notify is None
    assert skipped == [f"keepalived.conf line 10: {keyword} not translated: xdplb runs one notify command for every "
                       "transition, with INSTANCE NAME STATE PRIORITY appended as keepalived's `notify` gets them: "
                       "give it a `notify` script that acts on STATE"]


@pytest.mark.parametrize(("head", "body", "garp", "said"), [
    ("", "", (5, 5, 0), []),
    ("vrrp_garp_master_delay 1\nvrrp_garp_master_repeat 2\nvrrp_garp_master_refresh 300\n", "", (1, 2, 300), []),
    ("vrrp_garp_master_delay 1\nvrrp_garp_master_refresh 300\n",
     "garp_master_delay 10\ngarp_master_repeat 4\ngarp_master_refresh 0\n", (10, 4, 0), []),
    ("vrrp_garp_master_repeat 9\nvrrp_min_garp\n", "", (0, 1, 0), []),
    ("vrrp_min_garp false\n", "", (5, 5, 0), []),
    ("", "garp_master_repeat 0\n", (5, 1, 0),
     [("keepalived.conf", 10, "garp_master_repeat 0: keepalived sends 1, and so does the import")]),
    ("vrrp_garp_master_repeat 0\n", "", (5, 1, 0),
     [("keepalived.conf", 3, "vrrp_garp_master_repeat 0: keepalived sends 1")]),
])
def test_garp_settings_and_their_global_defaults(head, body, garp, said):
    globals_ = "global_defs {\nvrrp_version 3\n" + head + "}\n"
    inst, skipped = _one(body, globals_)
    assert (inst.garp_delay, inst.garp_repeat, inst.garp_refresh) == garp
    _says(skipped, said)


@pytest.mark.parametrize(("statement", "text"), [
    ("authentication {\n    auth_type PASS\n    auth_pass 1234\n}", "authentication not translated: VRRPv3 has no "
                                                                    "authentication"),
    ("use_vmac vrrp.51", "use_vmac not translated: xdplb announces the VIPs with the interface's own MAC address"),
    ("strict_mode on", "strict_mode not translated: xdplb has no strict mode"),
    ("no_accept", "no_accept not translated: xdplb's instances take traffic to their VIPs"),
    ("track_script {\n    chk\n}", "track_script not translated: xdplb's instances track interfaces"),
    ("track_process {\n    nginx\n}", "track_process not translated"),
    ("track_file {\n    maint weight -50\n}", "track_file not translated"),
    ("virtual_routes {\n    0.0.0.0/0 via 10.0.0.254\n}", "virtual_routes not translated: xdplb moves addresses "
                                                           "only: add routes in the notify script"),
    ("dont_track_primary", "dont_track_primary not translated: xdplb puts an instance in fault when its own "
                           "interface is down"),
    ("smtp_alert", "smtp_alert not translated: xdplb sends no mail"),
    ("unicast_ttl 10", "unicast_ttl not translated: xdplb has no such setting"),
    ("fancy_option 1", "fancy_option not translated: unknown keyword: keepalived ignores it"),
    ("@lb2 priority 50", "@lb2 priority 50 not translated: conditional configuration (@lb2) is not evaluated"),
])
def test_what_xdplb_has_no_counterpart_for_is_said(statement, text):
    inst, skipped = _v3("accept\n" + statement + "\n")
    assert inst == _v3()[0]
    _says(skipped, [("keepalived.conf", 11, text)])


@pytest.mark.parametrize(("block", "text"), [
    ("vrrp_sync_group G {\n  group {\n    VI_1\n  }\n}", "vrrp_sync_group not translated: xdplb has no sync groups"),
    ("vrrp_script chk {\n  script /bin/true\n}", "vrrp_script not translated"),
    ("vrrp_track_process nginx {\n  process nginx\n}", "vrrp_track_process not translated"),
    ("track_file maint {\n  file /etc/maint\n}", "track_file not translated"),
    ("global_defs {\n  vrrp_strict\n}", "vrrp_strict not translated: xdplb has no strict mode"),
])
def test_vrrp_blocks_xdplb_has_no_counterpart_for(block, text):
    imported = keepalived.parse(block + "\n" + V3 + _instance(BASE))
    assert imported.ha.instances[0] == _v3()[0]
    said = [m for m in imported.skipped if "global_defs not translated" not in m]
    assert len(said) == 1 and text in said[0], imported.skipped


@pytest.mark.parametrize(("name", "xdplb"), [
    ("VI.web", "VI_web"),
    ("_internal", "vi_internal"),
    ("front/ipv4 é", "front_ipv4__"),
    ("x" * 70, "x" * 64),
])
def test_names_xdplb_refuses_are_rewritten_and_said(name, xdplb):
    imported = keepalived.parse(V3 + _instance(BASE, f'"{name}"'))
    assert imported.ha.instances[0].name == xdplb
    assert _said(imported) == [f"keepalived.conf line 4: vrrp_instance name {name} not translated as is: xdplb's "
                                "names are letters, digits, '_' and '-' (a letter or digit first, up to 64): it is "
                                f"{xdplb}, which its notify command gets"]


def test_one_vrid_on_two_families_or_interfaces_is_two_routers():
    six = BASE.replace("10.0.0.100/24", "2001:db8::100/64")
    back = BASE.replace("eth0", "eth1").replace("10.0.0.100", "10.1.0.100")
    imported = keepalived.parse(V3 + _instance(BASE, "A") + _instance(six, "B") + _instance(back, "C"))
    assert [(i.name, i.vrid, i.interface, i.family) for i in imported.ha.instances] == [
        ("A", 51, "eth0", 4), ("B", 51, "eth0", 6), ("C", 51, "eth1", 4)]


# ---- errors: the whole import refused, each problem with its file and line -------------------------------

OK_SERVICE = "virtual_server 10.0.0.100 80 {\n  lb_kind DR\n  protocol TCP\n  real_server 10.0.1.1 80\n}\n"


# each message's line counted from the vrrp_instance's (1): BASE is lines 2-6, the body from 7
@pytest.mark.parametrize(("body", "messages"), [
    ("interface eth0\nvirtual_router_id 51\n", [
        "line 1: vrrp_instance VI_1 has no virtual_ipaddress: an instance advertises at least one address "
        "(keepalived's VRRPv3 ones too)"]),
    ("virtual_ipaddress {\n 10.0.0.1\n}\n", [
        "line 1: vrrp_instance VI_1 has no interface: xdplb runs an instance on one",
        "line 1: vrrp_instance VI_1 has no virtual_router_id: keepalived refuses it too"]),
    (BASE.replace("51", "0"), ["line 3: virtual_router_id 0 is out of range (1-255)"]),
    (BASE.replace("51", "256"), ["line 3: virtual_router_id 256 is out of range (1-255)"]),
    (BASE.replace("10.0.0.100/24", "10.0.0.300/24"), ["line 5: '10.0.0.300/24' is not an address[/prefix]"]),
    (BASE.replace("10.0.0.100/24", "10.0.0.100/24 dev"), ["line 5: 10.0.0.100/24: dev needs an interface"]),
    (BASE.replace("10.0.0.100/24", "10.0.0.100/24 dev eth/0"), ["line 5: 10.0.0.100/24: 'eth/0' is not an "
                                                                "interface name"]),
    (BASE.replace("eth0", "eth0/1"), ["line 1: vrrp_instance VI_1: 'eth0/1' is not an interface name"]),
    (BASE + "priority 0\n", ["line 7: priority 0 is out of range (1-255)"]),
    (BASE + "priority high\n", ["line 7: priority 'high' is not a number"]),
    (BASE + "state PRIMARY\n", ["line 7: state PRIMARY: not MASTER or BACKUP"]),
    (BASE + "advert_int fast\n", ["line 7: advert_int 'fast' is not a number of seconds"]),
    (BASE + "advert_int 300\n", ["line 7: advert_int 300 is out of range (0-255 seconds)"]),
    (BASE + "preempt_delay 2000\n", ["line 7: preempt_delay 2000 is out of range (0-1000 seconds)"]),
    (BASE + "version 4\n", ["line 7: version 4 is out of range (2-3)"]),
    (BASE + "unicast_src_ip lb1\n", ["line 7: unicast_src_ip 'lb1' is not an IP address"]),
    (BASE + "unicast_peer {\n  lb2\n}\n", ["line 8: unicast peer 'lb2' is not an IP address"]),
    (BASE + "unicast_peer 10.0.0.2\n", ["line 7: unicast_peer takes a { block } of entries, one a line"]),
    (BASE + "track_interface {\n  eth1 weight 300\n}\n", [
        "line 8: track_interface eth1: weight '300' is not a number in -254..254"]),
    (BASE + "track_interface {\n  eth1 weight\n}\n", ["line 8: track_interface eth1 weight: give IF [weight N "
                                                      "[reverse]]"]),
    (BASE + "track_interface {\n  eth1 weight 5 upside\n}\n", ["line 8: track_interface eth1: 'upside' is not "
                                                               "reverse or noreverse"]),
    (BASE + "garp_master_delay 7200\n", ["line 7: garp_master_delay 7200 is out of range (0-3600)"]),
    (BASE + "garp_master_repeat 500\n", ["line 7: garp_master_repeat 500 is out of range (0-100)"]),
    (BASE + "garp_master_refresh 100000\n", ["line 7: garp_master_refresh 100000 is out of range (0-86400)"]),
    (BASE + 'notify ""\n', ["line 7: notify is empty"]),
])
def test_an_instance_keepalived_or_xdplb_refuses_refuses_the_import(body, messages):
    with pytest.raises(ImportFormatError) as error:
        keepalived.parse(OK_SERVICE + _instance(body), "lb.conf")
    assert error.value.messages == [_in_file(m, OK_SERVICE.count("\n")) for m in messages]


def _in_file(message: str, before: int) -> str:
    """`line N: ...`, N counted from the vrrp_instance line, as the file names it: `before` lines down."""
    where, text = message.split(": ", 1)
    return f"lb.conf line {int(where.removeprefix('line ')) + before}: {text}"


@pytest.mark.parametrize(("text", "messages"), [
    ("vrrp_instance {\n}\n", ["keepalived.conf line 1: vrrp_instance takes one name"]),
    ("vrrp_instance A B {\n}\n", ["keepalived.conf line 1: vrrp_instance takes one name"]),
    ("vrrp_instance A\n", ["keepalived.conf line 1: vrrp_instance A has no { block }"]),
    ("global_defs {\n  vrrp_version 1\n  vrrp_garp_master_delay soon\n}\n" + _instance(BASE),
     ["keepalived.conf line 2: vrrp_version 1 is out of range (2-3)",
      "keepalived.conf line 3: vrrp_garp_master_delay 'soon' is not a number"]),
    (_instance(BASE, "A") + _instance(BASE.replace("51", "52").replace("10.0.0.100", "10.0.0.101"), "A"),
     ["keepalived.conf line 8: vrrp_instance A: the name A is the instance's at keepalived.conf line 1"]),
    (_instance(BASE, "VI.1") + _instance(BASE.replace("51", "52").replace("10.0.0.100", "10.0.0.101"), "VI_1"),
     ["keepalived.conf line 8: vrrp_instance VI_1: the name VI_1 is the instance's at keepalived.conf line 1"]),
    (_instance(BASE, "A") + _instance(BASE.replace("10.0.0.100", "10.0.0.101"), "B"),
     ["keepalived.conf line 8: vrrp_instance B: virtual_router_id 51 on eth0 (IPv4) is already instance A's "
      "(keepalived.conf line 1)"]),
    (_instance(BASE, "A") + _instance(BASE.replace("51", "52").replace("100/24", "100/32 dev eth0"), "B"),
     ["keepalived.conf line 12: 10.0.0.100 on eth0 is already a VIP of instance A (keepalived.conf line 5)"]),
])
def test_instances_keepalived_or_xdplb_refuses(text, messages):
    with pytest.raises(ImportFormatError) as error:
        keepalived.parse(text)
    assert error.value.messages == messages


def test_an_error_in_an_included_file_names_it(tmp_path):
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "keepalived.conf").write_text(OK_SERVICE + "include conf.d/*.conf\n")
    (tmp_path / "conf.d" / "vrrp.conf").write_text("# VRRP\n" + _instance(BASE.replace("51", "300")))
    with pytest.raises(ImportFormatError) as error:
        keepalived.parse((tmp_path / "keepalived.conf").read_text(), base_dir=tmp_path)
    assert error.value.messages == ["conf.d/vrrp.conf line 4: virtual_router_id 300 is out of range (1-255)"]


# ---- the command -----------------------------------------------------------------------------------------

NOWHERE = ["--url", "unix:/nonexistent/api.sock", "--token", "t"]  # an API the command must not need


def _run(*args: str):
    return CliRunner().invoke(app, [*args], env=CLEAN_ENV, prog_name="xdplb")


def _vrrp_only(tmp_path: Path) -> Path:
    path = tmp_path / "keepalived.conf"
    path.write_text((PAIR / "conf.d" / "front6.conf").read_text())
    return path


def test_a_vrrp_only_file_writes_the_ha_yaml_and_needs_no_api(tmp_path):
    out = tmp_path / "ha.yaml"
    r = _run("import", "keepalived", str(_vrrp_only(tmp_path)), "--ha-yaml", str(out), *NOWHERE)
    assert r.exit_code == 0, r.output
    assert "no virtual server imported: the running services are left as they are" in r.stdout
    assert f"1 VRRP instance (VI_FRONT6) written to {out}" in r.stderr and "skipped: " in r.stderr
    alone = EXPECTED_HA.instances[1].model_copy(update={"garp_refresh": 0})  # no global_defs in this file
    assert parse_config(HEAD + out.read_text()).ha == HaSettings(instances=[alone])
    r = _run("import", "keepalived", str(_vrrp_only(tmp_path)), "--ha-yaml", str(out), "-o", "json", *NOWHERE)
    assert json.loads(r.stdout) == {"services": "unchanged", "vrrp_instances": ["VI_FRONT6"], "ha_yaml": str(out)}


def test_ha_yaml_of_a_file_without_vrrp_is_refused(tmp_path):
    path, out = tmp_path / "keepalived.conf", tmp_path / "ha.yaml"
    path.write_text(OK_SERVICE)
    r = _run("import", "keepalived", str(path), "--ha-yaml", str(out), *NOWHERE)
    assert r.exit_code == 1 and f"has no vrrp_instance: nothing to write to {out}" in r.stderr
    assert not out.exists() and "cannot reach" not in r.output


def test_a_bad_instance_writes_nothing_and_calls_no_api(tmp_path):
    path, out = tmp_path / "keepalived.conf", tmp_path / "ha.yaml"
    path.write_text(OK_SERVICE + _instance(BASE.replace("51", "0")))
    r = _run("import", "keepalived", str(path), "--ha-yaml", str(out), *NOWHERE)
    assert r.exit_code == 1 and "keepalived.conf line 8: virtual_router_id 0 is out of range" in r.stderr
    assert not out.exists() and "cannot reach" not in r.output


def test_an_unwritable_ha_yaml_is_refused(tmp_path):
    r = _run("import", "keepalived", str(_vrrp_only(tmp_path)), "--ha-yaml", str(tmp_path / "no" / "ha.yaml"),
             *NOWHERE)
    assert r.exit_code == 1 and f"cannot write {tmp_path}/no/ha.yaml" in r.stderr
    assert not (tmp_path / "no").exists()


def test_import_with_ha_yaml_in_a_dry_run_writes_it_and_changes_nothing(cli: Cli, manager, tmp_path):
    cli.ok("service", "add", "tcp", "10.100.0.100:443")
    before = manager.state
    out = tmp_path / "ha.yaml"
    r = cli.ok("import", "keepalived", str(PAIR / "keepalived.conf"), "--dry-run", "--ha-yaml", str(out))
    assert "+ service tcp:10.100.0.100:80" in r.stdout and manager.state == before
    assert "2 VRRP instances (VI_FRONT4, VI_FRONT6) written to" in r.stderr
    assert parse_config(HEAD + out.read_text()).ha == EXPECTED_HA


def test_import_without_ha_yaml_says_how_to_get_the_instances(cli: Cli, manager, tmp_path):
    r = cli.ok("import", "keepalived", str(PAIR / "keepalived.conf"))
    assert (f"{PAIR / 'keepalived.conf'}: 2 VRRP instances (VI_FRONT4, VI_FRONT6) found: --ha-yaml PATH writes them "
            "as the ha: section of the daemon's configuration") in r.stderr
    assert sorted(s.id for s in manager.dp.services) == ["tcp:10.100.0.100:80", "tcp:[fd00:100::100]:80"]
    assert not list(tmp_path.glob("*.yaml"))


@pytest.mark.parametrize("args", [[], ["--ha-yaml", "ha.yaml"], ["--merge"], ["--dry-run"]])
def test_a_vrrp_only_file_leaves_the_running_services(cli: Cli, manager, tmp_path, args, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli.ok("service", "add", "tcp", "10.100.0.100:443")
    before = manager.state
    r = cli.ok("import", "keepalived", str(_vrrp_only(tmp_path)), *args)
    assert "the running services are left as they are" in r.stdout
    assert manager.state == before and [s.id for s in manager.dp.services] == ["tcp:10.100.0.100:443"]
    assert (tmp_path / "ha.yaml").exists() == ("--ha-yaml" in args)
