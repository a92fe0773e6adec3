"""The API's JSON as ipvsadm prints it, column for column: `ipvsadm -Ln`, `-Ln --stats`, `-Ln --rate`
and `-Lnc`, so eyes and scripts used to LVS read xdplb the same way. Pure functions: JSON in, text out.

Inputs are the API's documents: services from GET /v1/services (the desired state: scheduler,
flags, persistence, weights), their counters from GET /v1/stats (ActiveConn/InActConn, --stats,
--rate), connections from GET /v1/connections with the timeouts of GET /v1/config, and what the
health checks found from GET /v1/health. ipvsadm has no word for health, so a backend its check
found down keeps its columns and gets ` DOWN (reason)` after them (keepalived would have taken it
out of ipvsadm's list, or to weight 0); a misc check's dynamic weight stands in the Weight column,
as keepalived sets it in IPVS. A line of a backend that is up reads exactly as ipvsadm's.
"""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from typing import Any

from xdplb.rates import FIELDS as _STATS
from xdplb.rates import RATE_NAMES

Json = dict[str, Any]

FORWARD = {"dr": "Route", "tun": "Tunnel", "nat": "Masq"}  # ipvsadm's names of the methods
_PROTO = {"tcp": 6, "udp": 17}
_RATES = tuple(RATE_NAMES[f] for f in _STATS)  # cps, inpps, outpps, inbps, outbps
_ZERO_STATS = dict.fromkeys(_STATS, 0)
_ZERO_RATES = dict.fromkeys(_RATES, 0)
_FIRST = "Prot LocalAddress:Port"
_REMOTE = "  -> RemoteAddress:Port"


class View(StrEnum):
    PLAIN = "plain"   # ipvsadm -Ln
    STATS = "stats"   # ipvsadm -Ln --stats
    RATE = "rate"     # ipvsadm -Ln --rate


def version_line(version: str, size: int | None = None) -> str:
    """ipvsadm's first line; `size` is the connection table's (unknown: left out)."""
    return f"IP Virtual Server version {version}" + (f" (size={size})" if size is not None else "")


def largenum(n: float, exact: bool = False) -> str:
    """A counter in ipvsadm's 9 columns: K, M, G, T past 10^8, 10^9, 10^11, 10^14 (--exact: never)."""
    i = int(n)
    if exact:
        digits = len(str(i))
        return f"{i:>{9 if digits <= 8 else digits + 1}}"
    for limit, div, unit in ((10**8, 1, ""), (10**9, 10**3, "K"), (10**11, 10**6, "M"), (10**14, 10**9, "G")):
        if i < limit:
            return f"{i:9}" if not unit else f"{i // div:8}{unit}"
    return f"{i // 10**12:8}T"


def hostport(address: str, port: int) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"{host}:{port}"


def service_name(svc: Json) -> str:
    """`TCP  10.100.0.100:80`, `UDP  [2001:db8::1]:53`, `FWM  7` (`FWM  7 IPv6`): two spaces, as ipvsadm."""
    v6 = ":" in str(svc["vip"])
    if svc.get("fwmark") is not None:
        return f"FWM  {svc['fwmark']}" + (" IPv6" if v6 else "")
    name = f"{svc['protocol'].upper()}  {hostport(svc['vip'], svc['port'])}"
    return name if v6 else name[:33]


def listing(services: list[Json], stats: list[Json], view: View = View.PLAIN, exact: bool = False,
            header: str | None = None, health: list[Json] | None = None) -> str:
    """The table of `ipvsadm -Ln` (or --stats, --rate). `header`: the version line, which ipvsadm
    prints when it lists every service and leaves out for one. Services and backends sorted as ipvsadm
    sorts them; a service the data plane has no counters for shows zeros. `health`: GET /v1/health's
    rows, which mark a backend down (see the module's text)."""
    by_id = {row["id"]: row for row in stats}
    checked = {(row["service"], row["backend"]): row for row in health or []}
    lines = [header] if header else []
    lines += _title(view)
    for svc in sorted(services, key=_service_order):
        row = by_id.get(svc["id"], {})
        lines.append(_service_line(svc, row, view, exact))
        counted = {b["address"]: b for b in row.get("backends", [])}
        for be in sorted(svc["backends"], key=_backend_order):
            found = checked.get((svc["id"], be["address"]))
            now = counted.get(be["address"], {})
            be = {**be, "weight": now["weight"]} if "weight" in now else _dynamic(be, found)  # as the tables have it
            line = _backend_line(svc, be, now, view, exact)
            lines.append(line if found is None or found["up"] else f"{line} DOWN ({found['reason']})")
        desired = {be["address"] for be in svc["backends"]}
        for extra in (b for b in row.get("backends", []) if b["address"] not in desired):
            lines.append(_backend_line(svc, extra, extra, view, exact) + " SORRY SERVER")
    return "\n".join(lines) + "\n"


def _dynamic(be: Json, found: Json | None) -> Json:
    """The backend with the weight a misc dynamic check gives it, if any."""
    if found is None or found.get("weight") is None:
        return be
    return {**be, "weight": found["weight"]}


def _title(view: View) -> list[str]:
    if view == View.PLAIN:
        return [f"{_FIRST} Scheduler Flags", f"{_REMOTE}           Forward Weight ActiveConn InActConn"]
    names = ("Conns", "InPkts", "OutPkts", "InBytes", "OutBytes") if view == View.STATS else \
        ("CPS", "InPPS", "OutPPS", "InBPS", "OutBPS")
    return [f"{_FIRST:<33}" + "".join(f" {n:>8}" for n in names), _REMOTE]


def _service_order(svc: Json) -> tuple:
    """ipvsadm's order: firewall marks after addresses, then family, protocol, address, port."""
    vip = ipaddress.ip_address(svc["vip"])
    return svc.get("fwmark") or 0, vip.version, _PROTO.get(svc["protocol"], 0), int(vip), svc["port"]


def _backend_order(be: Json) -> tuple:
    addr = ipaddress.ip_address(be["address"])
    return addr.version, int(addr), be.get("port") or 0


def _service_line(svc: Json, row: Json, view: View, exact: bool) -> str:
    name = service_name(svc)
    if view == View.STATS:
        return f"{name:<33}" + _numbers(row.get("stats") or _ZERO_STATS, _STATS, exact)
    if view == View.RATE:
        return f"{name:<33}" + _numbers(row.get("rates") or _ZERO_RATES, _RATES, exact)
    text = f"{name} {svc['scheduler']}"
    if svc.get("sched_flags"):
        text += f" ({','.join(sorted(svc['sched_flags']))})"
    persistence = svc.get("persistence")
    if persistence:
        text += f" persistent {persistence['timeout']}" + _mask(svc["vip"], persistence.get("netmask"))
    return text


def _mask(vip: str, netmask: int | None) -> str:
    """ipvsadm's ` mask 255.255.255.0` (IPv4) or ` mask 64` (IPv6), absent for the whole address."""
    if netmask is None:
        return ""
    if ":" in vip:
        return f" mask {netmask}" if netmask != 128 else ""
    return f" mask {ipaddress.IPv4Network(f'0.0.0.0/{netmask}').netmask}" if netmask != 32 else ""


def _backend_line(svc: Json, be: Json, counted: Json, view: View, exact: bool) -> str:
    port = be["port"] if be.get("port") is not None else svc["port"]
    name = hostport(be["address"], port)
    name = name if ":" in be["address"] else name[:28]
    if view == View.STATS:
        return f"  -> {name:<28}" + _numbers(counted.get("stats") or _ZERO_STATS, _STATS, exact)
    if view == View.RATE:
        rates = counted.get("rates") or _ZERO_RATES  # ipvsadm prints a backend's first three rates unscaled
        return (f"  -> {name:<28}" + "".join(f" {round(rates[k]):8}" for k in _RATES[:3])
                + _numbers(rates, _RATES[3:], exact))
    fwd = FORWARD.get(svc["method"], svc["method"])
    return (f"  -> {name:<28} {fwd:<7} {be['weight']:<6} {counted.get('active', 0):<10} "
            f"{counted.get('inactive', 0):<10}")


def _numbers(values: Json, keys: tuple[str, ...], exact: bool) -> str:
    return "".join(largenum(round(values[k]), exact) for k in keys)


# ---- ipvsadm -Lnc ------------------------------------------------------------------------------

_CONN_TITLE = f"pro expire {'state':<11} {'source':<18} {'virtual':<18} destination"


def conn_state(row: Json) -> str:
    """IPVS's word for a connection's state: a half-open TCP connection is SYN_RECV, a UDP flow UDP."""
    if row["protocol"].upper() == "UDP":
        return "UDP"
    return {"NEW": "SYN_RECV"}.get(row["state"], row["state"])


def _timeout(row: Json, timeouts: Json) -> float:
    state = conn_state(row)
    name = {"UDP": "udp", "SYN_RECV": "syn", "ESTABLISHED": "tcp"}.get(state, "tcpfin")
    return timeouts.get(name, 0)


def expire(row: Json, timeouts: Json) -> str:
    """Time left before the entry expires, as ipvsadm's mm:ss."""
    left = max(0, int(_timeout(row, timeouts) - row["idle_s"]))
    return f"{left // 60:02d}:{left % 60:02d}"


def connections(rows: list[Json], timeouts: Json) -> str:
    """The table of `ipvsadm -Lnc`: pro expire state source virtual destination."""
    lines = ["IPVS connection entries", _CONN_TITLE]
    for row in rows:
        source = hostport(row["client"], row["client_port"])
        virtual = hostport(row["virtual"], row["virtual_port"])
        dest = hostport(row["backend"], row["virtual_port"]) if row.get("backend") else "-"
        lines.append(f"{row['protocol'].upper():<3} {expire(row, timeouts):<6} {conn_state(row):<11} "
                     f"{source:<18} {virtual:<18} {dest}")
    return "\n".join(lines) + "\n"
