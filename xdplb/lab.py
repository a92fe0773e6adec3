"""The namespace lab: the topology of ../shared/DESIGN.md on one machine.

Each host is a network namespace; each segment (edge, front, back) is a bridge in a switch namespace,
and every host interface is a veth whose other end is a bridge port. The wiring is done here with
pyroute2 (through xdplb.net); everything inside a host is done by its role script in lab/roles, the
same scripts the Vagrant lab runs. In native mode every bridge port gets an XDP_PASS program: veth
delivers a director's XDP_TX or XDP_REDIRECT only to a peer that runs XDP, and a frame that crossed
an XDP port carries the headroom XDP needs, so the director's veth does not copy it (measured: about
25% more HTTP requests/s through the balancer).

A director's balancer is driven as an operator drives one (`Director`): its own `xdplb daemon` runs
in the director's namespace, with a configuration file the lab writes and SIGHUP to apply it; reads
come from an observer on the daemon's pinned maps. Each director is named PREFIX-HOST, so its pins
(/sys/fs/bpf/xdplb/PREFIX-HOST) and state are its own; taking the lab down removes them too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from xdplb import config as cfg
from xdplb import net, pinning
from xdplb.sizes import Sizes
from xdplb.store import STATE_FILE, State
from xdplb.vrrp.control import SpeakerClient

if TYPE_CHECKING:
    from xdplb.datapath import Datapath
    from xdplb.model import Service
    from xdplb.vrrp.config import HaSettings

log = logging.getLogger(__name__)

LAB_DIR = Path(os.environ.get("XDPLB_LAB_DIR", Path(__file__).resolve().parent.parent / "lab"))
ROLES = LAB_DIR / "roles"
TOPOLOGY = json.loads((LAB_DIR / "topology.json").read_text())  # shared with vagrant/Vagrantfile
VIP4, VIP6 = TOPOLOGY["vip4"], TOPOLOGY["vip6"]
SEGMENTS = TOPOLOGY["segments"]


@dataclass(frozen=True)
class Host:
    name: str
    role: str
    number: int                      # its host number on every segment
    segments: tuple[str, ...]
    vip: bool = False                # holds the VIPs (the active director)

    def mac(self, segment: str) -> str:
        return f"02:00:0a:{SEGMENTS[segment]['mac']}:00:{self.number:02x}"

    def address(self, segment: str, version: int = 4) -> str:
        seg = SEGMENTS[segment]
        return f"{seg['v4']}.{self.number}" if version == 4 else f"{seg['v6']}:{self.number}"

    def role_args(self, state: Path, static_vip: bool = True) -> list[str]:
        """The arguments every role script takes (lab/roles/common.sh). Without static VIPs (an HA
        lab) no director is given them: the VRRP speakers move them."""
        args = ["--name", self.name, "--number", str(self.number), "--state", str(state)]
        for segment in self.segments:
            args += [f"--{segment}", segment]
        return args + (["--vip"] if self.vip and static_vip else [])


HOSTS = [Host(h["name"], h["role"], h["number"], tuple(h["segments"]), h.get("vip", False))
         for h in TOPOLOGY["hosts"]]
BY_NAME = {h.name: h for h in HOSTS}
DIRECTORS = tuple(h.name for h in HOSTS if h.role == "director")

Progress = Callable[[str], None]


class LabError(RuntimeError):
    pass


STATE_ROOT = Path("/run/xdplb-lab")
# The xdplb command, for role scripts (XDPLB): a DR real server attaches the TUN decapsulator with it.
XDPLB_CMD = f"{sys.executable} -m xdplb.cli"


def exit_on_signals() -> None:
    """SIGTERM and SIGHUP end the process like Ctrl-C, so `finally` blocks take a lab down."""
    def stop(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)


def all_prefixes() -> set[str]:
    """Every lab on this machine: by its switch namespace or its state directory."""
    found = {n.removesuffix("-sw") for n in net.list_netns() if n.endswith("-sw")}
    return found | ({p.name for p in STATE_ROOT.iterdir()} if STATE_ROOT.exists() else set())


def alive(pid: int) -> bool:
    """Running, not merely a zombie waiting for its parent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_dead(pids: list[int], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.02)


def _remove_namespace(name: str) -> None:
    """A namespace and every process in it, killed first."""
    pids = net.namespace_pids(name)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _wait_dead(pids)
    net.remove_netns(name)


class Lab:
    """One lab, its namespaces named PREFIX-HOST; several labs with different prefixes can coexist."""

    def __init__(self, prefix: str = "xl", state_dir: Path | None = None) -> None:
        self.prefix = prefix
        self.state_dir = state_dir or STATE_ROOT / prefix

    def ns(self, host: str) -> str:
        return f"{self.prefix}-{host}"

    @property
    def switch(self) -> str:
        return self.ns("sw")

    def is_up(self) -> bool:
        return self.switch in net.list_netns()

    # ---- up and down -------------------------------------------------------------------------

    def up(self, xdp: str = "native", progress: Progress = log.info, ha: bool = False) -> None:
        """Build the lab from nothing (an existing one is taken down first). `ha`: no director holds
        the VIPs statically; the directors' VRRP speakers elect the one that does."""
        if xdp not in ("native", "generic"):
            raise LabError(f"xdp mode must be native or generic, not {xdp}")
        self.down()
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            (self.state_dir / "xdp").write_text(xdp)
            (self.state_dir / "ha").write_text("1" if ha else "")
            progress("switch: bridges for the edge, front and back segments")
            net.create_netns(self.switch)
            with net.in_netns(self.switch):
                for segment in SEGMENTS:
                    net.add_bridge(f"br-{segment}")
            for host in HOSTS:
                progress(f"{host.name}: namespace, {', '.join(host.segments)} wired")
                self._wire(host)
            for host in HOSTS:
                progress(f"{host.name}: {host.role} role script")
                self._configure(host)
            if xdp == "native":
                progress("bridge ports: XDP_PASS (veth delivers XDP_TX only to a peer running XDP)")
                self._bridge_port_programs()
        except BaseException:
            self.down()
            raise

    def down(self) -> None:
        """Remove every namespace of this lab and every process in them (the directors' daemons
        included), then the directors' pinned maps; safe to call any time. The state directory goes
        last: while pins are left, `all_prefixes` still finds this lab."""
        for name in [n for n in net.list_netns() if n.startswith(f"{self.prefix}-")]:
            _remove_namespace(name)
        for host in DIRECTORS:
            self.remove_pins(host)
        shutil.rmtree(self.state_dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            STATE_ROOT.rmdir()  # only when no other lab is left

    def _wire(self, host: Host) -> None:
        net.create_netns(self.ns(host.name))
        with net.in_netns(self.switch):
            for segment in host.segments:
                net.plug(segment, f"{host.name}-{segment}"[:15], f"br-{segment}", self.ns(host.name),
                         host.mac(segment))
        if self.ha and host.role == "director":
            # A NIC drops unicast frames for another MAC before XDP sees them; a veth does not. When a
            # director dies the bridge floods frames for its MAC, and the other director's balancer
            # would forward them before it is master: the failover would look instantaneous.
            for port in self.ports(host.name):
                subprocess.run(["ip", "netns", "exec", self.switch, "bridge", "link", "set", "dev", port,
                                "flood", "off"], check=True, capture_output=True)

    def _configure(self, host: Host) -> None:
        args = host.role_args(self.state_dir / host.name, static_vip=not self.ha)
        self.exec(host.name, ["bash", str(ROLES / f"{host.role}.sh"), *args], check=True,
                  env={**os.environ, "XDPLB": XDPLB_CMD})

    def _bridge_port_programs(self) -> None:
        self.restore_port_program(*(port for h in HOSTS for port in self.ports(h.name)))

    @staticmethod
    def ports(host: str) -> list[str]:
        """A host's bridge ports in the switch namespace, one per segment it is on."""
        return [f"{host}-{segment}"[:15] for segment in BY_NAME[host].segments]

    # ---- failures of a whole host ------------------------------------------------------------

    def cut(self, host: str, connected: bool = False) -> None:
        """Takes a host's cables out (its bridge ports down: it hears nobody, nobody hears it), or
        puts them back (`connected=True`)."""
        with net.in_netns(self.switch):
            for port in self.ports(host):
                net.set_link_up(port, connected)

    def destroy(self, host: str) -> None:
        """A dead host: its namespace deleted with every process in it (a director's daemon and
        speaker too); its pinned maps stay, as they would on a host that reboots."""
        _remove_namespace(self.ns(host))

    def rebuild(self, host: str) -> None:
        """A destroyed host back, wired and configured as `up` made it."""
        h = BY_NAME[host]
        self._wire(h)
        self._configure(h)
        if self.xdp_mode == "native":
            self.restore_port_program(*self.ports(host))

    def restore_port_program(self, *ports: str) -> None:
        """(Re)attach the XDP_PASS program of bridge ports (compiled once for all of them)."""
        from xdplb.datapath import BPF_DIR, Program  # BCC only where XDP is needed

        prog = Program(BPF_DIR / "baseline.c", "xdp_pass")
        try:
            with net.in_netns(self.switch):
                for port in ports:
                    prog.attach(port, "native")
        finally:
            prog.close()  # the kernel keeps attached programs

    # ---- using it ----------------------------------------------------------------------------

    def exec(self, host: str, cmd: list[str], check: bool = False, timeout: float | None = 120,
             **kw) -> subprocess.CompletedProcess:
        """Run a command on a host, capturing its output."""
        res = subprocess.run(self._argv(host, cmd), capture_output=True, text=True, timeout=timeout, **kw)
        if check and res.returncode != 0:
            raise LabError(f"{host}: {' '.join(cmd)} failed ({res.returncode}): {res.stderr.strip()}")
        return res

    def popen(self, host: str, cmd: list[str], **kw) -> subprocess.Popen:
        return subprocess.Popen(self._argv(host, cmd), **kw)

    def _argv(self, host: str, cmd: list[str]) -> list[str]:
        if host not in BY_NAME:
            raise LabError(f"no host {host} (hosts: {', '.join(BY_NAME)})")
        return ["ip", "netns", "exec", self.ns(host), *cmd]

    def set_nginx(self, host: str, running: bool, timeout: float = 10.0) -> None:
        """Stops or starts a real server's nginx (lab/roles/services.sh wrote its configuration): a
        server failing and coming back, as its health check sees it."""
        state = self.state_dir / host
        pid_file = state / "nginx.pid"
        if running:
            with contextlib.suppress(FileNotFoundError, ValueError):
                if alive(int(pid_file.read_text())):
                    return  # already running
            self.exec(host, ["nginx", "-c", str(state / "nginx.conf"), "-e", str(state / "logs" / "error.log")],
                      check=True)
            return
        try:
            pid = int(pid_file.read_text())
            os.kill(pid, signal.SIGTERM)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.02)
        raise LabError(f"{host}: nginx {pid} did not stop in {timeout:.0f} s")

    @property
    def ha(self) -> bool:
        path = self.state_dir / "ha"
        return path.exists() and path.read_text() == "1"

    @property
    def xdp_mode(self) -> str:
        path = self.state_dir / "xdp"
        return path.read_text() if path.exists() else "native"

    # ---- directors ---------------------------------------------------------------------------

    def director_name(self, host: str) -> str:
        """The name of a director's daemon: its pins and state apart from another lab's or director's."""
        return self.ns(host)

    def pin_dir(self, host: str) -> Path:
        return cfg.PIN_ROOT / self.director_name(host)

    def daemon_dir(self, host: str) -> Path:
        """A director's daemon files: its configuration, its state directory, its log."""
        return self.state_dir / host / "daemon"

    def daemon_state_dir(self, host: str) -> Path:
        """The daemon's state directory: its desired state (state.json) and status.json."""
        return self.daemon_dir(host) / "state"

    def remove_pins(self, host: str) -> None:
        """A director's pinned maps, and those a map migration set aside (`-old`); the maps live on
        while a program uses them, so this is for after its interface or namespace is gone."""
        pins = self.pin_dir(host)
        for path in (pins, pins.with_name(f"{pins.name}-old")):
            if path.exists():
                shutil.rmtree(path)  # bpffs: each pin unlinked, then the directory
                log.info("removed the pinned maps in %s", path)
        pinning.prune(pins)  # the root of every director's pins, when this was the last

    def desired_state(self, host: str) -> State | None:
        """A director's desired state as its daemon saved it (read, never through Store: loading a store
        tidies its directory, which only its daemon may do)."""
        path = self.daemon_state_dir(host) / STATE_FILE
        try:
            return State.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            return None
        except ValidationError as e:
            log.warning("%s: %s is not a valid state: %s", host, path, e)
            return None

    def services(self, host: str) -> list[dict]:
        """The services a director balances: its daemon's desired state."""
        state = self.desired_state(host)
        return [s.model_dump(mode="json") for s in state.services] if state else []

    def status(self) -> list[dict]:
        """Per host: its namespace, addresses per interface, and the XDP mode of each interface."""
        rows = []
        present = set(net.list_netns())
        for host in HOSTS:
            row = {"host": host.name, "role": host.role, "up": self.ns(host.name) in present, "interfaces": {}}
            if row["up"]:
                with net.in_netns(self.ns(host.name)):
                    for segment in host.segments:
                        row["interfaces"][segment] = {"addresses": net.addresses(segment),
                                                      "xdp": net.xdp_mode(segment)}
            rows.append(row)
        return rows


LAB_SIZES = Sizes(max_services=8, conn_max=1 << 16)  # small: quick to load, plenty for the lab
STATUS_FILE = "status.json"  # xdplb.daemon.STATUS_FILE (that module loads BCC, this one must not)
DAEMON_DEADLINE = 30.0  # seconds for a start or a reload: generous, a loaded machine compiles slowly


class Director:
    """A lab director's balancer, run by its own `xdplb daemon` in the director's namespace.

    Services change as an operator changes them: the configuration file is rewritten and the daemon
    gets SIGHUP, and a change returns once the daemon's status.json shows the new state version. Reads
    go to `dp`, an observer on the daemon's pinned maps (Datapath with observe=True, opened on first
    use: it compiles the balancer once more), told after each change which ids each service has.
    The daemon keeps the connections across changes: there is no flush."""

    def __init__(self, lab: Lab, host: str, sizes: Sizes = LAB_SIZES, ifname: str = "front",
                 deadline: float = DAEMON_DEADLINE, ha: HaSettings | None = None) -> None:
        self.lab, self.host, self.sizes, self.ifname, self.deadline = lab, host, sizes, ifname, deadline
        self.ha = ha  # VRRP instances: the daemon starts their speaker
        self.name = lab.director_name(host)
        self.pin_dir = lab.pin_dir(host)
        self.dir = lab.daemon_dir(host)
        self.config_path = self.dir / "xdplb.yaml"
        self.state_dir = lab.daemon_state_dir(host)
        self.status_path = self.state_dir / STATUS_FILE
        self.log_path = self.dir / "daemon.log"
        self.daemon: subprocess.Popen | None = None
        self.mode: str | None = None  # the XDP mode the daemon attached in
        self._services: dict[tuple, Service] = {}
        self._dp: Datapath | None = None

    # ---- the daemon --------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.daemon is not None and self.daemon.poll() is None

    def attach(self) -> str:
        """Starts the daemon, which compiles the balancer, pins its maps and attaches; the XDP mode."""
        self.start()
        return self.mode

    def start(self) -> dict:
        """Starts the daemon (after a kill, the new one takes the pinned maps over); its first status."""
        if self.running:
            raise LabError(f"{self.name}: the daemon already runs (pid {self.daemon.pid})")
        self._write_config()
        cmd = [sys.executable, "-m", "xdplb.cli", "daemon", "-c", str(self.config_path), "--netns",
               self.lab.ns(self.host)]
        with self.log_path.open("a") as out:  # appended across restarts, for the tail an error shows
            self.daemon = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        status = self._wait_status(lambda _: True, "start")  # a status of this pid: started
        self.mode = status["attached"].get(self.ifname)
        state = self.lab.desired_state(self.host)
        if state is None or state.services != self.services:
            status = self._apply()  # the services changed while no daemon ran: its saved state is older
        self._follow()
        if status["refused"]:
            raise LabError(f"{self.name} refused {status['refused']}")
        return status

    def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """Ends the daemon with a signal (SIGKILL, as a crash would); the balancer forwards on."""
        if self.running:
            self.daemon.send_signal(sig)
        if self.daemon is not None:
            self.daemon.wait(timeout=self.deadline)

    def status(self) -> dict | None:
        """The daemon's status.json (replaced whole on each write: a read never sees half of one)."""
        try:
            return json.loads(self.status_path.read_text())
        except FileNotFoundError:
            return None

    def log_tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text() if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def detach(self) -> None:
        """`xdplb stop --detach`: the daemon stopped, the balancer off the interface, its pins and
        state gone; a later attach starts afresh from the configuration file."""
        try:
            self._stop_daemon()
        finally:
            self._close_observer()
            self.mode = None
            self.status_path.unlink(missing_ok=True)  # its pid is gone: nothing for stop() to signal
            if self.config_path.exists() and self.lab.ns(self.host) in net.list_netns():
                from xdplb.daemon import stop  # BCC only where XDP is needed

                for line in stop(self.config_path, self.lab.ns(self.host), detach=True):
                    log.info("%s: %s", self.name, line)
            self.lab.remove_pins(self.host)  # what stop left (a namespace already gone, a migration's -old)
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def close(self) -> None:
        """Stops and removes the balancer and the daemon's files; works when the lab is already gone too."""
        try:
            self.detach()
        finally:
            self._services.clear()
            shutil.rmtree(self.dir, ignore_errors=True)

    def _stop_daemon(self) -> None:
        if self.daemon is None:
            return
        if self.daemon.poll() is None:
            self.daemon.terminate()
            try:
                self.daemon.wait(timeout=self.deadline)
            except subprocess.TimeoutExpired:
                log.warning("%s: the daemon ignored SIGTERM for %.0f s: killed", self.name, self.deadline)
                self.daemon.kill()
                self.daemon.wait()
        self.daemon = None

    def _wait_status(self, done: Callable[[dict], bool], what: str) -> dict:
        """Until the running daemon's status says `done`; raises with its log when it exits or is late."""
        deadline = time.monotonic() + self.deadline
        while True:
            status = self.status()
            if status is not None and status["pid"] == self.daemon.pid and done(status):
                return status
            if self.daemon.poll() is not None:
                raise LabError(f"{self.name}: the daemon exited ({self.daemon.returncode}) before its {what}:\n"
                               f"{self.log_tail()}")
            if time.monotonic() > deadline:
                raise LabError(f"{self.name}: no {what} of the daemon in {self.deadline:.0f} s:\n{self.log_tail()}")
            time.sleep(0.01)

    # ---- services ----------------------------------------------------------------------------

    @property
    def services(self) -> list[Service]:
        """The desired services, in the order they were first set."""
        return list(self._services.values())

    def set_service(self, service: Service) -> dict[str, int]:
        """Adds or replaces a service (by its key) once the daemon applied it; the map entries it wrote,
        by table. A service the daemon refuses is taken out again, and raises LabError."""
        previous = dict(self._services)
        self._services[service.key] = service
        try:
            status = self._apply()
        except LabError:
            self._services = previous
            raise
        if status["reload_error"]:  # refused whole: the daemon's state is the previous one
            self._services = previous
            self._write_config()
            raise LabError(f"{self.name} refused {service}: {status['reload_error']}")
        return status["written"]

    def reset(self) -> None:
        """No services. The connections stay (the daemon has no flush): they expire, and a packet of
        one whose backend is gone is placed afresh."""
        self._services.clear()
        if self.running:
            self._apply()
        else:
            self._write_config()

    def _apply(self) -> dict:
        """The desired services to the daemon: the file rewritten, SIGHUP, its status awaited."""
        self._write_config()
        if not self.running:
            raise LabError(f"{self.name}: the daemon is not running:\n{self.log_tail()}")
        reloads = self.status()["reloads"]
        self.daemon.send_signal(signal.SIGHUP)
        status = self._wait_status(lambda s: s["reloads"] > reloads, "reload")
        self._follow()
        return status

    def _config(self) -> cfg.Config:
        director = cfg.Director(name=self.name, interfaces=[self.ifname], xdp_mode=self.lab.xdp_mode,
                                pin_dir=self.pin_dir, state_dir=self.state_dir, sizes=self.sizes)
        return cfg.Config(director=director, services=self.services, api=cfg.ApiSettings(listen=f"unix:{self.socket}"),
                          ha=self.ha)

    @property
    def socket(self) -> Path:
        """Where the daemon's API listens: a Unix socket, reachable from the host (`xdplb --url unix:...`)."""
        return self.state_dir / "api.sock"

    @property
    def token_file(self) -> Path:
        return self.state_dir / "api.token"

    @property
    def speaker(self) -> SpeakerClient:
        """The control socket of this director's VRRP speaker."""
        return SpeakerClient(self.ha.socket_path(self.state_dir) if self.ha else self.state_dir / "vrrp.sock")

    def vrrp_pid(self) -> int:
        return self.speaker.status()["pid"]

    def vrrp(self, instance: int = 0) -> dict:
        """One VRRP instance's status, from the speaker."""
        return self.speaker.status()["instances"][instance]

    def _write_config(self) -> None:
        try:
            text = cfg.dump_config(self._config())
        except ValidationError as e:  # two services on one endpoint: the daemon would refuse the file
            raise LabError(f"{self.name}: {e}") from None
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(self.config_path)  # a SIGHUP never reads half a file

    # ---- reads -------------------------------------------------------------------------------

    @property
    def dp(self) -> Datapath:
        """The observer on the daemon's pinned maps: counters, connections, per-service stats."""
        if self._dp is None:
            if not self.running:
                raise LabError(f"{self.name}: no daemon, so no pinned maps to observe")
            from xdplb.datapath import Datapath  # BCC only where XDP is needed

            self._dp = Datapath(self.sizes, pin_dir=self.pin_dir, observe=True)
            self._follow()
        return self._dp

    def api_get(self, path: str, **params: object) -> object:
        """A read from this director's API (its Unix socket): the JSON body."""
        import httpx

        with httpx.Client(transport=httpx.HTTPTransport(uds=str(self.socket)), base_url="http://lb") as c:
            return c.get(path, params=params).raise_for_status().json()

    def cli(self, *args: str) -> str:
        """Runs an operator command (`xdplb list --stats`, `xdplb backend drain ...`) against this
        director's API, as an operator would; its output. A change made this way becomes the lab's
        desired state too (the configuration file follows), so a later set_service builds on it."""
        cmd = [sys.executable, "-m", "xdplb.cli", *args, "--url", f"unix:{self.socket}",
               "--token-file", str(self.token_file)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=self.deadline)
        if proc.returncode:
            raise LabError(f"{self.name}: xdplb {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
        state = self.lab.desired_state(self.host)
        if state is not None and state.services != self.services:
            self._services = {s.key: s for s in state.services}
            self._write_config()
            self._follow()
        return proc.stdout

    def _follow(self) -> None:
        if self._dp is not None:
            self._dp.follow(self.services)

    def _close_observer(self) -> None:
        if self._dp is not None:
            self._dp.close(detach=False)
            self._dp = None
