"""The namespace lab: the topology of ../shared/DESIGN.md on one machine.

Each host is a network namespace; each segment (edge, front, back) is a bridge in a switch namespace,
and every host interface is a veth whose other end is a bridge port. The wiring is done here with
pyroute2 (through xdplb.net); everything inside a host is done by its role script in lab/roles, the
same scripts the Vagrant lab runs. In native mode every bridge port gets an XDP_PASS program: veth
delivers a director's XDP_TX or XDP_REDIRECT only to a peer that runs XDP, and a frame that crossed
an XDP port carries the headroom XDP needs, so the director's veth does not copy it (measured: about
25% more HTTP requests/s through the balancer).
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

from xdplb import net

if TYPE_CHECKING:
    from xdplb.datapath import Datapath
    from xdplb.model import Service

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

    def role_args(self, state: Path) -> list[str]:
        """The arguments every role script takes (lab/roles/common.sh)."""
        args = ["--name", self.name, "--number", str(self.number), "--state", str(state)]
        for segment in self.segments:
            args += [f"--{segment}", segment]
        return args + (["--vip"] if self.vip else [])


HOSTS = [Host(h["name"], h["role"], h["number"], tuple(h["segments"]), h.get("vip", False))
         for h in TOPOLOGY["hosts"]]
BY_NAME = {h.name: h for h in HOSTS}

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

    def up(self, xdp: str = "native", progress: Progress = log.info) -> None:
        """Build the lab from nothing (an existing one is taken down first)."""
        if xdp not in ("native", "generic"):
            raise LabError(f"xdp mode must be native or generic, not {xdp}")
        self.down()
        try:
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
            self.state_dir.mkdir(parents=True, exist_ok=True)
            (self.state_dir / "xdp").write_text(xdp)
        except BaseException:
            self.down()
            raise

    def down(self) -> None:
        """Remove every namespace of this lab and every process in them; safe to call any time."""
        for name in [n for n in net.list_netns() if n.startswith(f"{self.prefix}-")]:
            pids = net.namespace_pids(name)
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            _wait_dead(pids)
            net.remove_netns(name)
        shutil.rmtree(self.state_dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            STATE_ROOT.rmdir()  # only when no other lab is left

    def _wire(self, host: Host) -> None:
        net.create_netns(self.ns(host.name))
        with net.in_netns(self.switch):
            for segment in host.segments:
                net.plug(segment, f"{host.name}-{segment}"[:15], f"br-{segment}", self.ns(host.name),
                         host.mac(segment))

    def _configure(self, host: Host) -> None:
        args = host.role_args(self.state_dir / host.name)
        self.exec(host.name, ["bash", str(ROLES / f"{host.role}.sh"), *args], check=True,
                  env={**os.environ, "XDPLB": XDPLB_CMD})

    def _bridge_port_programs(self) -> None:
        self.restore_port_program(*(f"{h.name}-{segment}"[:15] for h in HOSTS for segment in h.segments))

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

    @property
    def xdp_mode(self) -> str:
        path = self.state_dir / "xdp"
        return path.read_text() if path.exists() else "native"

    def services_file(self, host: str) -> Path:
        return self.state_dir / host / "services.json"

    def services(self, host: str) -> list[dict]:
        """The services a director balances, as its driver (demo, test) published them."""
        path = self.services_file(host)
        return json.loads(path.read_text()) if path.exists() else []

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



class Director:
    """A lab director's balancer: a Datapath whose namespace-bound calls (attach, next-hop
    resolution, devmap entries) run inside the director's namespace. Reads go to `dp` directly."""

    def __init__(self, lab: Lab, host: str, dp: Datapath) -> None:
        self.lab, self.host, self.dp = lab, host, dp
        self.mode: str | None = None

    def _inside(self):
        return net.in_netns(self.lab.ns(self.host))

    def attach(self, ifname: str = "front") -> str:
        with self._inside():
            self.mode = self.dp.attach(ifname, self.lab.xdp_mode)
        return self.mode

    def detach(self, ifname: str = "front") -> None:
        with self._inside():
            self.dp.detach(ifname)

    def set_service(self, service: Service) -> dict[str, int]:
        with self._inside():
            written = self.dp.set_service(service)
        self._publish()
        return written

    def reset(self) -> None:
        """No services, no connections."""
        with self._inside():
            for svc in self.dp.services:
                self.dp.remove_service(svc.key)
        self.dp.flush_connections()
        self._publish()

    def close(self) -> None:
        """Detach and free the balancer; works when the lab is already gone too."""
        self.lab.services_file(self.host).unlink(missing_ok=True)
        if self.lab.ns(self.host) in net.list_netns():
            with self._inside():
                self.dp.close()
        else:
            self.dp.close()

    def _publish(self) -> None:
        """Tell `xdplb lab status` what this director balances (until the daemon can say it)."""
        path = self.lab.services_file(self.host)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps([s.model_dump(mode="json") for s in self.dp.services]))
