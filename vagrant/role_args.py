"""The role and the role script's arguments of one host, from lab/topology.json, with each segment's
interface found by the MAC the topology gives it (so the box's interface names do not matter).
usage: role_args.py [--ha] TOPOLOGY HOST   -> prints: ROLE ARG...  (the same arguments xdplb.lab passes)
--ha: no director holds the VIPs statically (no --vip): the directors' VRRP speakers move them, as in
the namespace lab's HA mode (Lab.up(ha=True))."""

import argparse
import json
import subprocess
import sys


def role_args(top: dict, name: str, links: dict[str, str], ha: bool = False) -> tuple[str, list[str]]:
    """The host's role and its role script's arguments; `links` maps each MAC to its interface name.
    SystemExit when the host is unknown or an interface is missing."""
    host = next((h for h in top["hosts"] if h["name"] == name), None)
    if host is None:
        sys.exit(f"no host {name} in the topology")
    args = ["--name", host["name"], "--number", str(host["number"]), "--state", f"/run/xdplb-lab/{host['name']}"]
    for seg in host["segments"]:
        mac = f"02:00:0a:{top['segments'][seg]['mac']}:00:{host['number']:02x}"
        if mac not in links:
            sys.exit(f"{host['name']}: no interface with MAC {mac} for segment {seg}")
        args += [f"--{seg}", links[mac]]
    if host.get("vip") and not ha:
        args.append("--vip")
    return host["role"], args


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ha", action="store_true", help="no static VIPs: VRRP moves them")
    parser.add_argument("topology")
    parser.add_argument("host")
    opts = parser.parse_args()
    with open(opts.topology) as f:
        top = json.load(f)
    links = {link.get("address"): link["ifname"] for link in json.loads(subprocess.check_output(["ip", "-j", "link"]))}
    role, args = role_args(top, opts.host, links, opts.ha)
    print(role, " ".join(args))


if __name__ == "__main__":
    main()
