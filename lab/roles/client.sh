#!/usr/bin/env bash
# The client: on the edge segment, everything else through the router.
. "$(dirname "$0")/common.sh"
edge=$EDGE
ip link set lo up
addr "$edge" edge "$N"
no_offload "$edge"
route_via 10.99.0.1 fd00:99::1
# A load generator: many short connections to one VIP would otherwise run out of source ports while
# the closed ones sit in TIME_WAIT (about 28k per destination per minute).
sysctl -qw net.ipv4.tcp_tw_reuse=1 net.ipv4.ip_local_port_range="1024 65535"
