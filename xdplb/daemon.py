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
its pinned maps, and the next run takes them over. Only `xdplb stop --detach` removes it. With an `ha`
section it starts the VRRP speaker (xdplb.vrrp.supervisor), a process of its own that keeps
advertising while this one restarts, and tells it which services lost their quorum.

After each change it writes `status.json` in the state directory: its pid, the state's version, what
the reconciler did, where it is attached.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import threading
import time
from pathlib import Path

from xdplb import net, pinning
from xdplb.api.context import ApiContext
from xdplb.api.main import create_app
from xdplb.apiserver import ApiServer, load_token
from xdplb.config import Config, ConfigError, load_config
from xdplb.datapath import Datapath, detach_xdp
from xdplb.manager import Manager, ManagerError
from xdplb.rates import RateEstimator
from xdplb.store import State, Store
from xdplb.sweeper import Sweeper
from xdplb.vrrp.supervisor import Supervisor, shutdown_speaker

log = logging.getLogger(__name__)

STATUS_FILE = "status.json"
SPEAKER_REFRESH = 5.0  # seconds between reminders to the speaker of the services' health


class Daemon:
    def __init__(self, config_path: Path, netns: str | None = None) -> None:
        self.config_path = config_path
        self.netns = netns
        self.config: Config = load_config(config_path)
        self.store = Store(self.config.director.state_dir)
        self.dp: Datapath | None = None
        self.manager: Manager | None = None
        self.sweeper: Sweeper | None = None
        self.rates: RateEstimator | None = None
        self.api: ApiServer | None = None
        self.monitor = None
        self.supervisor: Supervisor | None = None
        self._ha_stop = threading.Event()
        self.attached: dict[str, str] = {}
        self.reloads = 0                       # SIGHUPs handled, and why the last one was refused
        self.reload_error: str | None = None

    def start(self) -> None:
        d = self.config.director
        state = self.store.load()
        if state is None:
            state = State(services=self.config.services, timeouts=self.config.timeouts)
            state = state.model_copy(update={"version": self.store.save(state)})
        token = load_token(self.config.api.token_path(d.state_dir)) if self.config.api.enabled else ""
        self.dp = Datapath(d.sizes, pin_dir=d.pin_dir, migrate=True)  # new sizes move the maps over
        self.manager = Manager(self.dp, self.store, state)
        from xdplb.health.monitor import HealthMonitor  # asyncio machinery: only where checks run

        self.monitor = HealthMonitor(self.manager.on_health).start()  # in this namespace: the checks leave here
        applied = self.manager.start(self.monitor)
        for ifname in d.interfaces:
            self.attached[ifname] = self.dp.attach(ifname, d.xdp_mode.value)
        self.sweeper = Sweeper(self.dp).start()
        self.rates = RateEstimator(self.manager.counters).start()
        self.manager.listeners.append(lambda _m: self.write_status())
        if self.config.ha:
            self._start_speaker()
        if self.config.api.enabled:
            self.api = ApiServer(create_app(self._api_context(token)), self.config.api.listen).start()
        log.info("director %s: %d services, attached to %s", d.name, applied.services, self.attached)
        self.write_status()

    def _api_context(self, token: str) -> ApiContext:
        first = self.config.director.interfaces[0]
        return ApiContext(self.manager, token, self.config.api.auth_reads, self.rates, self.config.director.name,
                          ingress_ifindex=socket.if_nametoindex(first), problems=self._problems,
                          ha=self.supervisor.client if self.supervisor else None)

    def _start_speaker(self) -> None:
        """The VRRP speaker (one left running by a previous run is kept), then a thread telling it
        which services lost their quorum: after each change, and every few seconds in case it restarted."""
        d, ha = self.config.director, self.config.ha
        self.supervisor = Supervisor(self.config_path, ha.socket_path(d.state_dir), d.state_dir / "vrrp.log",
                                     self.netns)
        try:
            self.supervisor.ensure()
        except RuntimeError as e:  # the balancer forwards without it; it is tried again every few seconds
            log.error("%s", e)
        self.supervisor.services_down(self.manager.without_quorum())
        threading.Thread(target=self._tell_speaker, name="xdplb-ha", daemon=True).start()

    def _revive_speaker(self) -> None:
        """A speaker that died is started again: it releases the VIPs its predecessor left and is
        elected afresh; the balancer forwards all along, whoever holds the VIPs."""
        self.supervisor.forget()
        try:
            if not self.supervisor.client.alive():
                log.error("the VRRP speaker does not answer: starting one")
                self.supervisor.ensure()
        except RuntimeError as e:
            log.error("%s", e)

    def _tell_speaker(self) -> None:
        last, told = self.manager.events.last_id, time.monotonic()
        while not self._ha_stop.is_set():
            events = self.manager.events.since(last, SPEAKER_REFRESH)
            last = events[-1].id if events else last
            if time.monotonic() - told > SPEAKER_REFRESH:
                told = time.monotonic()
                self._revive_speaker()
            self.supervisor.services_down(self.manager.without_quorum())

    def _problems(self) -> list[str]:
        """Why the director is not ready: an interface that lost its program."""
        problems = []
        for ifname in self.config.director.interfaces:
            try:
                if net.xdp_mode(ifname) is None:
                    problems.append(f"not attached to {ifname}")
            except Exception as e:  # pyroute2's NetlinkError: the interface is gone
                problems.append(f"interface {ifname}: {e}")
        return problems

    def reload(self) -> bool:
        """SIGHUP: the configuration file's services and timeouts become the desired state, whole or
        not at all; status.json counts the reloads and says why the last one was refused."""
        self.reloads += 1
        self.reload_error = self._reload()
        if self.reload_error:
            log.error("reload refused, the running state stays: %s", self.reload_error)
        self.write_status()
        return self.reload_error is None

    def _reload(self) -> str | None:
        try:
            config = load_config(self.config_path)
        except (ConfigError, OSError) as e:
            return str(e)
        if (config.director, config.api) != (self.config.director, self.config.api):
            return f"the director or api section of {self.config_path} changed; that needs a restart"
        if config.ha != self.config.ha:
            return (f"the ha section of {self.config_path} changed; the VRRP speaker reads it when it starts "
                    "(xdplb stop --detach, then start the daemon)")
        try:
            self.manager.replace(config.services, config.timeouts)
        except ManagerError as e:
            return str(e)
        self.config = config
        return None

    def stop(self) -> None:
        """Leaves the balancer attached and forwarding with its pinned maps, and the VRRP speaker running."""
        self._ha_stop.set()
        for part in (self.api, self.monitor, self.rates, self.sweeper):
            if part:
                part.stop()
        if self.dp:
            self.dp.close(detach=False)

    def write_status(self) -> None:
        applied = self.manager.applied
        status = {
            "pid": os.getpid(),
            "director": self.config.director.name,
            "state_version": self.manager.version,
            "services": applied.services,
            "refused": {_name(k): v for k, v in applied.refused.items()},
            "removed": [_name(k) for k in applied.removed],
            "written": dict(applied.written),
            "attached": self.attached,
            "api": self.config.api.listen if self.config.api.enabled else None,
            "reloads": self.reloads,
            "reload_error": self.reload_error,
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
        daemon = Daemon(config_path, netns)
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
    if detach and config.ha:  # hand the VIPs over before the balancer goes
        stopped = shutdown_speaker(config.ha.socket_path(d.state_dir))
        done += [stopped] if stopped else []
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
