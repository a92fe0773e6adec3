#!/usr/bin/env bash
# A director: front and back segments, forwarding on, default route via the router. With --vip it
# holds the VIPs on the front interface (so it answers ARP/ND for them) and the NAT servers' gateway
# VIPs on the back one; the balancer itself is attached by xdplb.
. "$(dirname "$0")/common.sh"
front=$FRONT back=$BACK n=$N
ip link set lo up
addr "$front" front "$n"
addr "$back" back "$n"
no_offload "$front"
no_offload "$back"
forwarding 1
route_via 10.100.0.1 fd00:100::1
if [ "$HOLDS_VIP" = 1 ]; then
	ip addr replace "$VIP4/32" dev "$front"
	ip addr replace "$VIP6/128" dev "$front" nodad
	ip addr replace "$BACK_VIP4/24" dev "$back"
	ip addr replace "$BACK_VIP6/64" dev "$back" nodad
fi
