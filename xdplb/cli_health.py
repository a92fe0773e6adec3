"""Health checks from the command line: `xdplb check set|clear` writes a service's check (the check of
each of its backends) or one backend's own (which overrides the service's), and `xdplb health` shows
what the checks found, from GET /v1/health.

`check set` with --type builds a new check from the options given, every other field at its default;
without --type it changes the fields given in the check the target has (a backend without its own
starts from its service's). Both read the service and write it back only if nobody changed the
configuration in between (If-Match), as `service edit` does. A misc check's program comes from
--command (one argument each) or from the words after `--`; it runs without a shell.

`xdplb check` without a subcommand is still the data plane's load test (compile and load with the
sizes given), which held the word first.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.text import Text

from xdplb.checks import CheckType
from xdplb.cli_ops import (
    Ops,
    OptionalService,
    err,
    needs_route,
    operator,
    ops_app,
    out,
    split_backend,
    split_service,
)
from xdplb.cli_services import backend_of, read_service, write_service
from xdplb.client import ApiError

Json = dict[str, Any]
check_app = typer.Typer(help="Health checks of a service (each of its backends) or of one backend")
ops_app.add_typer(check_app, name="check")

TargetWords = Annotated[list[str], typer.Argument(
    metavar="SERVICE [BACKEND] [-- PROGRAM ARG...]", help="the service (tcp VIP:PORT, fwm MARK or an id), "
    "optionally one backend's address; a misc check's program and its arguments after --", show_default=False)]
_TIMING = "Timing"
_HTTP = "HTTP and HTTPS"
_OTHER = "UDP and misc"


def _opt(*names: str, help: str, panel: str | None = None, **kw: Any) -> Any:
    return typer.Option(*names, help=help, show_default=False, rich_help_panel=panel, **kw)


# ---- check set, check clear ---------------------------------------------------------------------

@operator(check_app, "set")
def check_set(
    ops: Ops, words: TargetWords,
    kind: Annotated[CheckType | None, _opt("--type", help="tcp, http, https, udp or misc: a new check; without it, "
                                           "the fields given change in the current one", case_sensitive=False)]
    = None,
    interval: Annotated[float | None, _opt("--interval", help="seconds between checks (default 1)",
                                           panel=_TIMING)] = None,
    timeout: Annotated[float | None, _opt("--timeout", help="seconds a check may take (default 1)",
                                          panel=_TIMING)] = None,
    rise: Annotated[int | None, _opt("--rise", help="successes in a row that bring a backend up (default 2)",
                                     panel=_TIMING)] = None,
    fall: Annotated[int | None, _opt("--fall", help="failures in a row that take it down (default 2)",
                                     panel=_TIMING)] = None,
    warmup: Annotated[float | None, _opt("--warmup", help="first check within this many seconds, at random",
                                         panel=_TIMING)] = None,
    source: Annotated[str | None, _opt("--source", help="the check's source address")] = None,
    address: Annotated[str | None, _opt("--address", help="address to check (default: the backend's)")] = None,
    port: Annotated[int | None, _opt("--port", help="port to check (default: the backend's, else the service's)")]
    = None,
    path: Annotated[str | None, _opt("--path", help="URL path (default /)", panel=_HTTP)] = None,
    host: Annotated[str | None, _opt("--host", help="Host header", panel=_HTTP)] = None,
    status: Annotated[list[str] | None, _opt("--status", help="expected status code or range (repeat; default "
                                             "200-299)", panel=_HTTP)] = None,
    body_regex: Annotated[str | None, _opt("--body-regex", help="the body must match this", panel=_HTTP)] = None,
    digest: Annotated[str | None, _opt("--digest", help="MD5 of the body (keepalived's genhash)", panel=_HTTP)]
    = None,
    verify_tls: Annotated[bool | None, _opt("--verify-tls/--no-verify-tls", help="check the server's certificate "
                                            "(default: verify)", panel=_HTTP)] = None,
    payload: Annotated[str | None, _opt("--payload", help="UDP: what to send", panel=_OTHER)] = None,
    expect: Annotated[str | None, _opt("--expect", help="UDP: a regular expression the answer must match",
                                       panel=_OTHER)] = None,
    command: Annotated[list[str] | None, _opt("--command", help="misc: the program, then its arguments (repeat, "
                                              "one word each), or give them after --", panel=_OTHER)] = None,
    dynamic: Annotated[bool | None, _opt("--dynamic/--no-dynamic", help="misc: the exit code gives the weight "
                                         "(2-255: code-2), as keepalived's misc_dynamic", panel=_OTHER)] = None,
    notify: Annotated[list[str] | None, _opt("--notify", help="a program run on each transition, then its "
                                             "arguments (repeat); it gets the service, backend, up|down, reason")]
    = None,
) -> None:
    """Set the health check of a service (each of its backends) or of one backend.

    xdplb check set tcp 10.100.0.100:80 --type http --path /healthz --status 200-299;
    xdplb check set tcp:10.100.0.100:80 10.100.1.11 --type misc -- /usr/local/bin/check --deep"""
    sid, backend, program = _target(words)
    if program and command:
        raise typer.BadParameter("the program: --command or the words after --, not both")
    fields = _given(interval=interval, timeout=timeout, rise=rise, fall=fall, warmup=warmup, source=source,
                    address=address, port=port, path=path, host=host, status=status, body_regex=body_regex,
                    digest=digest, verify_tls=verify_tls, payload=payload, expect=expect,
                    command=command or program, dynamic=dynamic, notify=notify)
    if kind is None and not fields:
        raise typer.BadParameter("nothing to set: give --type for a new check, or the fields to change")
    body, version = read_service(ops, sid)
    holder = backend_of(body, sid, backend) if backend else body
    if kind is not None:
        holder["check"] = {"type": str(kind), **fields}
    else:
        current = holder.get("check") or body.get("check")
        if current is None:
            raise typer.BadParameter(f"{backend or sid} has no check to change: give --type")
        holder["check"] = {**current, **fields}
    write_service(ops, sid, body, version, f"check of {_name(sid, backend)} set")


@operator(check_app, "clear")
def check_clear(ops: Ops, words: TargetWords) -> None:
    """Remove the check of a service, or a backend's own (it then has its service's).

    A service's backends with a check of their own keep it: xdplb check clear tcp 10.100.0.100:80"""
    sid, backend, program = _target(words)
    if program:
        raise typer.BadParameter(f"{' '.join(program)!r}: expected a service and optionally a backend")
    body, version = read_service(ops, sid)
    (backend_of(body, sid, backend) if backend else body)["check"] = None
    write_service(ops, sid, body, version, f"check of {_name(sid, backend)} cleared")


def _target(words: list[str]) -> tuple[str, str | None, list[str]]:
    """The service the first words name, the backend after it if the next word is an address, and the
    words left (a program, after --)."""
    if not words:
        raise typer.BadParameter("a service is needed: tcp VIP:PORT, udp VIP:PORT or fwm MARK", param_hint="SERVICE")
    size = 1 if ":" in words[0] or len(words) < 2 else 2  # an id, or PROTO VIP:PORT / fwm MARK
    sid, _ = split_service(words[:size])
    rest = words[size:]
    if rest and _is_address(rest[0]):
        return sid, split_backend(rest[0])[0], rest[1:]
    return sid, None, rest


def _is_address(word: str) -> bool:
    try:
        split_backend(word)
    except typer.BadParameter:
        return False
    return True


def _given(**options: Any) -> Json:
    """The options given (a list option not given comes as an empty list)."""
    return {k: v for k, v in options.items() if v is not None and v != []}


def _name(sid: str, backend: str | None) -> str:
    return f"backend {backend} of {sid}" if backend else f"service {sid}"


# ---- health -------------------------------------------------------------------------------------

@operator(ops_app, "health")
def health(ops: Ops, service: OptionalService = None) -> None:
    """Every checked backend: UP or DOWN, its check, since when, why, and a misc check's weight.

    -o json: GET /v1/health. xdplb health tcp 10.100.0.100:80"""
    sid = split_service(service)[0] if service else None
    with needs_route("/v1/health", "health checks"):
        rows = ops.api.get("/v1/health", service=sid).data
    if ops.json:
        ops.print_json(rows)
        return
    if not rows:
        err.print(f"no checked backends{f' in {sid}' if sid else ''}", style="yellow")
        return
    for row, line in zip([None, *rows], health_table(rows, time.time()), strict=True):
        out.print(Text(line, "red" if row and not row["up"] else ""))


def health_table(rows: list[Json], now: float) -> list[str]:
    """GET /v1/health as aligned columns, a title first; the reason last, as long as it is."""
    table = [("SERVICE", "BACKEND", "STATE", "CHECK", "SINCE", "WEIGHT", "REASON")]
    table += [(r["service"], r["backend"], r["state"].upper(), r["check"], ago(r["since"], now),
               "-" if r["weight"] is None else str(r["weight"]), r["reason"]) for r in rows]
    return aligned(table)


def aligned(table: list[tuple[str, ...]]) -> list[str]:
    """Rows as columns two spaces apart, each as wide as its widest cell; the last as long as it is."""
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    return ["  ".join([*(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)), row[-1]]) for row in table]


def ago(when: float | None, now: float) -> str:
    """How long ago, in its largest unit: 45s, 12m, 3h, 2d ago; '-' for never."""
    if when is None:
        return "-"
    seconds = max(0, int(now - when))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def health_by_backend(ops: Ops, sid: str | None) -> list[Json]:
    """GET /v1/health for `xdplb list` (only `sid`'s rows if given); [] from a director without it."""
    try:
        rows = ops.api.get("/v1/health").data
    except ApiError as e:
        if e.status == 404:
            return []
        raise
    return [r for r in rows if sid is None or r["service"] == sid]
