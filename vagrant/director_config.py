"""The daemon's configuration file of one director of the Vagrant lab (/etc/xdplb/xdplb.yaml), built
with xdplb's own models so it is valid by construction, printed as `xdplb daemon` reads it.
usage: director_config.py [--advert-interval SECONDS] TOPOLOGY HOST FRONT_IF BACK_IF
Runs with the xdplb venv (/vagrant/.venv/bin/python, after scripts/setup.sh).

lb1 and lb2 are an HA pair as in the namespace lab's HA mode (tests/test_e2e_ha.py): one VRRP
instance, VI_1, VRID 51 on the front interface, the priority from the topology (lb1 150: master),
the IPv4 VIP advertised, the IPv6 VIP and the NAT servers' gateway addresses moved with it
(xdplb.labclients.ha_settings, the namespace lab's own). Both directors balance the same services
over the DR real servers (rs1-rs3) with mh, so both place a flow on the same server and established
connections survive a failover (there is no connection sync).

Adverts every 1 s, keepalived's default, rather than the namespace lab's 100 ms: a VM's vCPUs are
scheduled by a host running ten of them (and a director compiles its balancer with BCC at start),
so a master can stall for a few hundred ms, and with 100 ms adverts (a master-down interval of about
0.36 s) such a stall would be a spurious failover. At 1 s lb2 takes over about 3.6 s after lb1 goes
silent; --advert-interval 0.1 tries the namespace lab's pace.
"""

from __future__ import annotations

import argparse
import json
import sys

from xdplb.config import Config, Director, dump_config
from xdplb.lab import LAB_SIZES
from xdplb.labclients import DR_WEIGHTS, ha_settings
from xdplb.model import Backend, Service

ADVERT_INTERVAL = 1.0
# (protocol, port) of each service, on the IPv4 and the IPv6 VIP: HTTP, and the real servers' UDP echo
SERVICES = (("tcp", 80), ("udp", 9000))


def address(top: dict, host: dict, segment: str, version: int) -> str:
    seg = top["segments"][segment]
    return f"{seg['v4']}.{host['number']}" if version == 4 else f"{seg['v6']}:{host['number']}"


def director_config(top: dict, name: str, front_if: str, back_if: str,
                    advert_interval: float = ADVERT_INTERVAL) -> Config:
    host = next((h for h in top["hosts"] if h["name"] == name), None)
    if host is None or host["role"] != "director":
        raise ValueError(f"{name} is not a director of the topology")
    if "vrrp_priority" not in host:
        raise ValueError(f"{name} has no vrrp_priority in the topology")
    real_servers = [h for h in top["hosts"] if h["role"] == "realserver-dr"]
    vips = {4: top["vip4"], 6: top["vip6"]}
    services = [
        Service(protocol=proto, vip=vips[version], port=port, scheduler="mh",
                backends=tuple(Backend(address=address(top, rs, "front", version), weight=DR_WEIGHTS.get(rs["name"], 1))
                               for rs in real_servers))
        for proto, port in SERVICES for version in (4, 6)]
    ha = ha_settings(host["vrrp_priority"], advert_interval, front=front_if, back=back_if)
    # The lab's small sizes: quick to compile and load, plenty for the lab (and kind to a 2 GB VM).
    director = Director(name=name, interfaces=[front_if], xdp_mode="auto", sizes=LAB_SIZES)
    return Config(director=director, services=services, ha=ha)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--advert-interval", type=float, default=ADVERT_INTERVAL, help="seconds (default 1.0)")
    parser.add_argument("topology")
    parser.add_argument("host")
    parser.add_argument("front_if")
    parser.add_argument("back_if")
    opts = parser.parse_args()
    with open(opts.topology) as f:
        top = json.load(f)
    try:
        config = director_config(top, opts.host, opts.front_if, opts.back_if, opts.advert_interval)
    except ValueError as e:  # pydantic's ValidationError is one
        sys.exit(f"director_config.py: {e}")
    sys.stdout.write(dump_config(config))


if __name__ == "__main__":
    main()
