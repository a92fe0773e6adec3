"""The role and the role script's arguments of one host, from lab/topology.json, with each segment's
interface found by the MAC the topology gives it (so the box's interface names do not matter).
usage: role_args.py TOPOLOGY HOST   -> prints: ROLE ARG...  (the same arguments xdplb.lab passes)"""

import json
import subprocess
import sys


def main() -> None:
    with open(sys.argv[1]) as f:
        top = json.load(f)
    host = next(h for h in top["hosts"] if h["name"] == sys.argv[2])
    links = {link.get("address"): link["ifname"] for link in json.loads(subprocess.check_output(["ip", "-j", "link"]))}
    args = ["--name", host["name"], "--number", str(host["number"]), "--state", f"/run/xdplb-lab/{host['name']}"]
    for seg in host["segments"]:
        mac = f"02:00:0a:{top['segments'][seg]['mac']}:00:{host['number']:02x}"
        if mac not in links:
            sys.exit(f"{host['name']}: no interface with MAC {mac} for segment {seg}")
        args += [f"--{seg}", links[mac]]
    if host.get("vip"):
        args.append("--vip")
    print(host["role"], " ".join(args))


if __name__ == "__main__":
    main()
