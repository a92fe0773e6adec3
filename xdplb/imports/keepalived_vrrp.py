"""keepalived's VRRP (keepalived 2.2's vrrp_instance blocks, with global_defs' VRRP defaults) read
into xdplb's `ha:` section (xdplb.vrrp.config.HaSettings), decided once:

- An instance is what keepalived would run, with keepalived's defaults: priority 100 (255 for
  `state MASTER` without a priority: keepalived makes it the address owner), advert_int 1 s,
  preempt, gratuitous ARP / NA bursts of 5 with a second burst 5 s later and no refresh (keepalived's
  vrrp_garp_master_refresh is 0, xdplb's default 60 s is not taken), each of these from global_defs'
  vrrp_garp_master_delay, _repeat, _refresh and vrrp_min_garp when given. `state` is otherwise
  left aside: xdplb elects by priority, as keepalived does after it starts.
- What keepalived corrects when it completes an instance, the import corrects too, with a line:
  nopreempt or preempt_delay with state MASTER, preempt_delay with nopreempt, nopreempt with
  priority 255, advert_int 0, above VRRPv3's 40.95 s or finer than 10 ms, garp_master_repeat 0, a
  track_interface weight of +/-254, the instance's own interface or one interface tracked twice.
- The family is the first virtual_ipaddress's. An address of the other family there goes to
  excluded_addresses with a line: keepalived 2.2 drops it ("address family must match VRRP
  instance - ignoring"), xdplb moves it with the instance without advertising it. A unicast peer or
  unicast_src_ip of the other family is left out with a line, as keepalived leaves it out. An
  address's `dev` is kept; brd, scope, label and the other `ip address` options are left out with a
  line (xdplb adds the address with its prefix on its interface).
- track_interface: keepalived adds a positive weight to the priority while the interface is up and
  a negative one while it is down (`reverse` turns the sign); xdplb adds the weight of what is down.
  So a negative weight is the same number, and a positive one goes into the priority and comes off
  when the interface goes down (priority 150 with `eth1 weight 20` is priority 170 with weight
  -20), with a line: the priorities are keepalived's in every state (but where keepalived's would
  pass 254 or drop below 1, said too). Weight 0 is a fault for both; with `reverse` (a fault while
  the interface is up) it is left out with a line.
- `notify COMMAND` is the instance's notify: split like a shell, run without one (one that needs a
  shell is left out with a line); keepalived and xdplb both append INSTANCE NAME STATE PRIORITY.
  notify_master, notify_backup, notify_fault, notify_stop and the other notify_* are left out with a
  line: xdplb has that one hook, whose STATE argument says which transition it is.
- xdplb speaks VRRPv3 (RFC 5798), its IPv4 checksum over the pseudo-header as keepalived computes
  it. An IPv4 instance that runs VRRPv2 in keepalived (its default for IPv4; vrrp_version or
  version 2) gets a line: its keepalived peers must run version 3 too. `authentication` is left out
  (VRRPv3 has none).
- Names: xdplb's are letters, digits, '_' and '-', a letter or digit first, up to 64. Another
  keepalived name is rewritten (each other character becomes '_', `vi` before a leading '_' or '-',
  cut at 64) with a line, since a notify script gets the name; two that end up the same are an error.
- Left out with a line: vrrp_sync_group (xdplb fails each instance over by itself), track_script,
  track_process, track_file, track_bfd and the blocks they name, use_vmac and its kin (xdplb
  announces the VIPs with the interface's own MAC address), vrrp_strict and strict_mode, no_accept,
  virtual_routes, virtual_rules, and every setting xdplb has no counterpart for.
- An error (ImportFormatError, each with its file and line, nothing imported): an instance without
  a name, interface, virtual_router_id or virtual_ipaddress; a value keepalived would refuse (a VRID
  out of 1-255, a bad address, priority, interval, weight or state); one xdplb cannot take (garp
  settings past its limits, an interface name it refuses); two instances with one name, one VRID
  on one interface and family, or one address on one interface.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from pydantic import ValidationError

from xdplb.imports.keepalived_checks import UNKNOWN, boolean, note, one, script
from xdplb.imports.keepalived_syntax import Block
from xdplb.imports.keepalived_vs import unsupported
from xdplb.imports.result import explain
from xdplb.imports.values import Invalid, address, integer
from xdplb.model import IPAddress
from xdplb.vrrp.config import MAX_INTERVAL, HaSettings, Instance, TrackInterface, VirtualAddress

PRIORITY_OWNER = 255
PRIORITY_DEFAULT = 100  # keepalived's VRRP_PRIO_DFL
GARP_DELAY_MAX = 3600  # xdplb's limits (Instance)
GARP_REPEAT_MAX = 100
GARP_REFRESH_MAX = 86400
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_NOT_NAME = re.compile(r"[^A-Za-z0-9_-]")
_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")

_SYNC = ("xdplb has no sync groups: each instance fails over by itself; give the instances the same "
         "track_interfaces (and priorities) to keep them together")
_TRACKERS = ("xdplb's instances track interfaces, and services through their health checks (track_services), "
             "not scripts, processes, files or BFD")
_NO_SETTING = "xdplb has no such setting"
_NOTIFY_ONE = ("xdplb runs one notify command for every transition, with INSTANCE NAME STATE PRIORITY appended as "
               "keepalived's `notify` gets them: give it a `notify` script that acts on STATE")
_VMAC = ("xdplb announces the VIPs with the interface's own MAC address (gratuitous ARP / unsolicited NA), "
         "it creates no virtual MAC interface")
_STRICT = ("xdplb has no strict mode: its instances take traffic to their VIPs (strict mode drops it unless "
           "priority 255) and keep their settings as given")

TOP_NOTES = {  # top-level VRRP blocks left out, and why
    "vrrp_sync_group": _SYNC,
    "vrrp_script": _TRACKERS,
    "vrrp_track_process": _TRACKERS,
    "track_file": f"{_TRACKERS}; nor has it FILE_CHECK",
    "vrrp_track_file": _TRACKERS,
    "garp_group": "xdplb paces its gratuitous ARP / NA itself",
    "linkbeat_use_polling": "xdplb reads link states from the kernel",
    "linkbeat_interfaces": "xdplb reads link states from the kernel",
    "interface_up_down_delays": _NO_SETTING,
}
BLOCKS = frozenset({"vrrp_instance", *TOP_NOTES})  # the top-level keywords read here

_INSTANCE_NOTES = {  # vrrp_instance keywords left out, and why
    "authentication": "VRRPv3 has no authentication (RFC 5798); the keepalived peers must drop it too",
    "track_script": _TRACKERS, "track_process": _TRACKERS, "track_file": _TRACKERS, "track_bfd": _TRACKERS,
    "use_vmac": _VMAC, "use_vmac_addr": _VMAC, "vmac_xmit_base": _VMAC, "use_ipvlan": _VMAC,
    "garp_extra_if": _VMAC, "vmac_garp_intvl": _VMAC,
    "strict_mode": _STRICT,
    "no_accept": "xdplb's instances take traffic to their VIPs, as a balancer must",
    "virtual_routes": "xdplb moves addresses only: add routes in the notify script",
    "virtual_rules": "xdplb moves addresses only: add rules in the notify script",
    "dont_track_primary": "xdplb puts an instance in fault when its own interface is down",
    "native_ipv6": "the first virtual_ipaddress gives the instance's family",
    "promote_secondaries": "xdplb adds and removes only the VIPs, and sets no interface flags",
    "notify_master": _NOTIFY_ONE, "notify_backup": _NOTIFY_ONE, "notify_fault": _NOTIFY_ONE,
    "notify_stop": _NOTIFY_ONE, "notify_deleted": _NOTIFY_ONE, "notify_master_rx_lower_pri": _NOTIFY_ONE,
    "notify_priority_changes": _NOTIFY_ONE,
    "smtp_alert": "xdplb sends no mail or SNMP",
    "lvs_sync_daemon_interface": "xdplb has no LVS connection sync daemon",
    "mcast_dst_ip": "xdplb sends to the VRRP group (224.0.0.18, ff02::12) or the unicast peers",
    **dict.fromkeys(("check_unicast_src", "unicast_ttl", "unicast_fault_no_peer", "track_src_ip", "vrf",
                     "old_unicast_checksum", "skip_check_adv_addr", "down_timer_adverts", "timer_expired_backup",
                     "lower_prio_no_advert", "higher_prio_send_advert", "garp_lower_prio_delay",
                     "garp_lower_prio_repeat", "garp_master_refresh_repeat", "kernel_rx_buf_size",
                     "linkbeat_use_polling", "debug"), _NO_SETTING),
}
_ADDRESS_OPTIONS = {"brd": 1, "broadcast": 1, "scope": 1, "label": 1, "peer": 1, "preferred_lft": 1,
                    "track_group": 1, "home": 0, "-nodad": 0, "nodad": 0, "mngtmpaddr": 0, "noprefixroute": 0,
                    "autojoin": 0, "no_track": 0, "use_vmac": 0}  # `ip address` options and how many words follow


class _EntryInvalid(Invalid):
    """A block's entry refused: the message names the entry's line, not the block's."""

    def __init__(self, entry: Block, message: str) -> None:
        super().__init__(message)
        self.where = entry.where


@contextmanager
def _entry(entry: Block) -> Iterator[None]:
    try:
        yield
    except Invalid as e:
        raise _EntryInvalid(entry, str(e)) from None


@dataclass
class Defaults:
    """global_defs' VRRP settings, keepalived's own defaults when absent."""

    version: int = 2
    version_at: Block | None = None
    garp_delay: int = 5
    garp_repeat: int = 5
    garp_refresh: int = 0


@dataclass
class _Address:
    value: VirtualAddress
    block: Block


@dataclass
class _Track:
    name: str
    weight: int
    reverse: bool
    block: Block


@dataclass
class _Read:
    """A vrrp_instance's statements as read, before keepalived's completion rules."""

    block: Block
    name: str
    fields: dict[str, Any] = field(default_factory=dict)  # Instance fields read as they are
    addresses: list[_Address] = field(default_factory=list)
    excluded: list[_Address] = field(default_factory=list)
    peers: list[tuple[IPAddress, Block]] = field(default_factory=list)
    source: tuple[IPAddress, Block] | None = None
    tracks: list[_Track] = field(default_factory=list)
    state: Block | None = None
    priority: Block | None = None
    nopreempt: Block | None = None
    preempt_delay: tuple[float, Block] | None = None
    advert: tuple[Decimal, Block] | None = None
    version: Block | None = None


def translate(blocks: list[Block], notes: list[str], errors: list[str]) -> HaSettings | None:
    """The `ha:` section of the file's vrrp_instance blocks (None when it has none); the other
    top-level VRRP blocks are said to be left out. Problems go to `errors`, named by their lines."""
    blocks = [b for b in blocks if unsupported(b) is None]  # the caller says why the others are left out
    for block in blocks:
        if block.keyword in TOP_NOTES:
            notes.append(f"{block.where}: {block.keyword} not translated: {TOP_NOTES[block.keyword]}")
    found = [b for b in blocks if b.keyword == "vrrp_instance"]
    if not found:
        return None
    before = len(errors)
    defaults = read_defaults([b for b in blocks if b.keyword == "global_defs"], notes, errors)
    read = [r for r in (_read_instance(b, notes, errors) for b in found) if r is not None]
    built = [(r, _complete(r, defaults, notes, errors)) for r in read]
    instances = [(r, inst) for r, inst in built if inst is not None]
    _distinct(instances, errors)
    if len(errors) > before:
        return None
    try:
        return HaSettings(instances=[inst for _, inst in instances])
    except ValidationError as e:  # _distinct says it first, with the lines: a safety net
        errors.append(f"{found[0].where}: {explain(e)}")
        return None


# ---- global_defs ----------------------------------------------------------------------------------

def read_defaults(blocks: list[Block], notes: list[str], errors: list[str]) -> Defaults:
    """The VRRP defaults of global_defs (the last one given wins, as in keepalived)."""
    defaults = Defaults()
    for block in blocks:
        for statement in block.children or []:
            if unsupported(statement):
                continue  # global_defs as a whole is said to be left out
            try:
                _global(defaults, statement, notes)
            except Invalid as e:
                errors.append(f"{statement.where}: {e}")
    return defaults


def _global(defaults: Defaults, statement: Block, notes: list[str]) -> None:
    keyword = statement.keyword
    if keyword == "vrrp_version":
        defaults.version, defaults.version_at = _version(statement), statement
    elif keyword == "vrrp_garp_master_delay":
        defaults.garp_delay = integer(one(statement), 0, GARP_DELAY_MAX, keyword)
    elif keyword == "vrrp_garp_master_repeat":
        defaults.garp_repeat = _repeat(statement, notes)
    elif keyword == "vrrp_garp_master_refresh":
        defaults.garp_refresh = integer(one(statement), 0, GARP_REFRESH_MAX, keyword)
    elif keyword == "vrrp_min_garp" and boolean(statement):
        defaults.garp_repeat, defaults.garp_delay = 1, 0  # one gratuitous ARP, no second burst
    elif keyword == "vrrp_strict":
        note(notes, statement, _STRICT)


def _version(statement: Block) -> int:
    return integer(one(statement), 2, 3, statement.keyword)


def _repeat(statement: Block, notes: list[str]) -> int:
    repeat = integer(one(statement), 0, GARP_REPEAT_MAX, statement.keyword)
    if repeat == 0:
        notes.append(f"{statement.where}: {statement.keyword} 0: keepalived sends 1, and so does the import")
        return 1
    return repeat


# ---- an instance, as read -----------------------------------------------------------------------

def xdplb_name(name: str) -> str:
    """A keepalived instance name as xdplb's Name takes it (unchanged when it already does)."""
    if _NAME.fullmatch(name):
        return name
    fixed = _NOT_NAME.sub("_", name)
    if not fixed[0].isalnum():
        fixed = "vi" + fixed
    return fixed[:64]


def _read_instance(block: Block, notes: list[str], errors: list[str]) -> _Read | None:
    if len(block.args) != 1 or not block.args[0]:
        errors.append(f"{block.where}: vrrp_instance takes one name")
        return None
    if block.children is None:
        errors.append(f"{block.where}: vrrp_instance {block.args[0]} has no {{ block }}")
        return None
    name = xdplb_name(block.args[0])
    if name != block.args[0]:
        notes.append(f"{block.where}: vrrp_instance name {block.args[0]} not translated as is: xdplb's names are "
                     f"letters, digits, '_' and '-' (a letter or digit first, up to 64): it is {name}, which its "
                     "notify command gets")
    read = _Read(block, name)
    count = len(errors)
    for statement in block.children:
        reason = unsupported(statement)
        if reason:
            notes.append(f"{statement.where}: {statement.text} not translated: {reason}")
            continue
        handler = _KEYWORDS.get(statement.keyword)
        try:
            if handler is not None:
                handler(read, statement, notes)
            else:
                note(notes, statement, _INSTANCE_NOTES.get(statement.keyword, UNKNOWN))
        except Invalid as e:
            errors.append(f"{getattr(e, 'where', statement.where)}: {e}")
    return read if len(errors) == count else None


def _state(read: _Read, statement: Block, notes: list[str]) -> None:
    if one(statement) not in ("MASTER", "BACKUP"):
        raise Invalid(f"state {statement.args[0]}: not MASTER or BACKUP")
    read.state = statement


def _interface(read: _Read, statement: Block, notes: list[str]) -> None:
    read.fields["interface"] = one(statement)


def _vrid(read: _Read, statement: Block, notes: list[str]) -> None:
    read.fields["vrid"] = integer(one(statement), 1, 255, "virtual_router_id")


def _priority(read: _Read, statement: Block, notes: list[str]) -> None:
    read.fields["priority"] = integer(one(statement), 1, PRIORITY_OWNER, "priority")
    read.priority = statement


def _advert(read: _Read, statement: Block, notes: list[str]) -> None:
    read.advert = (_seconds(statement, 255), statement)


def _seconds(statement: Block, high: int) -> Decimal:
    text = one(statement)
    if not _SECONDS.fullmatch(text):
        raise Invalid(f"{statement.keyword} {text!r} is not a number of seconds")
    value = Decimal(text)
    if value > high:
        raise Invalid(f"{statement.keyword} {text} is out of range (0-{high} seconds)")
    return value


def _nopreempt(read: _Read, statement: Block, notes: list[str]) -> None:
    read.nopreempt = statement


def _preempt(read: _Read, statement: Block, notes: list[str]) -> None:
    read.nopreempt = None  # keepalived's `preempt`, for backwards compatibility, clears nopreempt


def _preempt_delay(read: _Read, statement: Block, notes: list[str]) -> None:
    read.preempt_delay = (float(_seconds(statement, 1000)), statement)


def _version_statement(read: _Read, statement: Block, notes: list[str]) -> None:
    _version(statement)
    read.version = statement


def _source(read: _Read, statement: Block, notes: list[str]) -> None:
    read.source = (address(one(statement), statement.keyword), statement)


def _addresses(read: _Read, statement: Block, notes: list[str]) -> None:
    into = read.addresses if statement.keyword == "virtual_ipaddress" else read.excluded
    for entry in _entries(statement):
        with _entry(entry):
            into.append(_Address(_address(entry, notes), entry))


def _entries(statement: Block) -> list[Block]:
    if statement.children is None:
        raise Invalid(f"{statement.keyword} takes a {{ block }} of entries, one a line")
    return statement.children


def _address(entry: Block, notes: list[str]) -> VirtualAddress:
    """ADDRESS[/PREFIX] [dev IF] [brd ..] [scope ..] [label ..] ...: the address and its dev."""
    text, words = entry.keyword, entry.args
    try:
        ipaddress.ip_interface(text)
    except ValueError:
        raise Invalid(f"{text!r} is not an address[/prefix]") from None
    interface, left, i = None, [], 0
    while i < len(words):
        word = words[i]
        if word == "dev":
            if i + 1 == len(words):
                raise Invalid(f"{text}: dev needs an interface")
            interface, i = words[i + 1], i + 2
        else:
            n = _ADDRESS_OPTIONS.get(word, 0)  # keepalived ignores a word it does not know
            left.append(" ".join(words[i:i + 1 + n]))
            i += 1 + n
    if left:
        notes.append(f"{entry.where}: {', '.join(left)} of {text} not translated: xdplb adds the address with its "
                     "prefix on its interface, nothing more")
    try:
        return VirtualAddress(address=text, interface=interface)
    except ValidationError as e:
        raise Invalid(f"{text}: {explain(e)}") from None


def _peers(read: _Read, statement: Block, notes: list[str]) -> None:
    for entry in _entries(statement):
        with _entry(entry):
            peer = address(entry.keyword, "unicast peer")
        if entry.args:
            notes.append(f"{entry.where}: {' '.join(entry.args)} of unicast peer {peer} not translated: xdplb bounds "
                         "no peer's TTL")
        if any(p == peer for p, _ in read.peers):
            notes.append(f"{entry.where}: unicast peer {peer} is listed twice: once is enough")
            continue
        read.peers.append((peer, entry))


def _tracks(read: _Read, statement: Block, notes: list[str]) -> None:
    """IF [weight N [reverse|noreverse]], as keepalived 2.2 reads it (N in -254..254)."""
    for entry in _entries(statement):
        with _entry(entry):
            weight, reverse = _track_weight(entry)
        if abs(weight) == 254:
            notes.append(f"{entry.where}: track_interface {entry.keyword} weight {weight}: keepalived takes "
                         f"{weight // 254 * 253}, and so does the import")
            weight = weight // 254 * 253
        read.tracks.append(_Track(entry.keyword, weight, reverse, entry))


def _track_weight(entry: Block) -> tuple[int, bool]:
    args = entry.args
    if not args:
        return 0, False
    if args[0] != "weight" or len(args) == 1:
        raise Invalid(f"track_interface {entry.text}: give IF [weight N [reverse]]")
    if not re.fullmatch(r"-?[0-9]+", args[1]) or not -254 <= int(args[1]) <= 254:
        raise Invalid(f"track_interface {entry.keyword}: weight {args[1]!r} is not a number in -254..254")
    if args[2:] not in ([], ["reverse"], ["noreverse"]):
        raise Invalid(f"track_interface {entry.keyword}: {' '.join(args[2:])!r} is not reverse or noreverse")
    return int(args[1]), args[2:] == ["reverse"]


def _notify(read: _Read, statement: Block, notes: list[str]) -> None:
    command = script(statement, notes)
    if command is not None:
        read.fields["notify"] = command


def _garp(name: str, high: int) -> Callable[[_Read, Block, list[str]], None]:
    def handler(read: _Read, statement: Block, notes: list[str]) -> None:
        read.fields[name] = integer(one(statement), 0, high, statement.keyword)
    return handler


def _garp_repeat(read: _Read, statement: Block, notes: list[str]) -> None:
    read.fields["garp_repeat"] = _repeat(statement, notes)


def _accept(read: _Read, statement: Block, notes: list[str]) -> None:
    """`accept`: what xdplb does anyway."""


_KEYWORDS: dict[str, Callable[[_Read, Block, list[str]], None]] = {
    "state": _state, "interface": _interface, "virtual_router_id": _vrid, "priority": _priority,
    "advert_int": _advert, "nopreempt": _nopreempt, "preempt": _preempt, "preempt_delay": _preempt_delay,
    "version": _version_statement, "unicast_src_ip": _source, "mcast_src_ip": _source,
    "virtual_ipaddress": _addresses, "virtual_ipaddress_excluded": _addresses, "unicast_peer": _peers,
    "track_interface": _tracks, "notify": _notify, "accept": _accept,
    "garp_master_delay": _garp("garp_delay", GARP_DELAY_MAX), "garp_master_repeat": _garp_repeat,
    "garp_master_refresh": _garp("garp_refresh", GARP_REFRESH_MAX),
}


# ---- an instance, completed as keepalived completes it ---------------------------------------------

def _complete(read: _Read, defaults: Defaults, notes: list[str], errors: list[str]) -> Instance | None:
    """The Instance keepalived would run; None (with the errors said) when there is none."""
    where, name = read.block.where, read.name
    missing = [f"{where}: vrrp_instance {name} has no {what}: {why}" for what, why, given in (
        ("interface", "xdplb runs an instance on one", "interface" in read.fields),
        ("virtual_router_id", "keepalived refuses it too", "vrid" in read.fields),
        ("virtual_ipaddress", "an instance advertises at least one address (keepalived's VRRPv3 ones too)",
         bool(read.addresses))) if not given]
    if missing:
        errors.extend(missing)
        return None
    try:
        fields = _fields(read, defaults, notes)
        return Instance(name=name, **fields)
    except Invalid as e:
        errors.append(f"{where}: vrrp_instance {name}: {e}")
    except ValidationError as e:
        errors.append(f"{where}: vrrp_instance {name}: {explain(e)}")
    return None


def _fields(read: _Read, defaults: Defaults, notes: list[str]) -> dict[str, Any]:
    fields = dict(read.fields)
    family = read.addresses[0].value.family
    fields["addresses"], fields["excluded_addresses"] = _by_family(read, family, notes)
    master = read.state is not None and read.state.args[0] == "MASTER"
    if read.priority is None and read.state is not None and master:
        fields["priority"] = PRIORITY_OWNER
        notes.append(f"{read.state.where}: state MASTER without a priority: keepalived makes the instance the "
                     f"address owner (priority {PRIORITY_OWNER}), and so does the import")
    priority = fields.setdefault("priority", PRIORITY_DEFAULT)
    _preemption(read, fields, master, notes)
    _version_note(read, defaults, family, notes)
    if read.advert is not None:
        fields["advert_interval"] = _interval(*read.advert, notes)
    if read.source is not None:
        source, block = read.source
        if source.version == family:
            fields["unicast_source"] = source
        else:
            notes.append(f"{block.where}: {block.keyword} {source} not translated: it is not IPv{family}, like the "
                         "instance (keepalived leaves it out too)")
    fields["unicast_peers"] = [p for p, b in read.peers if _same_family(p, b, family, notes)]
    fields["track_interfaces"], fields["priority"] = _tracked(read, fields["interface"], priority, notes)
    for key, value in (("garp_delay", defaults.garp_delay), ("garp_repeat", defaults.garp_repeat),
                       ("garp_refresh", defaults.garp_refresh)):
        fields.setdefault(key, value)
    return fields


def _by_family(read: _Read, family: int, notes: list[str]) -> tuple[list[VirtualAddress], list[VirtualAddress]]:
    advertised = []
    moved = []
    for a in read.addresses:
        if a.value.family == family:
            advertised.append(a.value)
        else:
            moved.append(a.value)
            notes.append(f"{a.block.where}: virtual_ipaddress {a.value.address} moved to excluded_addresses: an "
                         f"instance advertises one family, here IPv{family} (its first address's); keepalived drops "
                         "it, xdplb moves it with the instance without advertising it")
    return advertised, moved + [a.value for a in read.excluded]


def _preemption(read: _Read, fields: dict[str, Any], master: bool, notes: list[str]) -> None:
    """nopreempt and preempt_delay, as keepalived resets them."""
    nopreempt = read.nopreempt
    if nopreempt is not None and fields["priority"] == PRIORITY_OWNER:
        notes.append(f"{nopreempt.where}: nopreempt not translated: keepalived drops it with priority "
                     f"{PRIORITY_OWNER} (the address owner), and so does the import")
        nopreempt = None
    if nopreempt is not None and master:
        notes.append(f"{nopreempt.where}: nopreempt not translated: keepalived drops it with state MASTER, and so "
                     "does the import (give state BACKUP on every director for nopreempt to work)")
        nopreempt = None
    fields["preempt"] = nopreempt is None
    if read.preempt_delay is None:
        return
    delay, block = read.preempt_delay
    why = "state MASTER" if master else "nopreempt" if nopreempt is not None else None
    if why and delay:
        notes.append(f"{block.where}: preempt_delay not translated: keepalived drops it with {why}, and so does "
                     "the import")
    else:
        fields["preempt_delay"] = delay


def _version_note(read: _Read, defaults: Defaults, family: int, notes: list[str]) -> None:
    if read.version is not None:
        version, given = int(read.version.args[0]), f"version 2 at {read.version.where}"
    elif family == 6:
        return  # keepalived's IPv6 instances run version 3
    else:
        version = defaults.version
        given = (f"vrrp_version 2 at {defaults.version_at.where}" if defaults.version_at is not None
                 else "keepalived's default for IPv4")
    if version == 2:
        notes.append(f"{read.block.where}: vrrp_instance {read.name} runs VRRPv2 in keepalived ({given}): xdplb "
                     "speaks VRRPv3 (RFC 5798) only; set vrrp_version 3 on its keepalived peers while they run "
                     "beside xdplb")


def _interval(value: Decimal, block: Block, notes: list[str]) -> float:
    """advert_int in VRRPv3's centiseconds, as keepalived rounds and bounds it."""
    if value == 0:
        notes.append(f"{block.where}: advert_int 0: keepalived takes its default of 1 s, and so does the import")
        return 1.0
    if value > Decimal(str(MAX_INTERVAL)):
        notes.append(f"{block.where}: advert_int {value} is above VRRPv3's {MAX_INTERVAL} s: keepalived sends "
                     f"{MAX_INTERVAL} s, and so does the import")
        return MAX_INTERVAL
    rounded = max(value.quantize(Decimal("0.01"), ROUND_HALF_UP), Decimal("0.01"))
    if rounded != value:
        notes.append(f"{block.where}: advert_int {value} is not in units of 10 ms: keepalived rounds it to {rounded} "
                     "s, and so does the import")
    return float(rounded)


def _same_family(peer: IPAddress, block: Block, family: int, notes: list[str]) -> bool:
    if peer.version == family:
        return True
    notes.append(f"{block.where}: unicast peer {peer} not translated: it is not IPv{family}, like the instance "
                 "(keepalived leaves it out too)")
    return False


def _tracked(read: _Read, own: str, priority: int, notes: list[str]) -> tuple[list[TrackInterface], int]:
    """The tracked interfaces in xdplb's terms (the weight of what is down is added), and the
    priority with keepalived's bonus of what is up in it."""
    tracks: list[TrackInterface] = []
    seen: dict[str, Block] = {}
    up = 0  # what keepalived adds while every tracked interface is up
    for t in read.tracks:
        where = t.block.where
        if t.name == own:
            notes.append(f"{where}: track_interface {t.name} not translated: it is the instance's own interface, "
                         "which keepalived and xdplb track anyway")
            continue
        if t.name in seen:
            notes.append(f"{where}: track_interface {t.name} not translated: it is tracked already "
                         f"({seen[t.name].where}); keepalived ignores it too")
            continue
        seen[t.name] = t.block
        if t.weight == 0 and t.reverse:
            notes.append(f"{where}: track_interface {t.name} not translated: `reverse` with no weight is a fault "
                         "while the interface is up, which xdplb does not have")
            continue
        sign = -1 if t.reverse else 1
        when_up = t.weight * sign if t.weight > 0 else 0
        when_down = t.weight * sign if t.weight < 0 else 0
        up += when_up
        tracks.append(TrackInterface(name=t.name, weight=when_down - when_up))
    if not up or priority == PRIORITY_OWNER:  # the owner's priority is 255 whatever is down
        return tracks, priority
    total = priority + up
    fixed = min(max(total, 1), PRIORITY_OWNER - 1)
    exact = ", the priorities keepalived has in every state" if fixed == total else (
        f"; keepalived's would be {total}, and stops at {fixed}: with a tracked interface down, xdplb's is lower "
        f"by its weight from {fixed}, keepalived's from {total}")
    notes.append(f"{read.block.where}: vrrp_instance {read.name}: keepalived adds a positive track_interface weight "
                 f"while the interface is up (a `reverse` one takes it off): the import puts it in the priority "
                 f"({priority} becomes {fixed}) and takes it off while the interface is down{exact}")
    return tracks, fixed


def _distinct(instances: list[tuple[_Read, Instance]], errors: list[str]) -> None:
    """Two instances with one name, VRID (on one interface and family) or address: said with their lines."""
    names: dict[str, _Read] = {}
    routers: dict[tuple[str, int, int], _Read] = {}
    owned: dict[str, tuple[str, Block]] = {}
    for read, inst in instances:
        where = read.block.where
        if inst.name in names:
            errors.append(f"{where}: vrrp_instance {read.block.args[0]}: the name {inst.name} is the instance's at "
                          f"{names[inst.name].block.where}")
        names.setdefault(inst.name, read)
        router = (inst.interface, inst.vrid, inst.family)
        if router in routers:
            errors.append(f"{where}: vrrp_instance {inst.name}: virtual_router_id {inst.vrid} on {inst.interface} "
                          f"(IPv{inst.family}) is already instance {routers[router].name}'s "
                          f"({routers[router].block.where})")
        routers.setdefault(router, read)
        for a, block in zip(inst.all_addresses(), _address_blocks(read), strict=True):
            key = f"{a.address.ip} on {a.interface}"
            if key in owned:
                first, at = owned[key]
                errors.append(f"{block.where}: {key} is already a VIP of instance {first} ({at.where})")
            owned.setdefault(key, (inst.name, block))


def _address_blocks(read: _Read) -> list[Block]:
    """The lines of an instance's addresses, in Instance.all_addresses order."""
    family = read.addresses[0].value.family
    same = [a.block for a in read.addresses if a.value.family == family]
    other = [a.block for a in read.addresses if a.value.family != family]
    return same + other + [a.block for a in read.excluded]
