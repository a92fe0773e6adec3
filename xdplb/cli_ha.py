"""High availability from the command line: `xdplb ha status|failover|priority|maintenance`, the
director's VRRP instances through its REST API (/v1/ha, api/routers/ha.py), which asks its speaker.

    xdplb ha status                          every instance: state, priority, master, last transitions
    xdplb ha failover hand-over [-i NAME]    hand the VIPs over to a peer (priority 1 until `auto`)
    xdplb ha failover take-over [-i NAME]    take them over now
    xdplb ha failover auto [-i NAME]         back to the configured priority and the election
    xdplb ha priority 200 [-i NAME]          set an instance's priority (until the speaker restarts)
    xdplb ha maintenance on|off [-i NAME]    never master while on

Without --instance a change applies to every instance (all of them checked before any acts). Like the
other operator commands: -o json prints the API's document, refusals are red lines and exit 1.
"""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.text import Text

from xdplb.cli_health import ago, aligned
from xdplb.cli_ops import Ops, needs_route, operator, ops_app, out
from xdplb.client import ApiError

Json = dict[str, Any]
ha_app = typer.Typer(help="High availability: this director's VRRP instances (status, failover, priority, "
                     "maintenance)", no_args_is_help=True)
ops_app.add_typer(ha_app, name="ha")

STATE_STYLE = {"master": "bold green", "backup": "", "fault": "bold red", "init": "yellow"}


class Action(StrEnum):
    HAND_OVER = "hand-over"
    TAKE_OVER = "take-over"
    AUTO = "auto"


class Switch(StrEnum):
    ON = "on"
    OFF = "off"


InstanceOpt = Annotated[str | None, typer.Option(
    "--instance", "-i", help="only this VRRP instance (default: every one)", show_default=False)]


def _call(ops: Ops, method: str, path: str, body: Json | None = None) -> Json:
    with needs_route("/v1/ha", "high availability"):
        return ops.api.call(method, path, body=body).data


def _only(status: Json, instance: str | None) -> list[Json]:
    found = [i for i in status["instances"] if instance is None or i["name"] == instance]
    if instance is not None and not found:
        names = ", ".join(i["name"] for i in status["instances"])
        raise ApiError(404, [f"no VRRP instance {instance!r} (instances: {names})"])
    return found


# ---- status ---------------------------------------------------------------------------------------

@operator(ha_app, "status")
def status(ops: Ops, instance: InstanceOpt = None,
           transitions: Annotated[int, typer.Option("--transitions", "-n", min=0, max=50,
                                                    help="the last transitions shown per instance")] = 5) -> None:
    """Every VRRP instance: its state, effective and configured priority, the master it hears, faults,
    maintenance, the last transitions.

    -o json: GET /v1/ha (only the instance given, with --instance)."""
    data = _call(ops, "GET", "/v1/ha")
    instances = _only(data, instance)
    if ops.json:
        ops.print_json({**data, "instances": instances})
        return
    print_instances(instances, transitions)


def print_instances(instances: list[Json], transitions: int = 0) -> None:
    """The instances' table, then the last `transitions` of each."""
    now = time.time()
    rows = instance_rows(instances, now)
    out.print(Text(rows[0], "bold"))
    for inst, line in zip(instances, rows[1:], strict=True):
        out.print(Text(line, STATE_STYLE.get(inst["state"], "")))
    for inst in instances if transitions else []:
        history = [(ago(t["at"], now), f"{t['from']} → {t['to']}", t["reason"])
                   for t in inst["transitions"][-transitions:]]
        if not history:
            continue
        out.print(Text(f"{inst['name']}: last transitions", "bold"))
        width = max(len(change) for _, change, _ in history)
        for when, change, reason in history:
            out.print(Text(f"  {when:>8}  {change.ljust(width)}  {reason}"))


def instance_rows(instances: list[Json], now: float) -> list[str]:
    """The instances as aligned columns, a title first; the notes (maintenance, a failover in force,
    faults, what lowers the priority) last, as long as they are."""
    table = [("INSTANCE", "INTERFACE", "VRID", "STATE", "PRIORITY", "CONFIGURED", "MASTER", "SINCE", "NOTES")]
    for i in instances:
        table.append((i["name"], f"{i['interface']} (IPv{i['family']})", str(i["vrid"]), i["state"].upper(),
                      str(i["effective_priority"]), str(i["priority"]), _master(i), ago(i["since"], now),
                      "; ".join(_notes(i)) or "-"))
    return aligned(table)


def _master(i: Json) -> str:
    if not i["master"]:
        return "-"
    us = " this director" if i["master"] == i["source"] else ""
    return f"{i['master']} ({i['master_priority']}{',' if us else ''}{us})"


def _notes(i: Json) -> list[str]:
    notes = ["maintenance"] if i["maintenance"] else []
    if i["override"]:
        notes.append(f"{i['override']} (until `xdplb ha failover auto`)")
    notes += [f"fault: {f}" for f in i["faults"]]
    notes += [f"degraded: {d}" for d in i["degraded"]]
    return notes


# ---- changes --------------------------------------------------------------------------------------

def _report(ops: Ops, data: Json, instance: str | None, message: str) -> None:
    """A change's answer: -o json prints the status, else one line and the instances it concerned."""
    if ops.json:
        ops.print_json(data)
        return
    out.print(Text(message, "green"))
    print_instances(_only(data, instance))


def _which(instance: str | None) -> str:
    return f"instance {instance}" if instance else "every instance"


@operator(ha_app, "failover")
def failover(ops: Ops,
             action: Annotated[Action, typer.Argument(
                 help="hand-over: give the VIPs to a peer (priority 1 and a priority 0 advert: it takes over at "
                      "once and is not preempted back); take-over: master now, one above the master's priority; "
                      "auto: back to the configured priority and the election", case_sensitive=False,
                 show_default=False)],
             instance: InstanceOpt = None) -> None:
    """Move the VIPs: hand them over, take them over, or go back to the election.

    xdplb ha failover hand-over; xdplb ha failover take-over -i vi_1; xdplb ha failover auto"""
    data = _call(ops, "POST", "/v1/ha/failover", {"action": str(action), "instance": instance})
    if action == Action.TAKE_OVER:  # a master already has nothing to take: it says so
        message = "; ".join(f"{i['name']} took over at priority {i['effective_priority']}, until `xdplb ha "
                            f"failover auto`" if i["override"] == "take-over" else f"{i['name']} was master already"
                            for i in _only(data, instance))
    elif action == Action.HAND_OVER:
        message = f"{_which(instance)} handed over: priority 1 until `xdplb ha failover auto`"
    else:
        message = f"{_which(instance)} back to its configured priority"
    _report(ops, data, instance, message)


@operator(ha_app, "priority")
def priority(ops: Ops,
             value: Annotated[int, typer.Argument(metavar="PRIORITY", min=1, max=255, show_default=False,
                                                  help="1 to 255 (255: the address owner, master at once)")],
             instance: InstanceOpt = None) -> None:
    """Set the VRRP priority (until the speaker restarts; the configuration keeps its own); a failover
    in force ends.

    xdplb ha priority 200 -i vi_1"""
    data = _call(ops, "PUT", "/v1/ha/priority", {"priority": value, "instance": instance})
    _report(ops, data, instance, f"priority of {_which(instance)} set to {value}")


@operator(ha_app, "maintenance")
def maintenance(ops: Ops,
                switch: Annotated[Switch, typer.Argument(
                    metavar="on|off", help="on: never master (a master hands over now); off: back in the election",
                    case_sensitive=False, show_default=False)],
                instance: InstanceOpt = None) -> None:
    """Maintenance: the instance never becomes master while on.

    xdplb ha maintenance on -i vi_1; xdplb ha maintenance off"""
    on = switch == Switch.ON
    data = _call(ops, "PUT", "/v1/ha/maintenance", {"on": on, "instance": instance})
    message = (f"{_which(instance)} in maintenance: it will not be master" if on
               else f"{_which(instance)} out of maintenance: back in the election")
    _report(ops, data, instance, message)
