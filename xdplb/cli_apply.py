"""The operator's commands on the whole configuration, and capture: `apply -f` (the daemon's YAML
shape, checked here first with each problem's line), `config get` (YAML that `apply -f` takes back),
`import ipvsadm|keepalived` (through xdplb.imports; keepalived's VRRP instances as the daemon
configuration's `ha:` section, a file) and `capture` (a pcap of the balancer's traffic).

An import replaces the whole configuration, as `ipvsadm-restore` after `ipvsadm -C` does, all or
nothing; `--merge` adds the imported services to the running ones instead, refusing any that exists.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import struct
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any, NoReturn

import typer
import yaml
from rich.text import Text

from xdplb.cli_ops import Ops, OptionalService, err, operator, ops_app, out, report_change, split_backend, split_service
from xdplb.config import ConfigError, parse_services
from xdplb.imports.result import Imported, ImportFormatError
from xdplb.model import Protocol, Service, Timeouts
from xdplb.vrrp.config import HaSettings

config_app = typer.Typer(help="The whole configuration of a director", no_args_is_help=True)
import_app = typer.Typer(help="Services from LVS tools: ipvsadm-save, keepalived.conf", no_args_is_help=True)
ops_app.add_typer(config_app, name="config")
ops_app.add_typer(import_app, name="import")

# ---- the configuration as a file ------------------------------------------------------------------

def read_document(text: str, source: str) -> dict[str, Any]:
    """The body of PUT /v1/config from a file in the daemon's YAML shape: `services:` and optionally
    `timeouts:` (absent: they stay), or a whole daemon configuration (its other sections are left
    out). ConfigError names each problem's line."""
    doc = parse_services(text, source)
    if "services" not in doc.model_fields_set:
        raise ConfigError([f"{source}: no services: key (`services: []` removes every service)"])
    return {"services": [s.model_dump(mode="json") for s in doc.services],
            "timeouts": doc.timeouts.model_dump(mode="json") if doc.timeouts else None}


def config_yaml(services: list[dict[str, Any]], timeouts: dict[str, Any] | None, comment: str = "") -> str:
    """Services (as the API shows them) and timeouts as YAML that `apply -f` reads back equal; fields
    at their defaults are left out."""
    doc: dict[str, Any] = {"services": [_compact(Service.model_validate({k: v for k, v in s.items() if k != "id"}))
                                        for s in services]}
    if timeouts is not None:
        doc["timeouts"] = Timeouts.model_validate(timeouts).model_dump(mode="json")
    head = "".join(f"# {line}\n" for line in comment.splitlines())
    return head + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, allow_unicode=True)


def _compact(service: Service) -> dict[str, Any]:
    data = service.model_dump(mode="json", exclude_defaults=True)
    if service.persistence:  # `persistence: {}` would say it obscurely
        data["persistence"] = service.persistence.model_dump(mode="json", exclude_none=True)
    return data


def _read(path: str) -> tuple[str, str]:
    """A file's text and its name for messages; `-` is standard input."""
    if path == "-":
        return sys.stdin.read(), "<stdin>"
    try:
        return Path(path).read_text(), path
    except (OSError, UnicodeDecodeError) as e:
        raise typer.BadParameter(f"cannot read {path}: {e}") from None


def _refuse(messages: list[str]) -> NoReturn:
    for line in messages:
        err.print(Text(line, "red"))
    raise typer.Exit(1)


DryRun = Annotated[bool, typer.Option("--dry-run", help="show what would change, change nothing")]


@operator(ops_app, "apply")
def apply(ops: Ops, file: Annotated[str, typer.Option("--file", "-f", help="the YAML file (- : standard input)")],
          dry_run: DryRun = False) -> None:
    """Make a YAML file's services (and timeouts, if given) the configuration, all or nothing.

    Services the file does not list are removed. The file is checked here first; --dry-run shows the difference."""
    text, source = _read(file)
    try:
        document = read_document(text, source)
    except ConfigError as e:
        _refuse(e.messages)
    reply = ops.api.call("PUT", "/v1/config", params={"dry_run": dry_run}, body=document)
    report_change(ops, reply, f"{source} applied" if not dry_run else source)


class ConfigFormat(StrEnum):
    YAML = "yaml"
    JSON = "json"


@operator(config_app, "get", output=ConfigFormat)
def config_get(ops: Ops) -> None:
    """The running configuration, as YAML that apply -f takes (-o json: the API's document)."""
    reply = ops.api.get("/v1/config")
    if ops.output == "json":
        ops.print_json(reply.data)
        return
    comment = f"xdplb configuration version {reply.data['version']} from {ops.target.url if ops.target else '?'}"
    out.out(config_yaml(reply.data["services"], reply.data["timeouts"], comment), end="")


# ---- import -------------------------------------------------------------------------------------------

Merge = Annotated[bool, typer.Option("--merge", help="add to the running services instead of replacing them all")]


@operator(import_app, "ipvsadm")
def import_ipvsadm(ops: Ops, file: Annotated[str, typer.Argument(help="ipvsadm-save -n output (- : stdin)")] = "-",
                   dry_run: DryRun = False, merge: Merge = False) -> None:
    """Replace the configuration with an ipvsadm-save -n dump, all or nothing (ipvsadm-restore).

    --merge adds its services to the running ones instead."""
    text, source = _read(file)
    _import(ops, "ipvsadm", lambda m: m.parse(text, source), dry_run, merge)


HaYaml = Annotated[str | None, typer.Option(
    "--ha-yaml", metavar="PATH", show_default=False,
    help="write the vrrp_instance blocks to this file as the ha: section of the daemon's configuration "
         "(with --dry-run too: it changes nothing running)")]


@operator(import_app, "keepalived")
def import_keepalived(ops: Ops, file: Annotated[str, typer.Argument(help="keepalived.conf")],
                      dry_run: DryRun = False, merge: Merge = False, ha_yaml: HaYaml = None) -> None:
    """Replace the configuration with a keepalived.conf's virtual servers, all or nothing.

    --merge adds its services to the running ones instead.

    --ha-yaml PATH writes its VRRP instances as the ha: section of the daemon's configuration file.

    A file of VRRP instances alone leaves the running services as they are."""
    text, source = _read(file)
    imported = _parse("keepalived", lambda m: m.parse(text, source, Path(file).parent))
    if ha_yaml is not None and imported.ha is None:
        _refuse([f"{source} has no vrrp_instance: nothing to write to {ha_yaml}"])
    if imported.ha is not None:
        count = len(imported.ha.instances)
        found = f"{count} VRRP instance{'s' * (count != 1)} ({', '.join(i.name for i in imported.ha.instances)})"
        if ha_yaml is not None:
            _write(ha_yaml, ha_document(imported.ha, f"imported from {source} by `xdplb import keepalived`"))
            err.print(f"{found} written to {ha_yaml}: the ha: section of the daemon's configuration", markup=False)
        else:
            err.print(f"{source}: {found} found: --ha-yaml PATH writes {'them' if count != 1 else 'it'} as the ha: "
                      "section of the daemon's configuration", markup=False)
    if imported.ha is not None and not imported.services:  # a VRRP-only file: the services stay
        message = f"{source}: no virtual server imported: the running services are left as they are"
        if ops.json:
            ops.print_json({"services": "unchanged", "vrrp_instances": [i.name for i in imported.ha.instances],
                            "ha_yaml": ha_yaml})
        else:
            out.print(Text(message, "yellow"))
        return
    _apply(ops, "keepalived", imported, dry_run, merge)


def ha_document(ha: HaSettings, comment: str = "") -> str:
    """`ha:` as YAML the daemon's configuration takes back equal: fields at their defaults are left
    out, addresses are written as keepalived writes them (ADDRESS/PREFIX [dev IF])."""
    data = ha.model_dump(mode="json", exclude_defaults=True)
    for instance, dumped in zip(ha.instances, data["instances"], strict=True):
        for key in ("addresses", "excluded_addresses"):
            if key in dumped:
                dumped[key] = [str(a) for a in getattr(instance, key)]
    head = "".join(f"# {line}\n" for line in [*comment.splitlines(),
                                               "paste it into the daemon's configuration file, beside director:"])
    return head + yaml.safe_dump({"ha": data}, sort_keys=False, default_flow_style=False, allow_unicode=True)


def _write(path: str, text: str) -> None:
    """Replace a file at once (another name first, renamed), or refuse."""
    target = Path(path)
    temporary = target.with_name(f".{target.name}.tmp")
    try:
        temporary.write_text(text)
        os.replace(temporary, target)
    except OSError as e:
        with contextlib.suppress(OSError):
            temporary.unlink()
        _refuse([f"cannot write {path}: {e}"])


def _import(ops: Ops, kind: str, parse: Callable[[ModuleType], Imported], dry_run: bool, merge: bool) -> None:
    _apply(ops, kind, _parse(kind, parse), dry_run, merge)


def _parse(kind: str, parse: Callable[[ModuleType], Imported]) -> Imported:
    """The importer's result, what it leaves out said (stderr); its errors refuse the command."""
    name = f"xdplb.imports.{kind}"
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name != name:
            raise
        _refuse([f"this xdplb has no {kind} importer ({name})"])
    try:
        imported = parse(module)
    except ImportFormatError as e:
        _refuse(e.messages)
    for line in imported.skipped:
        err.print(Text(f"skipped: {line}", "yellow"))
    return imported


def _apply(ops: Ops, kind: str, imported: Imported, dry_run: bool, merge: bool) -> None:
    """The imported services through the API: the whole configuration, or added to it (merge)."""
    services = [s.model_dump(mode="json") for s in imported.services]
    version = None
    if merge:
        services, version = _merged(ops, services)
    if dry_run and not ops.json:
        out.out(config_yaml(services, None, f"{kind} import, {len(imported.services)} services"), end="")
    reply = ops.api.call("PUT", "/v1/config", params={"dry_run": dry_run}, body={"services": services},
                         if_match=version)
    report_change(ops, reply, f"{kind} import")


def _merged(ops: Ops, services: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int | None]:
    """The running services followed by the imported ones, and the version they were read at."""
    current = ops.api.get("/v1/config")
    running = [{k: v for k, v in s.items() if k != "id"} for s in current.data["services"]]
    have = {s["id"] for s in current.data["services"]}
    clash = [sid for sid in (Service.model_validate(s).id for s in services) if sid in have]
    if clash:
        _refuse([f"service {sid} exists already: import without --merge to replace every service" for sid in clash])
    return running + services, current.version


# ---- capture ----------------------------------------------------------------------------------------

class PcapCounter:
    """Counts the packets of a pcap stream as it passes, chunk by chunk."""

    def __init__(self) -> None:
        self.packets = 0
        self.bytes = 0
        self._head = bytearray()
        self._order: str | None = None  # the file's byte order, from its magic number
        self._skip = 0                  # bytes of the current packet still to come

    def feed(self, data: bytes) -> None:
        self.bytes += len(data)
        i = 0
        while i < len(data):
            if self._skip:
                n = min(self._skip, len(data) - i)
                self._skip, i = self._skip - n, i + n
                continue
            want = 24 if self._order is None else 16  # the file header, else a record header
            take = min(want - len(self._head), len(data) - i)
            self._head += data[i:i + take]
            i += take
            if len(self._head) < want:
                return
            if self._order is None:
                self._order = "<" if self._head[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
            else:
                self.packets += 1
                self._skip = struct.unpack_from(f"{self._order}I", self._head, 8)[0]  # incl_len
            self._head.clear()


def _client(text: str | None) -> tuple[str | None, int | None]:
    return split_backend(text) if text is not None else (None, None)


@operator(ops_app, "capture")
def capture(
    ops: Ops,
    write: Annotated[str, typer.Option("--write", "-w", help="the pcap file (- : standard output)")],
    service: OptionalService = None,
    client: Annotated[str | None, typer.Option(help="only this client: ADDRESS[:PORT]", show_default=False)] = None,
    protocol: Annotated[Protocol | None, typer.Option(case_sensitive=False, show_default=False)] = None,
    count: Annotated[int | None, typer.Option(help="stop after this many packets", show_default=False)] = None,
    seconds: Annotated[float | None, typer.Option(help="stop after this long", show_default=False)] = None,
    rate: Annotated[int | None, typer.Option(help="at most this many packets per second", show_default=False)] = None,
    snaplen: Annotated[int | None, typer.Option(help="bytes kept of each packet", show_default=False)] = None,
) -> None:
    """Packets the balancer handles, as a pcap file.

    xdplb capture tcp 10.100.0.100:80 --count 100 -w out.pcap"""
    if write == "-" and ops.json:
        raise typer.BadParameter("-o json and -w - would both write to standard output", param_hint="-w")
    sid = split_service(service)[0] if service else None
    address, port = _client(client)
    counter = PcapCounter()
    params = {"service": sid, "client": address, "client_port": port, "protocol": protocol and str(protocol),
              "count": count, "seconds": seconds, "rate": rate, "snaplen": snaplen}
    with ops.api.stream("/v1/capture", seconds + 30 if seconds else None, **params) as chunks:
        sink = typer.get_binary_stream("stdout") if write == "-" else open(write, "wb")  # noqa: SIM115
        try:
            for chunk in chunks:
                sink.write(chunk)
                counter.feed(chunk)
        finally:
            if write == "-":
                sink.flush()
            else:
                sink.close()
    where = "standard output" if write == "-" else write
    if ops.json:
        ops.print_json({"packets": counter.packets, "bytes": counter.bytes, "file": write})
    else:
        err.print(f"{counter.packets} packets written to {where}", markup=False)
