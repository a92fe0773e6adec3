#!/usr/bin/env bash
# A DR real server: the VIPs on loopback, never announced (arp_ignore=1, arp_announce=2), replies
# straight to the client through the router. Runs nginx answering with the host's name and a UDP
# echo service, both on the VIP.
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
"$(dirname "$0")/services.sh" "$NAME" "$STATE" "$VIP4" "$VIP6" "$(prefix4 front).$n" "$(prefix6 front):$n"
