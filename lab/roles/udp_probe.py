"""A failover probe: one UDP datagram every INTERVAL seconds to ADDR:PORT (the lab's UDP echo through
the VIP), each numbered, until SIGTERM or SIGINT; then one JSON line: how many were sent and answered,
and the longest time between two answered datagrams' sends (the interruption a client saw). A stalled
probe sends the next one as soon as it can, never a burst to catch up, so that gap is real.
usage: udp_probe.py ADDR PORT INTERVAL"""

import contextlib
import itertools
import json
import signal
import socket
import struct
import sys
import time


def main() -> None:
    addr, port, interval = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.connect((addr, port))
    sock.setblocking(False)
    running = [True]
    signal.signal(signal.SIGTERM, lambda *_: running.__setitem__(0, False))
    signal.signal(signal.SIGINT, lambda *_: running.__setitem__(0, False))
    sent_at: list[float] = []
    answered: set[int] = set()
    due = time.monotonic()
    while running[0]:
        now = time.monotonic()
        if now >= due:
            with contextlib.suppress(OSError):  # no route for a moment: counted as lost
                sock.send(struct.pack("!Q", len(sent_at)))
            sent_at.append(now)
            due = max(due + interval, now)  # a stalled probe does not catch up in a burst
        try:
            while True:
                data = sock.recv(2048)
                answered.add(struct.unpack("!Q", data.split(b":", 1)[1][:8])[0])
        except (BlockingIOError, ConnectionRefusedError, IndexError, struct.error):
            pass
        time.sleep(max(0.0, min(interval / 4, due - time.monotonic())))
    time.sleep(0.2)  # the last answers
    try:
        while True:
            answered.add(struct.unpack("!Q", sock.recv(2048).split(b":", 1)[1][:8])[0])
    except (BlockingIOError, ConnectionRefusedError, IndexError, struct.error):
        pass
    got = sorted(answered)
    gaps = [sent_at[b] - sent_at[a] for a, b in itertools.pairwise(got)]
    print(json.dumps({"sent": len(sent_at), "answered": len(got), "longest_gap": max(gaps, default=0.0),
                      "first": got[0] if got else None, "last": got[-1] if got else None}))


if __name__ == "__main__":
    main()
