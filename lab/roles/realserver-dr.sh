#!/usr/bin/env bash
# A DR and TUN real server: the VIPs on loopback, never announced (arp_ignore=1, arp_announce=2),
# replies straight to the client through the router. For TUN, xdplb's XDP decapsulator on the front
# interface strips IPIP/GUE addressed to this host (no ipip or fou module needed). Runs nginx answering
# with the host's name and a UDP echo service, both on the VIP.
. "$(dirname "$0")/common.sh"
front=$FRONT n=$N
ip link set lo up
sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
sysctl -qw "net.ipv4.conf.$front.arp_ignore=1" "net.ipv4.conf.$front.arp_announce=2"
addr "$front" front "$n"
no_offload "$front"
ip addr replace "$VIP4/32" dev lo
ip addr replace "$VIP6/128" dev lo nodad
route_via 10.100.0.1 fd00:100::1
# The decapsulator takes the addresses the host has now: after the VIPs. $XDPLB is the xdplb command
# (the namespace lab and the Vagrant provisioning pass it), else xdplb on PATH; without it, DR only.
xdplb=${XDPLB:-$(command -v xdplb || true)}
if [ -n "$xdplb" ]; then
	$xdplb decap attach "$front"
else
	echo "$NAME: warning: xdplb is not installed: no TUN decapsulator, DR only" >&2
fi
"$(dirname "$0")/services.sh" "$NAME" "$STATE" "$VIP4" "$VIP6" "$(prefix4 front).$n" "$(prefix6 front):$n"
