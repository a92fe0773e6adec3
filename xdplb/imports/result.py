"""What an importer hands back, and the check every import ends with: the services must make a
service list the daemon's configuration would take (no two with one key or one endpoint).

An import is all or nothing: any error raises ImportFormatError with every problem found, each
naming its file and line, and the caller changes nothing.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from pydantic import TypeAdapter, ValidationError

from xdplb.config import ServiceList
from xdplb.model import Service
from xdplb.vrrp.config import HaSettings

log = logging.getLogger(__name__)

_SERVICE_LIST: TypeAdapter[list[Service]] = TypeAdapter(ServiceList)
_INDEX = re.compile(r"services\[(\d+)\]")
_WHERE = re.compile(r"(.*?) line (\d+)\b")  # how every message starts: "<file> line <n>"


@dataclass(frozen=True)
class Imported:
    services: list[Service]  # validated, in file order
    skipped: list[str]  # one line per thing not translated, naming its file and line, and why
    ha: HaSettings | None = None  # the VRRP instances (keepalived's vrrp_instance blocks), if any


class ImportFormatError(ValueError):
    """The input cannot be used at all; `messages` holds one line per problem, each naming its line."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("\n".join(messages))
        self.messages = messages


def explain(error: ValidationError) -> str:
    """A model's refusal in one line: the validators' own sentences, else 'field: message'."""
    parts = []
    for err in error.errors():
        if err["type"] == "value_error":
            parts.append(str(err["ctx"]["error"]))
        else:
            field = ".".join(str(p) for p in err["loc"])
            parts.append(f"{field}: {err['msg']}" if field else err["msg"])
    return "; ".join(dict.fromkeys(parts))


def finish(source: str, services: list[Service], wheres: list[str], skipped: list[str], errors: list[str],
           files: list[str] | None = None, ha: HaSettings | None = None) -> Imported:
    """The import's result, or ImportFormatError with the errors and every collision between services.
    `wheres[i]` names the line services[i] came from; `files` lists the files read, in order (default:
    `source` alone); `ha` is the VRRP instances read. Messages come in that order, by line, each said once."""
    order = {name: rank for rank, name in enumerate(files or [source])}
    errors = _in_order(errors + _collisions(services, wheres), order)
    if errors:
        raise ImportFormatError(errors)
    skipped = _in_order(skipped, order)
    log.info("%s: %d services and %d VRRP instances imported, %d items not translated", source, len(services),
             len(ha.instances) if ha else 0, len(skipped))
    return Imported(services=services, skipped=skipped, ha=ha)


def _in_order(messages: list[str], order: dict[str, int]) -> list[str]:
    def position(message: str) -> tuple[int, int]:
        m = _WHERE.match(message)
        return (order.get(m[1], len(order)), int(m[2])) if m else (len(order), 0)

    return sorted(dict.fromkeys(messages), key=position)


def _collisions(services: list[Service], wheres: list[str]) -> list[str]:
    """Every service that shares a key or an endpoint with an earlier one. The service list stops at
    its first collision: the later service is set aside and the rest validated again."""
    kept = list(range(len(services)))
    errors = []
    while True:
        try:
            _SERVICE_LIST.validate_python([services[i] for i in kept])
            return errors
        except ValidationError as e:
            err = e.errors()[0]
            if err["type"] != "service_collision":
                raise  # the services were validated one by one: nothing else can fail here
            item = err["ctx"]["item"]
            detail = _INDEX.sub(lambda m: wheres[kept[int(m[1])]], err["ctx"]["detail"])
            errors.append(f"{wheres[kept[item]]}: {detail}")
            del kept[item]
