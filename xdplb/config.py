"""The daemon's configuration file (YAML): which director this is, where it attaches and keeps its
state, the data plane's sizes, and the services it starts with.

A bad file is refused whole, with one message per problem naming the file's line and the field
(`config.yaml line 12: services[0].backends[1].weight: Input should be less than or equal to 65535`):
the YAML is composed into nodes, which keep their positions, and each pydantic error's `loc` is
walked down those nodes to the nearest one the file has.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from xdplb.config_types import NAME, IfName
from xdplb.model import Service, Timeouts
from xdplb.sizes import Sizes
from xdplb.vrrp.config import HaSettings

PIN_ROOT = Path("/sys/fs/bpf/xdplb")
STATE_ROOT = Path("/var/lib/xdplb")

_Loader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MERGE_TAG = "tag:yaml.org,2002:merge"

Loc = tuple[str | int, ...]
_M = TypeVar("_M", bound=BaseModel)
Size = Annotated[int, Field(ge=1)]


class ConfigError(ValueError):
    """A configuration file that cannot be used; `messages` holds one line per problem."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("\n".join(messages))
        self.messages = messages


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _no_collisions(services: list[Service]) -> list[Service]:
    """Two services may not share a key, nor listen on the same (protocol, VIP, port). The error's
    context carries the later service's index, so the file's message points at its line."""
    keys: dict[tuple, int] = {}
    endpoints: dict[tuple, int] = {}
    for i, svc in enumerate(services):
        if svc.key in keys:
            first = keys[svc.key]
            raise PydanticCustomError("service_collision", "{detail}", {
                "item": i, "detail": f"{svc} has the same key as services[{first}] ({services[first]})"})
        keys[svc.key] = i
        for ep in svc.all_endpoints:
            if ep in endpoints:
                first = endpoints[ep]
                proto, vip, port = ep
                host = f"[{vip}]" if vip.version == 6 else str(vip)
                raise PydanticCustomError("service_collision", "{detail}", {
                    "item": i, "detail": f"{svc} listens on {proto}/{host}:{port}, "
                                         f"already an endpoint of services[{first}] ({services[first]})"})
            endpoints[ep] = i
    return services


ServiceList = Annotated[list[Service], AfterValidator(_no_collisions)]


class XdpMode(StrEnum):
    AUTO = "auto"  # native, else generic
    NATIVE = "native"
    GENERIC = "generic"


class Director(_Strict):
    """This director: its name keeps its pinned maps and its state apart from another one's on the host."""

    name: str
    interfaces: list[IfName] = Field(min_length=1, description="where the balancer attaches")
    xdp_mode: XdpMode = XdpMode.AUTO
    pin_dir: Path = Field(description="bpffs directory of the pinned maps and programs; default "
                          f"{PIN_ROOT}/<name>")
    state_dir: Path = Field(description=f"the persisted desired state; default {STATE_ROOT}/<name>")
    sizes: Sizes = Field(Sizes(), description="the data plane's compile-time sizes (xdplb.sizes.Sizes)")

    @model_validator(mode="before")
    @classmethod
    def _default_dirs(cls, data: Any) -> Any:
        if isinstance(data, dict):  # a bad or missing name is refused on its own: no default is used then
            name = str(data.get("name", ""))
            data = {"pin_dir": PIN_ROOT / name, "state_dir": STATE_ROOT / name, **data}
        return data

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME.fullmatch(v):
            raise ValueError(f"director name {v!r}: letters, digits, '_', '-' (up to 64; bpffs refuses dots), "
                             "it names directories")
        return v

    @field_validator("interfaces")
    @classmethod
    def _interfaces(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"an interface is listed twice: {v}")
        return v

    @field_validator("pin_dir", "state_dir")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        if not v.is_absolute():
            raise ValueError(f"{v} is not an absolute path")
        return v


API_PORT = 9780


class ApiSettings(_Strict):
    """The REST API of the daemon (api/). On loopback by default; every change needs the bearer token
    kept in `token_file` (created, mode 0600, when missing; refused when others may read it)."""

    enabled: bool = True
    listen: str = Field(f"127.0.0.1:{API_PORT}", description="HOST:PORT (an IP address; [v6]:port), or "
                        "unix:/path for a Unix socket")
    token_file: Path | None = Field(None, description="default <state_dir>/api.token")
    auth_reads: bool = Field(False, description="reads need the token too")

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        if v.startswith("unix:"):
            if not Path(v[5:]).is_absolute():
                raise ValueError(f"{v}: a Unix socket needs an absolute path")
            return v
        host, sep, port = v.rpartition(":")
        if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"{v!r}: give HOST:PORT with a port from 1 to 65535, or unix:/path")
        try:
            ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            raise ValueError(f"{v!r}: {host!r} is not an IP address") from None
        return v

    @field_validator("token_file")
    @classmethod
    def _absolute(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_absolute():
            raise ValueError(f"{v} is not an absolute path")
        return v

    def token_path(self, state_dir: Path) -> Path:
        return self.token_file or state_dir / "api.token"


class Config(_Strict):
    director: Director
    api: ApiSettings = ApiSettings()
    services: ServiceList = []
    timeouts: Timeouts = Timeouts()
    checks: dict = Field({}, description="unused (checks are set per service and backend); read so older files load")
    ha: HaSettings | None = Field(None, description="VRRP instances (the speaker); none: no high availability")


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a configuration file; ConfigError names each problem's line and field."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError([f"{path}: {e}"]) from e
    return parse_config(text, str(path))


def parse_config(text: str, source: str = "<config>") -> Config:
    return _parse(Config, text, source)


class ServicesDocument(_Strict):
    """A file of services (`xdplb apply -f`): `services:` and optionally `timeouts:`. A whole daemon
    configuration file is one too: its other sections are read and left aside."""

    services: ServiceList = []
    timeouts: Timeouts | None = None
    director: Any = None
    api: Any = None
    checks: Any = None
    ha: Any = None


def parse_services(text: str, source: str = "<services>") -> ServicesDocument:
    """Services and timeouts from YAML, with ConfigError naming each problem's line and field."""
    return _parse(ServicesDocument, text, source)


def _parse(model: type[_M], text: str, source: str) -> _M:
    data, lines, problems = _compose(text)
    if problems:
        raise ConfigError([f"{source} line {line}: {msg}" for line, msg in problems])
    data = {} if data is None else data  # an empty file: say what it misses
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError([f"{source} line {line}: {msg}" for line, msg in _explain(e, data, lines)]) from None


def dump_config(config: Config) -> str:
    """The configuration as YAML that load_config reads back equal; defaults are left out."""
    data = config.model_dump(mode="json", exclude_defaults=True)
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)


def _compose(text: str) -> tuple[Any, dict[Loc, int], list[tuple[int, str]]]:
    """The document, the line (1-based) of every mapping key and sequence item by its path, and
    the problems found (YAML syntax, a key given twice: YAML itself would keep the last silently)."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        lines: dict[Loc, int] = {}
        problems: list[tuple[int, str]] = []
        if node is not None:
            _positions(loader, node, (), lines, problems, set())
        data = loader.construct_document(node) if node is not None else None
        return data, lines, problems
    except yaml.MarkedYAMLError as e:
        return None, {}, [_syntax_error(e, text)]
    except yaml.YAMLError as e:
        return None, {}, [(1, f"YAML: {e}")]
    finally:
        loader.dispose()


def _syntax_error(e: yaml.MarkedYAMLError, text: str) -> tuple[int, str]:
    last = max(1, len(text.splitlines()))
    mark = e.problem_mark or e.context_mark
    line = min(mark.line + 1, last) if mark else 1  # an unclosed bracket is found at the end of the file
    detail = e.problem or e.context or "syntax error"
    if e.context and e.problem:
        where = f" at line {e.context_mark.line + 1}" if e.context_mark else ""
        detail += f" ({e.context}{where})"
    return line, f"YAML: {detail}"


def _positions(loader: Any, node: yaml.Node, path: Loc, lines: dict[Loc, int],
               problems: list[tuple[int, str]], seen: set[int]) -> None:
    if id(node) in seen:  # an alias: its anchor's positions are already recorded
        return
    seen.add(id(node))
    if isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*path, i)] = item.start_mark.line + 1
            _positions(loader, item, (*path, i), lines, problems, seen)
    elif isinstance(node, yaml.MappingNode):
        for key_node, value in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
                continue  # merged and complex keys: their errors point at the mapping
            key = loader.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if (*path, key) in lines:
                problems.append((line, f"{_dotted((*path, key))}: given twice (first at line {lines[(*path, key)]})"))
                continue
            lines[(*path, key)] = line
            _positions(loader, value, (*path, key), lines, problems, seen)


def _explain(error: ValidationError, data: Any, lines: dict[Loc, int]) -> list[tuple[int, str]]:
    """One (line, 'field: message') per field, in the file's order."""
    grouped: dict[Loc, list[dict]] = {}
    for err in error.errors():
        loc = err["loc"]
        if err["type"] == "service_collision":
            loc = (*loc, err["ctx"]["item"])
        grouped.setdefault(_in_data(loc, data), []).append(err)
    out = []
    for loc, errs in grouped.items():
        line = next((lines[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in lines), 1)
        field = f"{_dotted(loc)}: " if loc else ""
        out.append((line, f"{field}{_message(errs)}"))
    return sorted(out, key=lambda lm: lm[0])


def _in_data(loc: Loc, data: Any) -> Loc:
    """The part of a pydantic loc the user can name: the keys and indexes found in the data, plus
    a missing field's name; union members' tags (`vip.lax-or-strict[...]`) are dropped."""
    out: list[str | int] = []
    for part in loc:
        if isinstance(data, dict) and part in data:
            out.append(part)
            data = data[part]
        elif isinstance(data, dict):
            if isinstance(part, str) and part.isidentifier():
                out.append(part)  # a missing field
            break
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            out.append(part)
            data = data[part]
        else:
            break
    return tuple(out)


def describe(errors: Iterable[dict], root: str = "") -> list[str]:
    """Validation errors (pydantic's `errors()`) as one line per field (`services[0].backends[1].weight:
    Input should be ...`), for places without a file's lines (the API, the importers' callers)."""
    grouped: dict[Loc, list[dict]] = {}
    for err in errors:
        loc = tuple(part for part in err["loc"] if not isinstance(part, str) or "[" not in part)  # union tags
        if err["type"] == "service_collision":
            loc = (*loc, err["ctx"]["item"])
        grouped.setdefault((root, *loc) if root else loc, []).append(err)
    return [f"{_dotted(loc)}: {_message(errs)}" if loc else _message(errs) for loc, errs in grouped.items()]


def _message(errs: Iterable[dict]) -> str:
    errs = list(errs)
    if {e["type"] for e in errs} == {"ip_v4_address", "ip_v6_address"}:
        return f"{errs[0]['input']!r} is not an IPv4 or IPv6 address"
    msgs = [str(e["ctx"]["error"]) if e["type"] == "value_error" else e["msg"] for e in errs]
    return "; ".join(dict.fromkeys(msgs))


def _dotted(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text
