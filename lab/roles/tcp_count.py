"""TCP byte counter for the lab's real servers: reads each connection to its end and answers
"NAME:bytes", so a client proves an upload arrived whole (through a tunnel, path MTU discovery
included). usage: tcp_count.py NAME PORT ADDR..."""

import socket
import sys
import threading


def serve(conn: socket.socket, name: bytes) -> None:
    with conn:
        total = 0
        while chunk := conn.recv(65536):
            total += len(chunk)
        conn.sendall(name + b":" + str(total).encode())


def listen(addr: str, port: int, name: bytes) -> None:
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((addr, port))
    sock.listen(64)
    while True:
        conn, _ = sock.accept()
        threading.Thread(target=serve, args=(conn, name), daemon=True).start()


def main() -> None:
    name, port, addrs = sys.argv[1].encode(), int(sys.argv[2]), sys.argv[3:]
    threads = [threading.Thread(target=listen, args=(a, port, name), daemon=True) for a in addrs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


if __name__ == "__main__":
    main()
