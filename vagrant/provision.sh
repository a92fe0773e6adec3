#!/usr/bin/env bash
# Provision one VM of the Vagrant lab with the same role script the namespace lab runs. Interfaces
# are found by their MAC (lab/topology.json fixes them), so the box's interface naming does not matter.
# The directors are an HA pair, as the namespace lab's HA mode: neither holds the VIPs statically;
# each runs `xdplb daemon` (systemd unit xdplb.service), whose VRRP speaker elects lb1 (priority 150).
# Idempotent: the Vagrantfile runs it at every boot, since the role scripts' addresses, routes and
# servers do not outlive a reboot.
# usage: provision.sh HOSTNAME   (the project is synced to /vagrant)
set -euo pipefail
host=$1
top=/vagrant/lab/topology.json
export DEBIAN_FRONTEND=noninteractive
packages=(python3 ethtool iproute2 nginx-light curl wrk)
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then   # none at a later boot: no apt-get
	apt-get update -q >/dev/null
	apt-get install -y -q "${missing[@]}" >/dev/null
	systemctl disable --now nginx >/dev/null 2>&1 || true   # the lab runs its own nginx per role
fi

out=$(python3 /vagrant/vagrant/role_args.py --ha "$top" "$host")
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

if [ "$role" = director ]; then
	front=$(sed -n 's/.*--front \([^ ]*\).*/\1/p' <<<"$args")
	back=$(sed -n 's/.*--back \([^ ]*\).*/\1/p' <<<"$args")
	[ -n "$front" ] && [ -n "$back" ] || { echo "$host: no front or back interface in: $args" >&2; exit 1; }
	tmp=$(mktemp)
	trap 'rm -f "$tmp"' EXIT
	{
		echo "# Written by vagrant/provision.sh (vagrant/director_config.py): VRRP adverts every 1 s."
		/vagrant/.venv/bin/python /vagrant/vagrant/director_config.py "$top" "$host" "$front" "$back"
	} >"$tmp"
	config_changed=0 unit_changed=0
	if ! cmp -s "$tmp" /etc/xdplb/xdplb.yaml; then
		install -D -m 0644 "$tmp" /etc/xdplb/xdplb.yaml
		config_changed=1
	fi
	if ! cmp -s /vagrant/vagrant/xdplb.service /etc/systemd/system/xdplb.service; then
		install -m 0644 /vagrant/vagrant/xdplb.service /etc/systemd/system/xdplb.service
		unit_changed=1
	fi
	[ "$unit_changed" = 0 ] || systemctl daemon-reload
	systemctl enable --quiet xdplb.service
	if ! systemctl is-active --quiet xdplb.service; then
		systemctl start xdplb.service
	elif [ "$unit_changed" = 1 ]; then
		systemctl restart xdplb.service     # the speaker runs on (KillMode=process): no failover
	elif [ "$config_changed" = 1 ]; then
		# SIGHUP applies the services; a changed ha section is refused (the journal says so): it takes
		# `xdplb stop -c /etc/xdplb/xdplb.yaml --detach`, then `systemctl restart xdplb`
		systemctl reload xdplb.service
	fi
	echo "$host: xdplb.service $(systemctl is-active xdplb.service) (xdplb ha status: its VRRP state)"
fi
