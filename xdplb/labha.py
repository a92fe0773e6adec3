"""The lab's HA tooling, shared by the HA end-to-end tests and bench/failover.py: who holds the VIPs
and who speaks VRRP for them, and keepalived (2.2.7, VRRP only) as the other speaker, in a lab
director's namespace, for interop and as the baseline.

A lab brought up with `ha=True` gives no director the VIPs: the speakers move them. A director's
VRRP state comes from its xdplb speaker (`vrrp_state`) or, for keepalived, from its console log
(`Keepalived.state`); that it holds the VIP, from its namespace (`holds_vip`); where the traffic
goes, from the router's neighbour entry for the VIP (`router_mac_for_vip` against `mac`).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time

from xdplb import net
from xdplb.lab import BY_NAME, VIP4, VIP6, Director, Lab, LabError, _wait_dead, alive
from xdplb.vrrp.control import SpeakerError

KEEPALIVED = shutil.which("keepalived") or "/usr/sbin/keepalived"
VRID = 51          # the lab's virtual router (labclients.ha_settings runs it too)
LOG_TAIL = 40      # lines of keepalived's log in an error

KEEPALIVED_CONF = """\
global_defs {{
    router_id {host}
    vrrp_version 3
}}

vrrp_instance VI_1 {{
    state BACKUP
    interface front
    virtual_router_id {vrid}
    priority {priority}
    advert_int {interval}
    virtual_ipaddress {{
        {vip4}/32
    }}
    virtual_ipaddress_excluded {{
        {vip6}/128
    }}
}}
"""


def vrrp_state(director: Director) -> str | None:
    """Its VRRP state, None while no speaker answers (a dead host)."""
    try:
        return director.vrrp()["state"]
    except SpeakerError:
        return None


def holds_vip(lab: Lab, host: str) -> bool:
    """Whether `host` has the IPv4 VIP on its front interface."""
    with net.in_netns(lab.ns(host)):
        return f"{VIP4}/32" in net.addresses("front")


def router_mac_for_vip(lab: Lab) -> str | None:
    """The MAC the router sends the VIP's traffic to."""
    parts = lab.exec("router", ["ip", "neigh", "show", VIP4, "dev", "front"]).stdout.split()
    return parts[parts.index("lladdr") + 1] if "lladdr" in parts else None


def mac(host: str) -> str:
    """A lab host's front MAC."""
    return BY_NAME[host].mac("front")


class Keepalived:
    """keepalived (VRRP only, VRRPv3) in the foreground on a lab director: the lab's instance VI_1
    (VRID `vrid` on front, VIP4/32 advertised, VIP6/128 excluded), its configuration, pid files and
    console log (appended across runs) under the host's state directory.

    It runs in a session of its own, its VRRP child in the same process group: kill() ends both at
    once (SIGKILL to the parent alone would make the child stop gracefully, by PR_SET_PDEATHSIG)."""

    def __init__(self, lab: Lab, host: str, priority: int, interval: float = 0.1, vrid: int = VRID) -> None:
        self.lab, self.host = lab, host
        self.priority, self.interval, self.vrid = priority, interval, vrid
        self.dir = lab.state_dir / host / "keepalived"
        self.conf = self.dir / "keepalived.conf"
        self.log_path = self.dir / "keepalived.log"
        self.pid_file, self.vrrp_pid_file = self.dir / "keepalived.pid", self.dir / "vrrp.pid"
        self.proc: subprocess.Popen | None = None
        self.child: int | None = None  # the VRRP process
        self.started_at = 0            # this run's first byte in the log

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def config(self) -> str:
        """keepalived.conf, from the current priority, advert interval and VRID."""
        return KEEPALIVED_CONF.format(host=self.host, vrid=self.vrid, priority=self.priority,
                                      interval=self.interval, vip4=VIP4, vip6=VIP6)

    def start(self, timeout: float = 10.0) -> None:
        """Starts it and waits for "Startup complete" and the VRRP child's pid file; LabError (with the
        log's tail) when it exits or does not get there within `timeout`."""
        if self.running:
            raise LabError(f"keepalived already runs on {self.host}")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(self.config())
        for path in (self.pid_file, self.vrrp_pid_file):
            path.unlink(missing_ok=True)
        self.started_at = self.mark()
        cmd = [KEEPALIVED, "--vrrp", "--dont-fork", "--log-console", "--log-detail", "--no-syslog",
               "--use-file", str(self.conf), "--pid", str(self.pid_file), "--vrrp_pid", str(self.vrrp_pid_file)]
        with self.log_path.open("a") as out:
            self.proc = self.lab.popen(self.host, cmd, stdin=subprocess.DEVNULL, stdout=out,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while "Startup complete" not in self.log() or not self.vrrp_pid_file.exists():
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.kill()
                raise LabError(f"keepalived on {self.host} exited ({code}):\n{self.tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise LabError(f"keepalived on {self.host} did not start in {timeout:g} s:\n{self.tail()}")
            time.sleep(0.02)
        if int(self.pid_file.read_text()) != self.proc.pid:
            self.kill()
            raise LabError(f"ip netns exec did not exec keepalived on {self.host}")
        self.child = int(self.vrrp_pid_file.read_text())

    def terminate(self) -> None:
        """SIGTERM, as an init system stops it, without waiting: the VRRP child advertises priority 0
        and removes the VIPs."""
        if self.running:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 10.0) -> None:
        """terminate(), and waits for parent and VRRP child to end (kill() after `timeout`)."""
        self.terminate()
        if self.proc is not None:
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._child_gone()

    def kill(self) -> None:
        """SIGKILL to parent and VRRP child at once, as a crash: no priority 0, the VIPs left where
        they are."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._child_gone()

    def _child_gone(self) -> None:
        if self.child is None:
            return
        _wait_dead([self.child])
        if alive(self.child):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.child, signal.SIGKILL)
        self.child = None

    def mark(self) -> int:
        """Where the log ends now, for log(since)."""
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def log(self, since: int | None = None) -> str:
        """What it logged since `since` (a mark()), by default since its last start."""
        if not self.log_path.exists():
            return ""
        return self.log_path.read_bytes()[self.started_at if since is None else since:].decode(errors="replace")

    def tail(self, lines: int = LOG_TAIL) -> str:
        """The last lines it logged since its last start."""
        return "\n".join(self.log().splitlines()[-lines:])

    def state(self) -> str | None:
        """The state it last entered (this run), lower case; None when it is not running."""
        found = re.findall(r"\(VI_1\) Entering (\w+) STATE", self.log())
        return found[-1].lower() if self.running and found else None
