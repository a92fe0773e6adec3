#!/usr/bin/env bash
# The router between the edge (clients) and the front segment (directors, DR/TUN real servers). It
# reaches the VIP on the front segment, where the active director answers ARP/ND for it.
. "$(dirname "$0")/common.sh"
edge=$EDGE front=$FRONT
ip link set lo up
addr "$edge" edge "$N"
addr "$front" front "$N"
no_offload "$edge"
no_offload "$front"
forwarding 1
# replies of DR servers come from the VIP, which the router reaches through lb1: no reverse-path check
sysctl -qw net.ipv4.conf.all.rp_filter=0 "net.ipv4.conf.$edge.rp_filter=0" "net.ipv4.conf.$front.rp_filter=0"
