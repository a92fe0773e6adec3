#!/usr/bin/env bash
# The router between the edge (clients) and the front segment (directors, DR/TUN real servers). It
# reaches the VIP on the front segment, where the active director answers ARP/ND for it.
. "$(dirname "$0")/common.sh"
edge=$EDGE front=$FRONT
ip link set lo up
addr "$edge" edge 1
addr "$front" front 1
no_offload "$edge"
no_offload "$front"
forwarding 1
sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
