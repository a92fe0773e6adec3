"""Serves the REST API from inside the daemon: uvicorn in a thread of its own, on loopback TCP or a
Unix socket, with the bearer token read from (or first written to) a 0600 file."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import stat
import threading
import time
from pathlib import Path

import uvicorn

log = logging.getLogger(__name__)


class TokenFileError(ValueError):
    """The token file cannot be used."""


def load_token(path: Path) -> str:
    """The token in `path`; a new random one is written there (mode 0600) when the file is missing.
    A file others may read or write is refused, as ssh refuses such a key."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_token(path)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(32) + "\n")
    log.info("wrote a new API token to %s", path)
    return _read_token(path)


def _read_token(path: Path) -> str:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise TokenFileError(f"{path} has mode {mode:04o}: others may read the API token; chmod 600 it")
    token = path.read_text().strip()
    if len(token) < 16:
        raise TokenFileError(f"{path}: the token must be at least 16 characters")
    return token


class ApiServer:
    def __init__(self, app: object, listen: str) -> None:
        self.listen = listen
        if listen.startswith("unix:"):
            self.socket: Path | None = Path(listen[5:])
            config = uvicorn.Config(app, uds=str(self.socket), log_level="warning", lifespan="off")
        else:
            self.socket = None
            host, _, port = listen.rpartition(":")
            config = uvicorn.Config(app, host=host.strip("[]"), port=int(port), log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="xdplb-api", daemon=True)

    def start(self, timeout: float = 10.0) -> ApiServer:
        if self.socket:
            self.socket.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                self.socket.unlink()  # left by a killed daemon
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise OSError(f"the API could not listen on {self.listen} (see the log)")
            time.sleep(0.02)
        if self.socket:
            self.socket.chmod(0o600)
        log.info("API listening on %s", self.listen)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        if self.socket:
            with contextlib.suppress(FileNotFoundError):
                self.socket.unlink()
