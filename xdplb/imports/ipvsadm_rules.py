"""The lines of an `ipvsadm-save -n` dump read into virtual services and their real servers, every
option checked as ipvsadm checks it (an unknown option, a bad address, port, weight, threshold or
timeout, a real server before its service, a service or real server given twice: an error naming
the line). ipvsadm.py translates what they define into xdplb services.

Each line is one ipvsadm command: `-A`/`-E` a virtual service, `-a`/`-e` one of its real servers.
Long options, `--opt=value`, an `ipvsadm` prefix (as `ipvsadm -R` takes), blank lines and `#`
comments are accepted; names instead of numbers are not (that is what `-n` is for). `-p` without
a timeout is 360 s: what ipvsadm does (IPVS_SVC_PERSISTENT_TIMEOUT), whatever its man page says (300).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from xdplb.imports.values import COUNT_MAX, Invalid, address, integer, port, prefix
from xdplb.model import IPAddress, Method

DEFAULT_SCHEDULER = "wlc"  # ipvsadm's DEF_SCHED
DEFAULT_TIMEOUT = 360  # ipvsadm's -p without a value
MAX_TIMEOUT = 31 * 24 * 3600  # ipvsadm's MAX_TIMEOUT
_OPTIONAL = -1  # the option's argument may be left out

# (short, long, arguments); an option's name is its long spelling without the dashes
_SPELLINGS: tuple[tuple[str | None, str, int], ...] = (
    ("-A", "--add-service", 0), ("-E", "--edit-service", 0), ("-a", "--add-server", 0),
    ("-e", "--edit-server", 0), ("-t", "--tcp-service", 1), ("-u", "--udp-service", 1),
    (None, "--sctp-service", 1), ("-f", "--fwmark-service", 1), ("-6", "--ipv6", 0),
    ("-s", "--scheduler", 1), ("-p", "--persistent", _OPTIONAL), ("-M", "--netmask", 1), (None, "--pe", 1),
    ("-b", "--sched-flags", 1), ("-o", "--ops", 0), ("-r", "--real-server", 1), ("-g", "--gatewaying", 0),
    ("-i", "--ipip", 0), ("-m", "--masquerading", 0), ("-w", "--weight", 1), ("-x", "--u-threshold", 1),
    ("-y", "--l-threshold", 1), (None, "--tun-type", 1), (None, "--tun-port", 1), (None, "--tun-nocsum", 0),
    (None, "--tun-csum", 0), (None, "--tun-remcsum", 0),
)
_OPTIONS = {spelling: (long[2:], nargs) for short, long, nargs in _SPELLINGS for spelling in (short, long) if spelling}
_NOT_RULES = {"-C", "--clear", "-D", "--delete-service", "-d", "--delete-server", "-Z", "--zero", "-L", "-l",
              "--list", "-S", "--save", "-R", "--restore", "-h", "--help", "-v", "--version"}
_NO_SYNC = "no connection sync between directors yet (with mh, connections survive a failover without it)"
_SETTINGS = {"--set": "IPVS timeouts: set xdplb's timeouts (tcp, tcpfin, udp) by hand",
             "--start-daemon": _NO_SYNC, "--stop-daemon": _NO_SYNC}

_COMMANDS = ("add-service", "edit-service", "add-server", "edit-server")
_SERVICE_SPECS = ("tcp-service", "udp-service", "sctp-service", "fwmark-service")
_FORWARD = {"gatewaying": Method.DR, "ipip": Method.TUN, "masquerading": Method.NAT}
_SERVICE_ONLY = {"scheduler", "persistent", "netmask", "pe", "sched-flags", "ops"}
_TUNNEL = {"tun-type", "tun-port", "tun-nocsum", "tun-csum", "tun-remcsum"}
_SERVER_ONLY = {"real-server", "forward", "weight", "u-threshold", "l-threshold", *_TUNNEL}
_SCHED_FLAGS = {"flag-1", "flag-2", "flag-3", "sh-fallback", "sh-port", "mh-fallback", "mh-port"}

Key = tuple  # (protocol, VIP, port), or ("fwm", mark, IP version) as IPVS keys a service


@dataclass
class Settings:
    """What -A/-E say about a service."""

    scheduler: str = DEFAULT_SCHEDULER
    timeout: int | None = None  # persistence
    netmask: int | None = None
    netmask_given: bool = False
    engine: str | None = None
    flags: tuple[str, ...] = ()
    ops: bool = False


@dataclass
class Dest:
    """A real server as -a/-e give it."""

    line: int
    address: IPAddress
    port: int | None
    method: Method
    weight: int = 1
    upper: int = 0
    lower: int = 0
    tun_type: str = "ipip"
    tun_port: int | None = None
    csum: str | None = None


@dataclass
class VirtualService:
    line: int
    key: Key
    settings: Settings
    dests: dict[tuple[IPAddress, int], Dest] = field(default_factory=dict)

    @property
    def fwmark(self) -> bool:
        return self.key[0] == "fwm"

    @property
    def name(self) -> str:
        if self.fwmark:
            return f"FWM {self.key[1]}" + (" IPv6" if self.key[2] == 6 else "")
        proto, vip, vport = self.key
        host = f"[{vip}]" if vip.version == 6 else str(vip)
        return f"{proto.upper()} {host}:{vport}"


class Table:
    """The services and real servers the lines define, in order, with the errors and notes met."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.services: dict[Key, VirtualService] = {}
        self.errors: list[str] = []
        self.notes: list[str] = []

    def where(self, line: int) -> str:
        return f"{self.source} line {line}"

    def note(self, line: int, text: str, notes: list[str] | None = None) -> None:
        (self.notes if notes is None else notes).append(f"{self.where(line)}: {text}")

    def error(self, line: int, text: str) -> None:
        self.errors.append(f"{self.where(line)}: {text}")

    def read(self, text: str) -> None:
        for n, raw in enumerate(text.splitlines(), 1):
            words = raw.split("#", 1)[0].split()
            if words and words[0] == "ipvsadm":
                words = words[1:]
            if not words:
                continue
            if words[0] in _SETTINGS:
                self.note(n, f"{words[0]} not translated: {_SETTINGS[words[0]]}")
                continue
            try:
                self._command(_options(words), n)
            except Invalid as e:
                self.error(n, str(e))

    def _command(self, opts: dict[str, str | None], line: int) -> None:
        commands = [c for c in _COMMANDS if c in opts]
        if len(commands) != 1:
            raise Invalid("a rule has one command: -A, -E, -a or -e" if commands else
                          "no command: ipvsadm-save prints -A and -a lines")
        command = commands[0]
        key = _service_key(opts)
        wrong = (_SERVER_ONLY if command.endswith("service") else _SERVICE_ONLY) & opts.keys()
        if wrong:
            raise Invalid(f"--{sorted(wrong)[0]} does not go with --{command}")
        if command.endswith("service"):
            self._service(command, key, _settings(opts, key), line)
        else:
            self._server(command, key, opts, line)

    def _service(self, command: str, key: Key, settings: Settings, line: int) -> None:
        svc = self.services.get(key)
        if command == "add-service":
            if svc:
                raise Invalid(f"{svc.name} is defined twice (first at line {svc.line})")
            self.services[key] = VirtualService(line, key, settings)
        elif not svc:
            raise Invalid(f"-E edits {VirtualService(line, key, settings).name}, which no -A line defined before")
        else:
            svc.settings = settings

    def _server(self, command: str, key: Key, opts: dict[str, str | None], line: int) -> None:
        svc = self.services.get(key)
        if svc is None:
            name = VirtualService(line, key, Settings()).name
            raise Invalid(f"a real server of {name}, which no -A line defined before")
        dest = _dest(opts, svc, line)
        ident = (dest.address, _effective_port(dest, svc))
        first = svc.dests.get(ident)
        if command == "add-server" and first:
            raise Invalid(f"real server {_hostport(*ident)} of {svc.name} is listed twice (first at line {first.line})")
        if command == "edit-server" and not first:
            raise Invalid(f"-e edits real server {_hostport(*ident)} of {svc.name}, which no -a line added before")
        svc.dests[ident] = dest


def _options(words: list[str]) -> dict[str, str | None]:
    """One line's options by name, each with its argument (None when it takes none)."""
    opts: dict[str, str | None] = {}
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        spelling, eq, inline = word.partition("=") if word.startswith("--") else (word, "", "")
        if word == "ops":  # ipvsadm-save before 1.27 printed a bare "ops"
            spelling = "--ops"
        if spelling in _NOT_RULES:
            raise Invalid(f"{spelling} is not a rule: ipvsadm-save prints -A and -a lines")
        if spelling not in _OPTIONS:
            raise Invalid(f"unknown option {word!r}" if word.startswith("-") else f"unexpected argument {word!r}")
        name, nargs = _OPTIONS[spelling]
        value: str | None = None
        if eq:
            if nargs == 0:
                raise Invalid(f"{spelling} takes no argument")
            value = inline
        elif nargs == 1:
            if i == len(words):
                raise Invalid(f"{spelling} needs an argument")
            value, i = words[i], i + 1
        elif nargs == _OPTIONAL and i < len(words) and not words[i].startswith("-") and words[i] != "ops":
            value, i = words[i], i + 1
        if name in _FORWARD:
            name, value = "forward", name
        if name in opts:
            raise Invalid("more than one forwarding method (-g, -i, -m)" if name == "forward" else
                          f"{spelling} is given twice")
        opts[name] = value
    return opts


def _service_key(opts: dict[str, str | None]) -> Key:
    specs = [s for s in _SERVICE_SPECS if s in opts]
    if len(specs) != 1:
        raise Invalid("one of -t, -u, --sctp-service or -f names the service" if not specs else
                      "more than one of -t, -u, --sctp-service, -f")
    spec, text = specs[0], opts[specs[0]] or ""
    if spec == "fwmark-service":
        return ("fwm", integer(text, 1, 2**32 - 1, "fwmark"), 6 if "ipv6" in opts else 4)
    if "ipv6" in opts:
        raise Invalid("-6 goes with -f only (an address says its family)")
    vip, vport = _endpoint(text, "virtual service")
    return (spec.split("-")[0], vip, 0 if vport is None else vport)


def _endpoint(text: str, what: str) -> tuple[IPAddress, int | None]:
    """host[:port] as ipvsadm takes it: [IPv6]:port, IPv4:port, or an address alone."""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise Invalid(f"{what} {text!r} is not [address]:port")
        text_port = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, _, text_port = text.partition(":")
    else:
        host, text_port = text, None  # IPv4 alone, or IPv6 without brackets and port
    addr = address(host, f"{what} address")
    return addr, None if text_port is None else port(text_port, f"{what} port")


def _settings(opts: dict[str, str | None], key: Key) -> Settings:
    settings = Settings(scheduler=opts.get("scheduler") or DEFAULT_SCHEDULER, ops="ops" in opts,
                         engine=opts.get("pe"))
    if "persistent" in opts:
        given = opts["persistent"]
        settings.timeout = DEFAULT_TIMEOUT if given is None else integer(given, 1, MAX_TIMEOUT, "persistence timeout")
    elif key[0] != "fwm" and key[2] == 0:
        raise Invalid("port 0 (every port) needs -p, as in ipvsadm (zero port for a non-persistent service)")
    if opts.get("netmask") is not None:
        settings.netmask = prefix(opts["netmask"] or "", key[2] if key[0] == "fwm" else key[1].version)
        settings.netmask_given = True
    if opts.get("sched-flags") is not None:
        settings.flags = tuple((opts["sched-flags"] or "").split(","))
        for flag in settings.flags:
            if flag not in _SCHED_FLAGS:
                raise Invalid(f"invalid scheduler flag {flag!r}")
            if flag[:3] in ("sh-", "mh-") and flag[:2] != settings.scheduler:
                raise Invalid(f"scheduler flag {flag} needs scheduler {flag[:2]}")
    return settings


def _dest(opts: dict[str, str | None], svc: VirtualService, line: int) -> Dest:
    if "real-server" not in opts:
        raise Invalid("-a and -e need -r (the real server)")
    addr, rport = _endpoint(opts["real-server"] or "", "real server")
    method = _FORWARD[opts["forward"] or ""] if "forward" in opts else Method.DR  # ipvsadm's default: -g
    family = svc.key[2] if svc.fwmark else svc.key[1].version
    if addr.version != family and method != Method.TUN:
        raise Invalid(f"real server {addr} is IPv{addr.version}, {svc.name} IPv{family}: only tunneling crosses")
    dest = Dest(line, addr, rport, method)
    if "weight" in opts:
        dest.weight = integer(opts["weight"] or "", 0, 65535, "weight")
    if "u-threshold" in opts:
        dest.upper = integer(opts["u-threshold"] or "", 0, COUNT_MAX, "upper threshold")
    if "l-threshold" in opts:
        dest.lower = integer(opts["l-threshold"] or "", 0, COUNT_MAX, "lower threshold")
    _tunnel_options(opts, dest)
    return dest


def _tunnel_options(opts: dict[str, str | None], dest: Dest) -> None:
    """--tun-* as ipvsadm checks them: only with -i; gue needs a port; ipip takes nothing more."""
    given = _TUNNEL & opts.keys()
    if not given:
        return
    if dest.method != Method.TUN:
        raise Invalid("tunnel options need -i (tunneling)")
    dest.tun_type = opts.get("tun-type") or "ipip"
    if dest.tun_type not in ("ipip", "gue", "gre"):
        raise Invalid(f"tunnel type {dest.tun_type!r} is not ipip, gue or gre")
    csums = sorted(given - {"tun-type", "tun-port"})
    if len(csums) > 1:
        raise Invalid(f"--{csums[0]} and --{csums[1]} conflict")
    dest.csum = csums[0] if csums else None
    if "tun-port" in given:
        if dest.tun_type != "gue":
            raise Invalid(f"--tun-port goes with --tun-type gue, not {dest.tun_type}")
        dest.tun_port = integer(opts["tun-port"] or "", 1, 65535, "tunnel port")
    elif dest.tun_type == "gue":
        raise Invalid("--tun-type gue needs --tun-port")
    if (dest.csum and dest.tun_type == "ipip") or (dest.csum == "tun-remcsum" and dest.tun_type == "gre"):
        raise Invalid(f"--{dest.csum} does not go with --tun-type {dest.tun_type}")


def _effective_port(dest: Dest, svc: VirtualService) -> int:
    """The port IPVS keeps for the real server: the service's for DR and TUN (and when none is
    given); a fwmark service's real server keeps the one given, or 0 (the packet's own)."""
    if svc.fwmark:
        return dest.port or 0
    if dest.method != Method.NAT or dest.port is None:
        return svc.key[2]
    return dest.port


def _hostport(addr: IPAddress, p: int) -> str:
    return f"[{addr}]:{p}" if addr.version == 6 else f"{addr}:{p}"

