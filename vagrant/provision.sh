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

out=$(python3 /vagrant/vagrant/role_args.py "$top" "$host")
read -r role args <<<"$out"
export LAB_ROUTES=prefixes          # keep the management network's default route
if [ "$role" = director ] || [ "$role" = realserver-dr ]; then
	# BCC, kernel headers and the xdplb venv: the balancer on a director, the TUN decapsulator on a
	# DR/TUN real server (its role script attaches it with $XDPLB)
	XDPLB_NO_VAGRANT=1 bash /vagrant/scripts/setup.sh
	export XDPLB=/vagrant/.venv/bin/xdplb
fi
# shellcheck disable=SC2086
bash "/vagrant/lab/roles/$role.sh" $args
