#!/usr/bin/env bash
# The client: on the edge segment, everything else through the router.
. "$(dirname "$0")/common.sh"
edge=$EDGE
ip link set lo up
addr "$edge" edge "$N"
no_offload "$edge"
route_via 10.99.0.1 fd00:99::1
