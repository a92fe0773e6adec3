#!/usr/bin/env bash
# The client: on the edge segment, everything else through the router.
. "$(dirname "$0")/common.sh"
edge=$EDGE
ip link set lo up
addr "$edge" edge 10
no_offload "$edge"
ip route replace default via 10.99.0.1
ip -6 route replace default via fd00:99::1
