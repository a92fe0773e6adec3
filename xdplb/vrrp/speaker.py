"""The VRRP speaker: a process of its own per director, so it goes on advertising while the daemon
(the reconciling control plane) restarts or crashes, and the VIPs stay where they are.

One thread, one select loop: the instances' receiving sockets, their timers, link and address
changes (a netlink subscription), and the control socket (xdplb.vrrp.control) through which the
daemon tells it which services lost their quorum and the API steers it. The daemon starts it when
none answers on the control socket, and `xdplb stop --detach` shuts it down: priority 0 adverts, the
VIPs released. SIGTERM does the same.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import socket
import time
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.rtnl import RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR, RTMGRP_LINK

from xdplb import net
from xdplb.config import load_config
from xdplb.vrrp.config import HaSettings
from xdplb.vrrp.control import MAX_LINE
from xdplb.vrrp.instance import ControlError, InstanceRunner

log = logging.getLogger(__name__)

CONTROLS_FILE = "vrrp-controls.json"
IDLE = 1.0  # the longest sleep: a missed netlink event is caught up with by then


class Speaker:
    def __init__(self, settings: HaSettings, socket_path: Path, controls_path: Path | None = None) -> None:
        self.runners = [InstanceRunner(i) for i in settings.instances]
        self.by_name = {r.cfg.name: r for r in self.runners}
        self.socket_path = socket_path
        self.controls_path = controls_path  # the operator's controls, kept across restarts
        self.services_down: set[str] = set()
        self.started = time.time()
        self._stop = False
        self._clients: dict[socket.socket, bytes] = {}
        self._control: socket.socket | None = None
        self._netlink: IPRoute | None = None
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)  # a signal ends select at once

    # ---- life ------------------------------------------------------------------------------

    def open(self) -> None:
        self._netlink = IPRoute()
        self._netlink.bind(groups=RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR)
        self._control = _listen(self.socket_path)
        saved = self._load_controls()
        for r in self.runners:
            if r.cfg.name in saved:
                r.restore(saved[r.cfg.name])
            r.start(self.services_down)

    def run(self) -> None:
        """Until stop(); then every instance shut down (priority 0 from a master, VIPs released)."""
        try:
            while not self._stop:
                self._step()
        finally:
            self.close()

    def stop(self) -> None:
        self._stop = True

    def close(self) -> None:
        for r in self.runners:
            try:
                r.shutdown()
            except Exception:  # one instance's trouble must not leave another's VIPs behind
                log.exception("%s: shutting down", r.cfg.name)
        for s in [*self._clients, self._control]:
            if s is not None:
                s.close()
        self._clients.clear()
        if self._control is not None:
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()
            self._control = None
        if self._netlink is not None:
            self._netlink.close()
            self._netlink = None
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _step(self) -> None:
        now = time.monotonic()
        deadlines = [d for r in self.runners if (d := r.deadline()) is not None]
        timeout = max(0.0, min([*deadlines, now + IDLE]) - now)
        readers = [r for r in self.runners if r.sockets] + [self._control, self._netlink, self._wake_r,
                                                             *self._clients]
        try:
            ready, _, _ = select.select(readers, [], [], timeout)
        except InterruptedError:
            return
        for item in ready:
            try:
                self._handle_ready(item)
            except Exception:  # a bug in one handler must not silence every instance's adverts
                log.exception("VRRP speaker: handling %r", item)
        for r in self.runners:
            try:
                r.due()
            except Exception:
                log.exception("%s: timers", r.cfg.name)

    def _handle_ready(self, item: object) -> None:
        if isinstance(item, InstanceRunner):
            item.receive()
        elif item is self._control:
            self._accept()
        elif item is self._netlink:
            self._netlink_changed()
        elif item == self._wake_r:
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake_r, 512)
        else:
            self._client_readable(item)

    def _netlink_changed(self) -> None:
        with contextlib.suppress(Exception):  # the events only say "look again"
            self._netlink.get()
        self._evaluate()

    def _evaluate(self) -> None:
        for r in self.runners:
            r.evaluate(self.services_down)

    # ---- control ---------------------------------------------------------------------------

    def _accept(self) -> None:
        try:
            conn, _ = self._control.accept()
        except OSError:
            return
        conn.setblocking(False)
        self._clients[conn] = b""

    def _client_readable(self, conn: socket.socket) -> None:
        try:
            chunk = conn.recv(65536)
        except OSError:
            chunk = b""
        data = self._clients.get(conn, b"") + chunk
        if not chunk or len(data) > MAX_LINE:
            self._drop(conn)
            return
        if b"\n" not in data:
            self._clients[conn] = data
            return
        line = data.split(b"\n", 1)[0]
        answer = self._answer(line)
        try:
            conn.setblocking(True)
            conn.settimeout(1.0)
            conn.sendall(json.dumps(answer).encode() + b"\n")
        except OSError:
            pass
        self._drop(conn)

    def _drop(self, conn: socket.socket) -> None:
        self._clients.pop(conn, None)
        conn.close()

    def _answer(self, line: bytes) -> dict:
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ControlError("a request is a JSON object", 400)
            result = self.handle(request)
        except json.JSONDecodeError as e:
            return {"ok": False, "status": 400, "error": f"not JSON: {e}"}
        except ControlError as e:
            return {"ok": False, "status": e.status, "error": str(e)}
        return {"ok": True, "result": result}

    def handle(self, request: dict[str, Any]) -> Any:
        op = request.get("op")
        if op == "status":
            return self.status()
        if op == "services":
            down = request.get("down")
            if not isinstance(down, list) or not all(isinstance(s, str) for s in down):
                raise ControlError("services: `down` is a list of service ids", 400)
            if set(down) != self.services_down:
                self.services_down = set(down)
                self._evaluate()
            return self.status()
        if op == "shutdown":
            self.stop()
            return None
        runners = self._targets(request.get("instance"))
        if op == "failover":
            action = str(request.get("action"))
            for r in runners:  # all or nothing: every instance checked before any acts
                if problem := r.failover_problem(action):
                    raise problem
            for r in runners:
                r.failover(action)
        elif op == "priority":
            priority = request.get("priority")
            if not isinstance(priority, int) or isinstance(priority, bool):
                raise ControlError("priority: an integer from 1 to 255", 400)
            for r in runners:
                r.set_priority(priority)
        elif op == "maintenance":
            on = request.get("on")
            if not isinstance(on, bool):
                raise ControlError("maintenance: `on` is true or false", 400)
            for r in runners:
                r.set_maintenance(on)
        else:
            raise ControlError(f"unknown op {op!r}", 400)
        self._save_controls()
        return self.status()

    def _load_controls(self) -> dict:
        if self.controls_path is None or not self.controls_path.exists():
            return {}
        try:
            saved = json.loads(self.controls_path.read_text())
        except (OSError, ValueError) as e:
            log.error("%s: %s; starting without the operator's controls", self.controls_path, e)
            return {}
        return {k: v for k, v in saved.items() if isinstance(v, dict)} if isinstance(saved, dict) else {}

    def _save_controls(self) -> None:
        if self.controls_path is None:
            return
        tmp = self.controls_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({r.cfg.name: r.controls() for r in self.runners}))
        tmp.replace(self.controls_path)

    def _targets(self, name: Any) -> list[InstanceRunner]:
        if name is None:
            return self.runners
        if name not in self.by_name:
            raise ControlError(f"no VRRP instance {name!r} (instances: {', '.join(self.by_name)})", 404)
        return [self.by_name[name]]

    def status(self) -> dict:
        return {"pid": os.getpid(), "started": self.started, "services_down": sorted(self.services_down),
                "instances": [r.status() for r in self.runners]}


def _listen(path: Path) -> socket.socket:
    """The control socket, 0600; a stale socket file of a dead speaker is replaced, a live one refused."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(path))
            except OSError:
                path.unlink()
            else:
                raise RuntimeError(f"a speaker already answers on {path}")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        s.bind(str(path))
    finally:
        os.umask(old)
    s.listen(16)
    s.setblocking(False)
    return s


def run(config_path: Path, netns: str | None = None) -> int:
    """`xdplb speaker`: runs the configuration's VRRP instances until SIGTERM/SIGINT."""
    if netns:
        net.enter_netns(netns)
    config = load_config(config_path)
    if config.ha is None:
        log.error("%s has no ha section: no VRRP instance to run", config_path)
        return 2
    state_dir = config.director.state_dir
    speaker = Speaker(config.ha, config.ha.socket_path(state_dir), state_dir / CONTROLS_FILE)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: speaker.stop())
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.set_wakeup_fd(speaker._wake_w)
    speaker.open()
    log.info("speaker for %s: %d instances, control on %s", config.director.name, len(speaker.runners),
             speaker.socket_path)
    speaker.run()
    return 0
