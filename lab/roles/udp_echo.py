"""UDP echo for the lab's real servers: answers "NAME:data" from the address the datagram was sent
to (one socket per address, so a DR server replies from the VIP).
usage: udp_echo.py NAME PORT ADDR..."""

import selectors
import socket
import sys


def main() -> None:
    name, port, addrs = sys.argv[1].encode(), int(sys.argv[2]), sys.argv[3:]
    sel = selectors.DefaultSelector()
    for addr in addrs:
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((addr, port))
        sel.register(sock, selectors.EVENT_READ)
    while True:
        for key, _ in sel.select():
            data, peer = key.fileobj.recvfrom(65535)
            key.fileobj.sendto(name + b":" + data, peer)


if __name__ == "__main__":
    main()
