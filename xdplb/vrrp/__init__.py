"""VRRPv3 (RFC 5798, revised by RFC 9568): the advertisement codec now, the speaker later."""
