"""keepalived's health checks (keepalived 2.2's checkers) read into xdplb HealthChecks, decided once:

- TCP_CHECK is a tcp check, HTTP_GET http, SSL_GET https (verify_tls false: keepalived never
  verifies the server's certificate, whatever its global `SSL { ca }` says), MISC_CHECK misc,
  UDP_CHECK udp. SMTP_CHECK, DNS_CHECK, BFD_CHECK, PING_CHECK and FILE_CHECK are left out with a
  line in `skipped`: the real server then has no check from them.
- keepalived runs every checker of a real server; xdplb runs one check per backend: the first
  checker that translates is taken, the others are said to be left out.
- Timing, as keepalived resolves it: a checker's option, else its real server's, else its virtual
  server's, else keepalived's default. interval = delay_loop (60 s); timeout = connect_timeout (5 s),
  for MISC_CHECK misc_timeout (0 or absent: delay_loop); warmup = warmup (absent: delay_loop, as
  keepalived spreads first checks over a delay_loop); fall = retry + 1, since keepalived takes a
  server down after its first failure and `retry` more (retry is 1 by default, 0 for MISC_CHECK;
  `nb_get_retry` is its old name); rise = 1, since one success brings a keepalived server up.
  delay_before_retry is left out with a line (xdplb retries at the interval).
- HTTP_GET/SSL_GET: the first `url` with a path (keepalived ignores one without) gives path,
  status_code (every code or range), digest, regex (its caseless/multiline/dotall/extended options
  as inline flags) and virtualhost (else the checker's, the real server's, the virtual server's).
  regex_no_match, the other regex options, http_protocol, fast_recovery and SNI are left out.
- MISC_CHECK's misc_path becomes an argument list split like a shell (shlex) but run without one:
  a path that needs a shell (| & ; < > ( ), `$`, a backquote) is left out with a line. misc_dynamic
  is dynamic; `user` is left out (xdplb runs checks as itself).
- UDP_CHECK: payload's hex bytes are sent, require_reply becomes the regular expression its bytes
  must start the answer with (X nibbles match anything), require_reply alone any answer. Bytes past
  ASCII are left out (xdplb's payload and expectation are text).
- notify_up/notify_down: xdplb has one hook, run with up or down as an argument. They translate
  only when both name the same command; else both are left out with a line.
A value keepalived would refuse (a bad port, status code, digest, timer) is an Invalid error.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from xdplb.checks import CheckType, HealthCheck
from xdplb.imports.keepalived_syntax import Block
from xdplb.imports.result import explain
from xdplb.imports.values import Invalid, address, integer

DELAY_LOOP = 60.0  # keepalived's default delay_loop
CONNECT_TIMEOUT = 5.0  # keepalived's default connect_timeout
TRANSLATED = {"TCP_CHECK": CheckType.TCP, "HTTP_GET": CheckType.HTTP, "SSL_GET": CheckType.HTTPS,
              "MISC_CHECK": CheckType.MISC, "UDP_CHECK": CheckType.UDP}
_LEFT_OUT = {
    "SMTP_CHECK": "xdplb has no SMTP check (a tcp or misc check can stand in)",
    "DNS_CHECK": "xdplb has no DNS check (a udp or misc check can stand in)",
    "BFD_CHECK": "xdplb has no BFD",
    "PING_CHECK": "xdplb has no ICMP echo check",
    "FILE_CHECK": "xdplb reads no track files",
}
CHECKERS = set(TRANSLATED) | set(_LEFT_OUT)
TIMING = {"delay_loop", "retry", "connect_timeout", "warmup", "virtualhost", "delay_before_retry", "alpha"}
UNKNOWN = "unknown keyword: keepalived ignores it"
_TIMER = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_BOOLS = {"on": True, "true": True, "yes": True, "off": False, "false": False, "no": False}
_SHELL = frozenset("|&;<>()")
_REGEX_FLAGS = {"caseless": "i", "multiline": "m", "dotall": "s", "extended": "x"}
_HEX = re.compile(r"[0-9a-fA-F]")


class NeedsShell(ValueError):
    """A command line only a shell can run."""


@dataclass
class Timing:
    """The options a checker takes from its real server, which takes them from its virtual server."""

    delay_loop: float | None = None
    retry: int | None = None
    connect_timeout: float | None = None
    warmup: float | None = None
    virtualhost: str | None = None

    def under(self, *outer: Timing) -> Timing:
        """These options, each taken from the first of self and `outer` that sets it."""
        levels = (self, *outer)
        return Timing(**{name: next((getattr(t, name) for t in levels if getattr(t, name) is not None), None)
                         for name in ("delay_loop", "retry", "connect_timeout", "warmup", "virtualhost")})


@dataclass
class Checker:
    """One checker block: its kind, its own timing, the HealthCheck fields its statements give, and
    why it is left out (None: it translates)."""

    block: Block
    timing: Timing = field(default_factory=Timing)
    fields: dict[str, Any] = field(default_factory=dict)
    skip: str | None = None
    errors: list[str] = field(default_factory=list)  # refused values inside its url blocks


def note(notes: list[str], statement: Block, reason: str) -> None:
    notes.append(f"{statement.where}: {statement.keyword} not translated: {reason}")


def one(statement: Block) -> str:
    if len(statement.args) != 1:
        raise Invalid(f"{statement.keyword} takes one value")
    return statement.args[0]


def timer(statement: Block) -> float:
    """keepalived's <TIMER>: seconds, fractions allowed."""
    text = one(statement)
    if not _TIMER.fullmatch(text):
        raise Invalid(f"{statement.keyword} {text!r} is not a number of seconds")
    return float(text)


def boolean(statement: Block) -> bool:
    """A flag that may take keepalived's <BOOL> (absent: true)."""
    if not statement.args:
        return True
    value = _BOOLS.get(one(statement).lower())
    if value is None:
        raise Invalid(f"{statement.keyword} {statement.args[0]!r}: not one of {'|'.join(_BOOLS)}")
    return value


def read_timing(timing: Timing, statement: Block, notes: list[str]) -> None:
    """One of the options in TIMING, at any level."""
    keyword = statement.keyword
    if keyword in ("retry", "nb_get_retry"):
        timing.retry = integer(one(statement), 0, 99, "retry")  # fall = retry + 1, at most 100 for xdplb
    elif keyword == "connect_timeout":
        timing.connect_timeout = timer(statement)
        if not timing.connect_timeout:
            raise Invalid("connect_timeout 0: a check needs time to connect")
    elif keyword in ("delay_loop", "warmup"):
        setattr(timing, keyword, timer(statement))
    elif keyword == "virtualhost":
        timing.virtualhost = one(statement)
    elif keyword == "delay_before_retry":
        timer(statement)
        note(notes, statement, "xdplb checks again at the interval after a failure")
    elif keyword == "alpha" and boolean(statement):
        note(notes, statement, "xdplb starts a backend up, and takes it down after `fall` failed checks")


# ---- command lines ------------------------------------------------------------------------------

def argv(text: str, what: str) -> list[str]:
    """A keepalived script's command line as the argument list xdplb runs without a shell. Raises
    NeedsShell when it uses the shell's syntax, Invalid when it is empty or a quote is not closed."""
    if "$" in text or "`" in text:
        raise NeedsShell("it expands `$` or a backquote")
    lexer = shlex.shlex(text, posix=False, punctuation_chars="".join(sorted(_SHELL)))
    lexer.whitespace_split = True
    try:
        operators = [t for t in lexer if set(t) <= _SHELL]
        words = shlex.split(text)
    except ValueError as e:
        raise Invalid(f"{what} {text!r}: {e}") from None
    if operators:
        raise NeedsShell(f"it uses the shell's {' '.join(dict.fromkeys(operators))}")
    if not words:
        raise Invalid(f"{what} is empty")
    return words


def _word(word: str) -> str:
    """A word after a quoted command line: the shell would read an operator in it too."""
    if set(word) <= _SHELL:
        raise NeedsShell(f"it uses the shell's {word}")
    return word


def script(statement: Block, notes: list[str]) -> list[str] | None:
    """notify_up, notify_down, quorum_up, quorum_down: `"COMMAND LINE" [user [group]]`; None (with a
    line) when it needs a shell."""
    if not statement.args:
        raise Invalid(f"{statement.keyword} needs a command")
    try:
        words = argv(statement.args[0], statement.keyword)
    except NeedsShell as e:
        note(notes, statement, f"{e}, and xdplb runs hooks without a shell")
        return None
    if statement.args[1:]:
        notes.append(f"{statement.where}: user {' '.join(statement.args[1:])} of {statement.keyword} not "
                     "translated: xdplb runs hooks as itself")
    return words


def notify(up: Block | None, down: Block | None, notes: list[str], errors: list[str]) -> list[str] | None:
    """The one notify hook xdplb runs with up|down appended, from notify_up and notify_down."""
    given = [b for b in (up, down) if b is not None]
    if len(given) == 1:
        note(notes, given[0], "xdplb has one hook for both transitions (it passes up or down); give notify_up "
                              "and notify_down the same command to translate it")
        return None
    if not given:
        return None
    commands = []
    for block in given:
        try:
            commands.append(script(block, notes))
        except Invalid as e:
            errors.append(f"{block.where}: {e}")
            return None
    if None in commands:
        return None
    if commands[0] != commands[1]:
        for b in given:
            note(notes, b, "notify_up and notify_down run different commands, and xdplb has one hook for "
                           "both transitions (it passes up or down)")
        return None
    return commands[0]


# ---- checkers -----------------------------------------------------------------------------------

def read_checker(block: Block, notes: list[str], errors: list[str],
                 unsupported: Callable[[Block], str | None]) -> Checker:
    """A checker block's settings; a bad value goes to `errors`, named by its line."""
    checker = Checker(block)
    if block.keyword in _LEFT_OUT:
        checker.skip = _LEFT_OUT[block.keyword]
        return checker
    handlers = _HANDLERS[block.keyword]
    for statement in block.children or []:
        reason = unsupported(statement)
        try:
            if reason:
                notes.append(f"{statement.where}: {statement.text} not translated: {reason}")
            elif statement.keyword in handlers:
                handlers[statement.keyword](checker, statement, notes)
            elif statement.keyword in TIMING or statement.keyword == "nb_get_retry":
                read_timing(checker.timing, statement, notes)
            else:
                note(notes, statement, UNKNOWN)
        except Invalid as e:
            errors.append(f"{statement.where}: {e}")
    errors.extend(checker.errors)
    _finish(checker, notes)
    return checker


def _finish(checker: Checker, notes: list[str]) -> None:
    """What a complete checker still lacks, as keepalived sees it."""
    kind = checker.block.keyword
    if checker.skip is not None:
        return
    if kind == "MISC_CHECK" and "command" not in checker.fields:
        checker.skip = "it has no misc_path (keepalived drops it too)"
    elif kind in ("HTTP_GET", "SSL_GET") and "path" not in checker.fields:
        checker.skip = "it has no url with a path (keepalived drops it too)"
    elif kind == "UDP_CHECK" and "payload" not in checker.fields:
        notes.append(f"{checker.block.where}: UDP_CHECK without a payload: keepalived sends random bytes, xdplb "
                     "an empty datagram")


def health_check(checker: Checker, outer: list[Timing], extra: dict[str, Any]) -> HealthCheck:
    """The checker's HealthCheck, its timing resolved through its real and virtual servers' (`outer`,
    innermost first). Raises Invalid with the model's reason."""
    kind = checker.block.keyword
    timing = checker.timing.under(*outer)
    interval = DELAY_LOOP if timing.delay_loop is None else timing.delay_loop
    fields = dict(checker.fields)
    retry = timing.retry if timing.retry is not None else (0 if kind == "MISC_CHECK" else 1)
    if kind == "MISC_CHECK":
        fields["timeout"] = fields.get("timeout") or interval  # keepalived: misc_timeout 0 is delay_loop
    else:
        fields["timeout"] = CONNECT_TIMEOUT if timing.connect_timeout is None else timing.connect_timeout
    if kind in ("HTTP_GET", "SSL_GET"):
        fields.setdefault("host", timing.virtualhost)
    if kind == "SSL_GET":
        fields["verify_tls"] = False
    try:
        return HealthCheck(type=TRANSLATED[kind], interval=interval, rise=1, fall=retry + 1,
                           warmup=interval if timing.warmup is None else timing.warmup, **fields, **extra)
    except ValidationError as e:
        raise Invalid(explain(e)) from None


def _connect_ip(checker: Checker, statement: Block, notes: list[str]) -> None:
    checker.fields["address"] = address(one(statement), "connect_ip")


def _connect_port(checker: Checker, statement: Block, notes: list[str]) -> None:
    checker.fields["port"] = integer(one(statement), 1, 65535, "connect_port")


def _bindto(checker: Checker, statement: Block, notes: list[str]) -> None:
    checker.fields["source"] = address(one(statement), "bindto")


def _left_out(reason: str) -> Callable[[Checker, Block, list[str]], None]:
    def handler(checker: Checker, statement: Block, notes: list[str]) -> None:
        note(notes, statement, reason)
    return handler


def _url(checker: Checker, statement: Block, notes: list[str]) -> None:
    if "path" in checker.fields:
        note(notes, statement, "xdplb checks one URL, the first")
        return
    url: dict[str, Any] = {}
    for item in statement.children or []:
        handler = _URL.get(item.keyword)
        try:
            if handler is None:
                note(notes, item, UNKNOWN)
            else:
                handler(url, item, notes)
        except Invalid as e:
            checker.errors.append(f"{item.where}: {e}")
    if "path" not in url:
        note(notes, statement, "it has no path (keepalived ignores it too)")
        return
    checker.fields.update(url)


def _path(url: dict[str, Any], statement: Block, notes: list[str]) -> None:
    url["path"] = one(statement)


def _status(url: dict[str, Any], statement: Block, notes: list[str]) -> None:
    codes = []
    for word in statement.args:
        low, dash, high = word.partition("-")
        first = integer(low, 100, 599, "status_code")
        last = integer(high, 100, 599, "status_code") if dash else first
        if last < first:
            raise Invalid(f"status_code {word}: the range ends before it starts")
        codes.append(f"{first}-{last}" if dash else str(first))
    if not codes:
        raise Invalid("status_code needs a code or a range (200, 200-299)")
    url["status"] = codes


def _digest(url: dict[str, Any], statement: Block, notes: list[str]) -> None:
    digest = one(statement)
    if not re.fullmatch(r"[0-9a-fA-F]{32}", digest):
        raise Invalid(f"digest {digest!r} is not an MD5 digest (32 hex digits, as genhash prints)")
    url["digest"] = digest.lower()


def _virtualhost(url: dict[str, Any], statement: Block, notes: list[str]) -> None:
    url["host"] = one(statement)


def _regex(url: dict[str, Any], statement: Block, notes: list[str]) -> None:
    pattern = one(statement)
    try:
        re.compile(pattern)
    except re.error as e:
        note(notes, statement, f"a PCRE pattern Python's re cannot read ({e}); the check goes on without it")
        return
    url["body_regex"] = url.get("body_regex", "") + pattern


def _regex_options(url: dict[str, Any], statement: Block, notes: list[str]) -> None:
    flags = "".join(_REGEX_FLAGS[o] for o in statement.args if o in _REGEX_FLAGS)
    others = [o for o in statement.args if o not in _REGEX_FLAGS]
    if flags:
        url["body_regex"] = f"(?{flags})" + url.get("body_regex", "")
    if others:
        note(notes, statement, f"{' '.join(others)}: xdplb's regular expressions are Python's")


_URL_LEFT_OUT = "xdplb's HTTP check has no such setting"
_URL: dict[str, Callable[[dict[str, Any], Block, list[str]], None]] = {
    "path": _path, "status_code": _status, "digest": _digest, "virtualhost": _virtualhost, "regex": _regex,
    "regex_options": _regex_options,
    **dict.fromkeys(("regex_no_match", "regex_stack", "regex_min_offset", "regex_max_offset", "tls_compliant"),
                    lambda url, statement, notes: note(notes, statement, _URL_LEFT_OUT)),
}


def _misc_path(checker: Checker, statement: Block, notes: list[str]) -> None:
    if not statement.args:
        raise Invalid("misc_path needs a command")
    try:
        words = argv(statement.args[0], "misc_path") + [_word(w) for w in statement.args[1:]]
    except NeedsShell as e:
        checker.skip = f"misc_path {statement.args[0]!r}: {e}, and xdplb runs checks without a shell"
        return
    checker.fields["command"] = words


def _misc_timeout(checker: Checker, statement: Block, notes: list[str]) -> None:
    checker.fields["timeout"] = float(integer(one(statement), 0, 600, "misc_timeout"))


def _misc_dynamic(checker: Checker, statement: Block, notes: list[str]) -> None:
    checker.fields["dynamic"] = True


def _payload(checker: Checker, statement: Block, notes: list[str]) -> None:
    data = hex_bytes(" ".join(statement.args), statement.keyword, wildcards=False)
    if any(value > 0x7F for value, _ in data):
        checker.skip = "its payload has bytes past ASCII, and xdplb's UDP payload is text"
        return
    checker.fields["payload"] = "".join(chr(value) for value, _ in data)


def _require_reply(checker: Checker, statement: Block, notes: list[str]) -> None:
    if not statement.args:
        checker.fields["expect"] = "(?s).*"  # any answer, but an answer
        return
    pattern = reply_pattern(hex_bytes(" ".join(statement.args), statement.keyword, wildcards=True))
    if pattern is None:
        checker.skip = "require_reply has bytes past ASCII, and xdplb's UDP expectation is text"
        return
    checker.fields["expect"] = pattern
    notes.append(f"{statement.where}: require_reply: an answer shorter than its bytes is down for xdplb "
                 "(keepalived compares as far as the answer goes)")


def hex_bytes(text: str, what: str, wildcards: bool) -> list[tuple[int, int]]:
    """keepalived's HEX_STR: whitespace-separated groups of hex digit pairs, a lone last digit a byte
    of its own ("Ab12f 3" is AB 12 0F 03). Each byte as (value, mask): an X nibble (wildcards only)
    has its mask bits clear."""
    out = []
    for group in text.split():
        for i in range(0, len(group), 2):
            pair = group[i:i + 2].rjust(2, "0")
            value = mask = 0
            for digit in pair:
                wild = wildcards and digit in "xX"
                if not wild and not _HEX.fullmatch(digit):
                    raise Invalid(f"{what} {text!r}: {digit!r} is not a hex digit")
                value, mask = value << 4 | (0 if wild else int(digit, 16)), mask << 4 | (0 if wild else 0xF)
            out.append((value, mask))
    if not out:
        raise Invalid(f"{what} needs hex bytes")
    return out


def reply_pattern(data: list[tuple[int, int]]) -> str | None:
    """A regular expression the answer must start with; None when a byte may be past ASCII."""
    parts = []
    for value, mask in data:
        chars = [c for c in range(256) if c & mask == value & mask]
        if max(chars) > 0x7F:
            return None
        parts.append(re.escape(chr(chars[0])) if len(chars) == 1 else
                     "[" + "".join(re.escape(chr(c)) for c in chars) + "]")
    return "^" + "".join(parts)


_Handler = Callable[[Checker, Block, list[str]], None]
_SOCKET: dict[str, _Handler] = {
    "connect_ip": _connect_ip, "connect_port": _connect_port, "bindto": _bindto,
    "bind_port": _left_out("xdplb's checks take any source port"),
    "bind_if": _left_out("xdplb's checks leave by the route to the backend"),
    "fwmark": _left_out("xdplb's checks carry no firewall mark"),
    "log_all_failures": _left_out("xdplb logs each transition"),
}
_HTTP: dict[str, _Handler] = {
    **_SOCKET, "url": _url,
    "http_protocol": _left_out("xdplb's HTTP check sends its own request"),
    "fast_recovery": _left_out("xdplb checks one URL"),
}
_HANDLERS: dict[str, dict[str, _Handler]] = {
    "TCP_CHECK": _SOCKET,
    "HTTP_GET": _HTTP,
    "SSL_GET": {**_HTTP, **dict.fromkeys(("enable_sni", "sni_name", "tls_compliant"),
                                         _left_out("xdplb's https check has no such setting"))},
    "MISC_CHECK": {"misc_path": _misc_path, "misc_timeout": _misc_timeout, "misc_dynamic": _misc_dynamic,
                   "user": _left_out("xdplb runs checks as itself"),
                   "log_all_failures": _left_out("xdplb logs each transition")},
    "UDP_CHECK": {**_SOCKET, "payload": _payload, "require_reply": _require_reply,
                  **dict.fromkeys(("min_reply_length", "max_reply_length"),
                                  _left_out("xdplb's UDP check reads the answer with `expect` only"))},
}


def backend_check(checkers: list[Checker], outer: list[Timing], extra: dict[str, Any], notes: list[str],
                  errors: list[str]) -> HealthCheck | None:
    """The one check xdplb runs for a real server: its first checker that translates; every other is
    said to be left out. A refused value goes to `errors`."""
    chosen: Checker | None = None
    for checker in checkers:
        if checker.skip is not None:
            note(notes, checker.block, checker.skip)
        elif chosen is not None:
            note(notes, checker.block, f"xdplb runs one check per backend: the {chosen.block.keyword} at "
                                       f"{chosen.block.where} is the one translated")
        else:
            chosen = checker
    if chosen is None:
        return None
    try:
        return health_check(chosen, outer, extra)
    except Invalid as e:
        errors.append(f"{chosen.block.where}: {chosen.block.keyword}: {e}")
        return None
