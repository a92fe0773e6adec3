"""`xdplb daemon`: one director's control plane, a long-lived process.

It reads its configuration file, loads the balancer with its maps pinned under the director's bpffs
directory (taking over the maps a previous run left: connections, counters and ids go on; maps of
other sizes, an upgrade or a rollback, are moved to the configured ones), brings the
maps to the desired state through the reconciler, attaches to the director's interfaces (an attach
replaces the running program atomically), and runs the sweeper. The desired state comes from the
state store once one exists (changes made at run time live there); the configuration file seeds it,
and `SIGHUP` makes the file's services and timeouts the desired state again, as keepalived reloads.
A file that does not validate changes nothing: the running state stays.

It never stops traffic: SIGTERM and SIGKILL alike leave the balancer attached and forwarding with
its pinned maps, and the next run takes them over. Only `xdplb stop --detach` removes it. VRRP (a
later issue) runs as a process of its own, so it keeps advertising while this one restarts.

After each change it writes `status.json` in the state directory: its pid, the state's version, what
the reconciler did, where it is attached.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
import time
from pathlib import Path

from xdplb import net, pinning
from xdplb.config import Config, ConfigError, load_config
from xdplb.datapath import Datapath, detach_xdp
from xdplb.reconcile import Applied, Reconciler
from xdplb.store import State, Store
from xdplb.sweeper import Sweeper

log = logging.getLogger(__name__)

STATUS_FILE = "status.json"


class Daemon:
    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path
        self.config: Config = load_config(config_path)
        self.store = Store(self.config.director.state_dir)
        self.dp: Datapath | None = None
        self.sweeper: Sweeper | None = None
        self.state: State | None = None
        self.applied = Applied()
        self.attached: dict[str, str] = {}

    def start(self) -> None:
        d = self.config.director
        self.state = self.store.load()
        if self.state is None:
            self.state = self._save(State(services=self.config.services, timeouts=self.config.timeouts))
        self.dp = Datapath(d.sizes, pin_dir=d.pin_dir, migrate=True)  # new sizes move the maps over
        self.applied = Reconciler(self.dp).apply(self.state.services, self.state.timeouts)
        for ifname in d.interfaces:
            self.attached[ifname] = self.dp.attach(ifname, d.xdp_mode.value)
        self.sweeper = Sweeper(self.dp).start()
        log.info("director %s: %d services, attached to %s", d.name, self.applied.services, self.attached)
        self.write_status()

    def reload(self) -> bool:
        """SIGHUP: the configuration file's services and timeouts become the desired state."""
        try:
            config = load_config(self.config_path)
        except (ConfigError, OSError) as e:
            log.error("reload refused, the running state stays: %s", e)
            return False
        if config.director != self.config.director:
            log.error("reload refused: the director section changed (%s); that needs a restart", self.config_path)
            return False
        state = self._save(State(services=config.services, timeouts=config.timeouts))
        self.config, self.state = config, state
        self.applied = Reconciler(self.dp).apply(state.services, state.timeouts)
        self.write_status()
        return True

    def _save(self, state: State) -> State:
        return state.model_copy(update={"version": self.store.save(state)})

    def stop(self) -> None:
        """Leaves the balancer attached and forwarding with its pinned maps."""
        if self.sweeper:
            self.sweeper.stop()
        if self.dp:
            self.dp.close(detach=False)

    def write_status(self) -> None:
        status = {
            "pid": os.getpid(),
            "director": self.config.director.name,
            "state_version": self.state.version if self.state else 0,
            "services": self.applied.services,
            "refused": {_name(k): v for k, v in self.applied.refused.items()},
            "removed": [_name(k) for k in self.applied.removed],
            "written": dict(self.applied.written),
            "attached": self.attached,
        }
        path = self.config.director.state_dir / STATUS_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(status, indent=1))
        tmp.replace(path)


def _name(key: tuple) -> str:
    """A service key as ipvsadm writes it: `tcp 10.100.0.100:80`, `fwm 7`."""
    if key[0] == "fwm":
        return f"fwm {key[1]}"
    protocol, vip, port = key
    return f"{protocol} [{vip}]:{port}" if vip.version == 6 else f"{protocol} {vip}:{port}"


def run(config_path: Path, netns: str | None = None) -> int:
    """Runs until SIGTERM/SIGINT; SIGHUP reloads. Inside `netns` when given (entered with setns, so
    bpffs stays mounted, unlike under `ip netns exec`)."""
    wake = threading.Event()
    pending: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        pending.append(signum)
        wake.set()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    with net.in_netns(netns) if netns else contextlib.nullcontext():
        daemon = Daemon(config_path)
        daemon.start()
        try:
            while True:
                wake.wait()
                wake.clear()
                while pending:
                    if pending.pop(0) == signal.SIGHUP:
                        daemon.reload()
                    else:
                        return 0
        finally:
            daemon.stop()


def stop(config_path: Path, netns: str | None = None, detach: bool = False, timeout: float = 10.0) -> list[str]:
    """`xdplb stop`: ends the running daemon (SIGTERM) and, with detach, removes the balancer from its
    interfaces and its pinned maps: the one way traffic stops going through it."""
    config = load_config(config_path)
    d = config.director
    done = []
    status = d.state_dir / STATUS_FILE
    pid = json.loads(status.read_text())["pid"] if status.exists() else None
    if pid and _alive(pid):
        os.kill(pid, signal.SIGTERM)
        _wait_gone(pid, timeout)
        done.append(f"daemon {pid} stopped")
    if detach:
        with net.in_netns(netns) if netns else contextlib.nullcontext():
            for ifname in d.interfaces:
                if detach_xdp(ifname):
                    done.append(f"detached from {ifname}")
        done += [f"unpinned {name}" for name in pinning.unpin(d.pin_dir)]
    return done


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
