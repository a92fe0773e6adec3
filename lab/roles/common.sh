# Shared by the role scripts: the lab's addressing (../shared/DESIGN.md) and small helpers.
# Segments: edge 10.99.0.0/24 fd00:99::/64, front 10.100.0.0/24 fd00:100::/64,
# back 10.200.0.0/24 fd00:200::/64; a host keeps its number on every segment it is on.
set -euo pipefail

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

# Native XDP drops checksum offload: senders compute full checksums themselves.
no_offload() { ethtool -K "$1" tx off >/dev/null 2>&1 || true; }

forwarding() {
	sysctl -qw net.ipv4.ip_forward="$1" net.ipv6.conf.all.forwarding="$1"
}
