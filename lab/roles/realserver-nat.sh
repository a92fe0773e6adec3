#!/usr/bin/env bash
# A NAT real server: only on the back segment, its default route through the directors' back VIP, so
# its replies can only return through the director. Runs nginx and the UDP echo on its own address.
. "$(dirname "$0")/common.sh"
back=$BACK n=$N
ip link set lo up
addr "$back" back "$n"
no_offload "$back"
route_via "$BACK_VIP4" "$BACK_VIP6"
"$(dirname "$0")/services.sh" "$NAME" "$STATE" "$(prefix4 back).$n" "$(prefix6 back):$n"
