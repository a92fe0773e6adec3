#!/usr/bin/env bash
# Provision one VM of the Vagrant lab with the same role script the namespace lab runs. Interfaces
# are found by their MAC (lab/topology.json fixes them), so the box's interface naming does not matter.
# usage: provision.sh HOSTNAME   (the project is synced to /vagrant)
set -euo pipefail
host=$1
top=/vagrant/lab/topology.json
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q python3 ethtool iproute2 nginx-light curl wrk >/dev/null
systemctl disable --now nginx >/dev/null 2>&1 || true   # the lab runs its own nginx per role

read -r role args < <(python3 - "$top" "$host" <<'PY'
import json, subprocess, sys
top = json.load(open(sys.argv[1]))
h = next(h for h in top["hosts"] if h["name"] == sys.argv[2])
links = json.loads(subprocess.check_output(["ip", "-j", "link"]))
args = ["--name", h["name"], "--number", str(h["number"]), "--state", f"/run/xdplb-lab/{h['name']}"]
for seg in h["segments"]:
    mac = f"02:00:0a:{top['segments'][seg]['mac']}:00:{h['number']:02x}"
    ifname = next(link["ifname"] for link in links if link.get("address") == mac)
    args += [f"--{seg}", ifname]
if h.get("vip"):
    args.append("--vip")
print(h["role"], " ".join(args))
PY
)
if [ "$role" = director ]; then
	bash /vagrant/scripts/setup.sh   # BCC, kernel headers and the xdplb venv
fi
# shellcheck disable=SC2086
bash "/vagrant/lab/roles/$role.sh" $args
