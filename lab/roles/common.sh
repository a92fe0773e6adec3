# Shared by the role scripts: their arguments, the lab's addressing (lab/topology.json,
# ../shared/DESIGN.md) and small helpers. Every role script takes the same arguments:
#   ROLE.sh --name NAME --number N --state DIR [--edge IF] [--front IF] [--back IF] [--vip]
# Segments: edge 10.99.0.0/24 fd00:99::/64, front 10.100.0.0/24 fd00:100::/64,
# back 10.200.0.0/24 fd00:200::/64; a host keeps its number on every segment it is on.
set -euo pipefail

NAME="" N="" STATE="" EDGE="" FRONT="" BACK="" HOLDS_VIP=0
while [ $# -gt 0 ]; do
	case $1 in
	--name) NAME=$2; shift 2 ;;
	--number) N=$2; shift 2 ;;
	--state) STATE=$2; shift 2 ;;
	--edge) EDGE=$2; shift 2 ;;
	--front) FRONT=$2; shift 2 ;;
	--back) BACK=$2; shift 2 ;;
	--vip) HOLDS_VIP=1; shift ;;
	*) echo "unknown argument $1" >&2; exit 2 ;;
	esac
done
[ -n "$NAME" ] && [ -n "$N" ] && [ -n "$STATE" ] || { echo "--name, --number and --state are required" >&2; exit 2; }

VIP4=10.100.0.100
VIP6=fd00:100::100
BACK_VIP4=10.200.0.1      # the NAT real servers' gateway, held by the active director
BACK_VIP6=fd00:200::1

prefix4() { case $1 in edge) echo 10.99.0 ;; front) echo 10.100.0 ;; back) echo 10.200.0 ;; esac; }
prefix6() { case $1 in edge) echo fd00:99: ;; front) echo fd00:100: ;; back) echo fd00:200: ;; esac; }

# addr IF SEGMENT HOSTNUM: the host's IPv4 and IPv6 addresses on one segment, interface up.
addr() {
	ip link set "$1" up
	ip addr replace "$(prefix4 "$2").$3/24" dev "$1"
	ip addr replace "$(prefix6 "$2"):$3/64" dev "$1" nodad
}

# route_via GW4 GW6: the way to the rest of the lab. A default route in namespaces; on VMs, whose
# default route is the management network (LAB_ROUTES=prefixes), only the lab's prefixes.
route_via() {
	if [ "${LAB_ROUTES:-default}" = prefixes ]; then
		ip route replace 10.0.0.0/8 via "$1"
		ip -6 route replace fd00::/8 via "$2"
	else
		ip route replace default via "$1"
		ip -6 route replace default via "$2"
	fi
}

# Native XDP drops checksum offload: senders compute full checksums themselves.
no_offload() { ethtool -K "$1" tx off >/dev/null 2>&1 || true; }

forwarding() {
	sysctl -qw net.ipv4.ip_forward="$1" net.ipv6.conf.all.forwarding="$1"
}
