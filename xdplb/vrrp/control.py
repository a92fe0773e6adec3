"""The speaker's control socket: how the daemon (its API, its metrics, its health verdicts) and
`xdplb stop` talk to the VRRP speaker, a process of its own.

A Unix stream socket (0600, in the director's state directory), one JSON object per line each way:

    request   {"op": "status"}
              {"op": "failover", "action": "hand-over" | "take-over" | "auto", "instance": NAME | null}
              {"op": "priority", "priority": 1..255, "instance": NAME | null}
              {"op": "maintenance", "on": true | false, "instance": NAME | null}
              {"op": "services", "down": [SERVICE_ID, ...]}    the daemon's word on tracked services
              {"op": "shutdown"}                               priority 0, VIPs released, exit
    answer    {"ok": true, "result": ...}  or  {"ok": false, "status": 400 | 404 | 409, "error": "..."}

`instance: null` means every instance. The result of every op but shutdown is the status (below).
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

TIMEOUT = 5.0
MAX_LINE = 1 << 20


class SpeakerError(RuntimeError):
    """The speaker refused a request; `status` is the HTTP status the API answers with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class SpeakerUnavailable(SpeakerError):
    """No speaker answers on the socket (not running, or not yet)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 503)


class SpeakerClient:
    def __init__(self, path: Path, timeout: float = TIMEOUT) -> None:
        self.path = path
        self.timeout = timeout

    def request(self, op: str, **args: Any) -> Any:
        """One request, its result; SpeakerError when refused, SpeakerUnavailable when nobody answers."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(self.timeout)
                s.connect(str(self.path))
                s.sendall(json.dumps({"op": op, **args}).encode() + b"\n")
                answer = _read_line(s)
        except (FileNotFoundError, ConnectionRefusedError) as e:
            raise SpeakerUnavailable(f"no VRRP speaker at {self.path}: {e.strerror}") from None
        except OSError as e:  # a timeout, a speaker gone mid-answer
            raise SpeakerUnavailable(f"the VRRP speaker at {self.path} did not answer: {e}") from None
        if not answer.get("ok"):
            raise SpeakerError(answer.get("error", "refused"), answer.get("status", 400))
        return answer.get("result")

    def alive(self) -> bool:
        try:
            self.request("status")
        except SpeakerUnavailable:
            return False
        return True

    def status(self) -> dict:
        return self.request("status")

    def failover(self, action: str, instance: str | None = None) -> dict:
        return self.request("failover", action=action, instance=instance)

    def priority(self, priority: int, instance: str | None = None) -> dict:
        return self.request("priority", priority=priority, instance=instance)

    def maintenance(self, on: bool, instance: str | None = None) -> dict:
        return self.request("maintenance", on=on, instance=instance)

    def services_down(self, down: list[str]) -> dict:
        return self.request("services", down=down)

    def shutdown(self) -> None:
        self.request("shutdown")


def _read_line(s: socket.socket) -> dict:
    data = b""
    while not data.endswith(b"\n"):
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionResetError("closed before a whole answer")
        data += chunk
        if len(data) > MAX_LINE:
            raise ConnectionResetError("answer too long")
    return json.loads(data)
