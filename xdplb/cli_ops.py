"""The operator's commands, talking to a director's REST API in LVS's words; this module holds what
they share: the connection options, the errors, the arguments, how a change is reported. The
commands: xdplb/cli_services.py (`service`, `backend`: ipvsadm -A/-E/-D, -a/-e/-d), xdplb/cli_list.py
(`list`: ipvsadm -Ln, --stats, --rate, -Lnc; `simulate`), xdplb/cli_apply.py (`apply`, `config get`,
`import`, `capture`), xdplb/cli_health.py (`check set|clear`, `health`), xdplb/cli_ha.py (`ha`).

Every command takes the connection options (--url, --token, --token-file, --cli-config, -v) and
`-o json`, which prints the API's JSON and nothing else. The API's refusals print its lines in red
and exit 1; a bad argument exits 2.
"""

from __future__ import annotations

import inspect
import ipaddress
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from xdplb.client import ApiClient, ApiError, Reply, SettingsError, Target, Unreachable, resolve
from xdplb.model import key_id, parse_key

ops_app = typer.Typer()  # merged into the xdplb command by register()

out = Console(emoji=False, highlight=False, soft_wrap=True)  # lines stay whole: paths, addresses, scripts
err = Console(stderr=True, emoji=False, highlight=False, soft_wrap=True)


class Output(StrEnum):
    TEXT = "text"
    JSON = "json"


@dataclass
class Ops:
    """What an operator command works with: the API (connected on first use) and how to print."""

    url: str | None
    token: str | None
    token_file: str | None
    cli_config: str | None
    verbose: bool
    output: str
    target: Target | None = None
    _api: ApiClient | None = field(default=None, repr=False)

    @property
    def json(self) -> bool:
        return self.output == Output.JSON

    @property
    def api(self) -> ApiClient:
        if self._api is None:
            target = resolve(self.url, self.token, self.token_file, self.cli_config)
            if self.verbose:
                err.print(f"API {target.url} (from {target.url_from}); token: {target.token_from}",
                          style="dim", markup=False)
            self.target, self._api = target, ApiClient(target)
        return self._api

    def print_json(self, data: Any) -> None:
        out.out(json.dumps(data, indent=2), highlight=False)

    def close(self) -> None:
        if self._api is not None:
            self._api.close()


# ---- the options every operator command takes ---------------------------------------------------

_PANEL = "Connection to the director"
_KW = inspect.Parameter.KEYWORD_ONLY
_CONNECTION = [
    inspect.Parameter("url", _KW, default=None, annotation=Annotated[str | None, typer.Option(
        "--url", help="the API: http://HOST:PORT or unix:/path (else XDPLB_URL, the CLI config's url, "
        "http://127.0.0.1:9780)", rich_help_panel=_PANEL, show_default=False)]),
    inspect.Parameter("token", _KW, default=None, annotation=Annotated[str | None, typer.Option(
        "--token", help="the bearer token (else XDPLB_TOKEN)", rich_help_panel=_PANEL, show_default=False)]),
    inspect.Parameter("token_file", _KW, default=None, annotation=Annotated[str | None, typer.Option(
        "--token-file", help="a file holding the token (else XDPLB_TOKEN_FILE, the CLI config's token_file, "
        "/var/lib/xdplb/<director>/api.token when there is one director)", rich_help_panel=_PANEL,
        show_default=False)]),
    inspect.Parameter("cli_config", _KW, default=None, annotation=Annotated[str | None, typer.Option(
        "--cli-config", help="the CLI's YAML file: url, token_file (else XDPLB_CLI_CONFIG, /etc/xdplb/cli.yaml)",
        rich_help_panel=_PANEL, show_default=False)]),
    inspect.Parameter("verbose", _KW, default=False, annotation=Annotated[bool, typer.Option(
        "--verbose", "-v", help="say which API and token are used, and more detail", rich_help_panel=_PANEL)]),
]


def operator(group: typer.Typer, name: str, output: type[StrEnum] = Output, **settings: Any) -> Callable:
    """Registers `fn(ops, ...)` as the command `name` of `group`: the connection options and -o are
    added to its parameters, and the API's refusals become red lines and exit 1."""
    def register(fn: Callable[..., None]) -> Callable[..., None]:
        own = list(inspect.signature(fn, eval_str=True).parameters.values())[1:]  # all but ops
        default = next(iter(output))
        fmt = inspect.Parameter("output", _KW, default=default, annotation=Annotated[output, typer.Option(
            "--output", "-o", help="text for people, or the API's own document", case_sensitive=False)])

        def run(**kw: Any) -> None:
            ops = Ops(kw.pop("url"), kw.pop("token"), kw.pop("token_file"), kw.pop("cli_config"),
                      kw.pop("verbose"), str(kw.pop("output")))
            with handled(ops):
                fn(ops, **kw)

        run.__name__, run.__doc__ = fn.__name__, fn.__doc__
        run.__signature__ = inspect.Signature([*own, fmt, *_CONNECTION])  # type: ignore[attr-defined]
        group.command(name, **settings)(run)
        return fn
    return register


@contextmanager
def handled(ops: Ops) -> Iterator[None]:
    try:
        yield
    except ApiError as e:
        for line in _explain(e, ops):
            err.print(Text.assemble(("error: ", "bold red"), (line, "red")))
        raise typer.Exit(1) from None
    except Unreachable as e:
        err.print(Text(str(e), "red"))
        err.print(f"point the CLI elsewhere with --url, XDPLB_URL or `url:` in {e.target.config_file}", markup=False)
        raise typer.Exit(1) from None
    except SettingsError as e:
        err.print(Text.assemble(("error: ", "bold red"), (str(e), "red")))
        raise typer.Exit(2) from None
    finally:
        ops.close()


@contextmanager
def needs_route(path: str, feature: str) -> Iterator[None]:
    """FastAPI's own 404 (no such route) under `path` says the director runs an xdplb without `feature`."""
    try:
        yield
    except ApiError as e:
        if e.status == 404 and e.errors == ["Not Found"]:
            raise ApiError(404, [f"this director's API has no {path}: it runs an xdplb without {feature}"]) from None
        raise


def _explain(e: ApiError, ops: Ops) -> list[str]:
    """The API's lines, and what to do when the cause is the caller's token or a concurrent change."""
    source = ops.target.token_from if ops.target else "?"
    hint = {
        401: f"give the director's token: --token-file, XDPLB_TOKEN_FILE or token_file in the CLI config "
             f"(token: {source})",
        403: f"the token used came from {source}",
        412: "the configuration was changed by someone else since it was read: try again",
    }.get(e.status)
    return [*e.errors, *([hint] if hint else [])]


# ---- arguments ----------------------------------------------------------------------------------

def complete_service(incomplete: str) -> list[str]:
    return [p for p in ("tcp", "udp", "fwm") if p.startswith(incomplete)]


ServiceWords = Annotated[list[str], typer.Argument(
    metavar="SERVICE", help="tcp VIP:PORT, udp VIP:PORT, fwm MARK, or an id: tcp:10.100.0.100:80 "
    "([2001:db8::1]:53 for IPv6)", autocompletion=complete_service, show_default=False)]


OptionalService = Annotated[list[str] | None, typer.Argument(
    metavar="[SERVICE]", help="only this service: tcp VIP:PORT, fwm MARK or an id",
    autocompletion=complete_service, show_default=False)]


def split_service(words: list[str], rest: int = 0) -> tuple[str, list[str]]:
    """The service id the first one or two words name, and the `rest` words after it."""
    if not words:
        raise typer.BadParameter("a service is needed: tcp VIP:PORT, udp VIP:PORT or fwm MARK", param_hint="SERVICE")
    if ":" not in words[0] and len(words) >= 2:  # PROTO VIP:PORT, fwm MARK; else an id
        text, others = f"{words[0]}:{words[1]}", words[2:]
    else:
        text, others = words[0], words[1:]
    if len(others) != rest:
        raise typer.BadParameter(f"{' '.join(words)!r}: expected a service" + (" and an address" if rest else ""),
                                 param_hint="SERVICE")
    try:
        return key_id(parse_key(text)), others
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="SERVICE") from None


def split_backend(text: str) -> tuple[str, int | None]:
    """`10.100.1.11`, `10.100.1.11:80`, `2001:db8::11` or `[2001:db8::11]:80` as (address, port)."""
    host, port = text, None
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":") or None
    elif text.count(":") == 1:
        host, port = text.split(":")
    try:
        address = str(ipaddress.ip_address(host))
        number = int(port) if port is not None else None
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not ADDRESS or ADDRESS:PORT", param_hint="ADDRESS") from None
    if number is not None and not 0 <= number <= 65535:
        raise typer.BadParameter(f"{text!r}: the port is not in 0..65535", param_hint="ADDRESS")
    return address, number


def report_change(ops: Ops, reply: Reply, what: str) -> None:
    """A change's answer: -o json prints it, else one line and the difference it made."""
    if ops.json:
        ops.print_json(reply.data)
        return
    change = reply.data
    if change["dry_run"]:
        out.print(Text(f"{what}: dry run, nothing changed (the configuration is at version {change['version']})",
                       "yellow"))
    else:
        out.print(Text(f"{what} (the configuration is at version {change['version']})", "green"))
    for line in diff_lines(change["diff"]):
        out.print(line)


# ---- the difference a change makes ----------------------------------------------------------------

def _value(v: Any) -> str:
    return "none" if v is None else v if isinstance(v, str) else json.dumps(v, separators=(", ", ": "))


def _leaves(changes: dict[str, list[Any]]) -> list[tuple[str, Any, Any]]:
    """Each changed field; of a nested one changed on both sides (a tunnel), the parts that differ."""
    found = []
    for name, (old, new) in changes.items():
        if isinstance(old, dict) and isinstance(new, dict):
            found += [(f"{name}.{k}", old.get(k), new.get(k)) for k in {**old, **new} if old.get(k) != new.get(k)]
        else:
            found.append((name, old, new))
    return found


def _fields(changes: dict[str, list[Any]]) -> str:
    return ", ".join(f"{k} {_value(old)} → {_value(new)}" for k, old, new in _leaves(changes))


def diff_lines(diff: dict[str, Any]) -> list[Text]:
    """A StateDiff (xdplb/diff.py) for people: + added, - removed, ~ changed, each field old → new."""
    lines = [Text(f"+ service {sid}", "green") for sid in diff["added"]]
    lines += [Text(f"- service {sid}", "red") for sid in diff["removed"]]
    for sid, change in diff["changed"].items():
        lines.append(Text(f"~ service {sid}", "yellow"))
        lines += [Text(f"    {k}: {_value(old)} → {_value(new)}") for k, old, new in _leaves(change["fields"])]
        backends = change["backends"]
        lines += [Text(f"    + backend {a}", "green") for a in backends["added"]]
        lines += [Text(f"    - backend {a}", "red") for a in backends["removed"]]
        lines += [Text(f"    ~ backend {a}: {_fields(f)}", "yellow") for a, f in backends["changed"].items()]
    if diff["timeouts"]:
        lines.append(Text(f"~ timeouts: {_fields(diff['timeouts'])}", "yellow"))
    return lines or [Text("no change", "dim")]


def register(app: typer.Typer) -> None:
    """Adds the operator commands to the xdplb command."""
    from xdplb import cli_apply, cli_ha, cli_health, cli_list, cli_services  # noqa: F401  (their commands join ops_app)

    app.add_typer(ops_app)
