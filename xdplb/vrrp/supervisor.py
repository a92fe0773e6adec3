"""The daemon's side of the speaker: start one when none answers on the control socket (a speaker
left by a previous run of the daemon goes on: its VRRP state, its VIPs and its adverts never stop
for a daemon restart), and tell it which tracked services lost their quorum.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

from xdplb.vrrp.control import SpeakerClient, SpeakerError

log = logging.getLogger(__name__)

START_DEADLINE = 15.0


class Supervisor:
    def __init__(self, config_path: Path, socket_path: Path, log_path: Path, netns: str | None = None) -> None:
        self.config_path, self.log_path, self.netns = config_path, log_path, netns
        self.client = SpeakerClient(socket_path)
        self.process: subprocess.Popen | None = None
        self._down: list[str] | None = None
        self._lock = threading.Lock()

    def ensure(self) -> None:
        """A speaker answers, the one running or one started now (in its own session: a signal to
        the daemon's process group does not reach it)."""
        if self.client.alive():
            log.info("VRRP speaker already running: left as it is")
            return
        cmd = [sys.executable, "-m", "xdplb.cli", "speaker", "-c", str(self.config_path)]
        if self.netns:
            cmd += ["--netns", self.netns]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a") as out:
            self.process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        deadline = time.monotonic() + START_DEADLINE
        while not self.client.alive():
            if self.process.poll() is not None:
                raise RuntimeError(f"the VRRP speaker exited ({self.process.returncode}); see {self.log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the VRRP speaker did not answer in {START_DEADLINE:.0f} s; see {self.log_path}")
            time.sleep(0.05)
        log.info("VRRP speaker started (pid %d)", self.process.pid)

    def services_down(self, down: list[str]) -> None:
        """Tells the speaker which services lost their quorum, when that changed (or it restarted)."""
        with self._lock:
            self.reap()
            if down == self._down:
                return
            try:
                self.client.services_down(down)
                self._down = down
            except SpeakerError as e:
                log.warning("the VRRP speaker was not told the services' health: %s", e)

    def forget(self) -> None:
        """The next services_down is sent even if unchanged (the speaker may have restarted since)."""
        with self._lock:
            self._down = None

    def reap(self) -> None:
        """Collects a started speaker that ended (no zombie is left to the daemon)."""
        if self.process is not None and self.process.poll() is not None:
            log.warning("the VRRP speaker (pid %d) exited %d", self.process.pid, self.process.returncode)
            self.process = None


def shutdown_speaker(socket_path: Path) -> str | None:
    """`xdplb stop --detach`: the speaker hands over (priority 0) and releases its VIPs."""
    client = SpeakerClient(socket_path)
    try:
        pid = client.status()["pid"]
        client.shutdown()
    except SpeakerError:
        return None
    deadline = time.monotonic() + START_DEADLINE
    while client.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    return f"VRRP speaker {pid} stopped"
