"""The persisted desired state: what the reconciler makes the data plane hold, kept across restarts.

One JSON file, `<state_dir>/state.json`, replaced whole on each save: written to a temporary file in
the same directory, fsynced, renamed over the old one, then the directory fsynced. rename(2) is atomic,
so a crash at any moment leaves the old file or the new one, complete; a temporary file a crash left
behind is never read, and is removed. Each save numbers the state one more than the last (1 first).

A state file that does not read back (bad JSON, a state that fails validation) stops load and save
with StoreError and is left in place for inspection: starting from an empty state instead would
remove every service from the data plane.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from xdplb.config import ServiceList
from xdplb.model import Timeouts

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
_TMP_PREFIX = f".{STATE_FILE}."
_TMP_SUFFIX = ".tmp"


class StoreError(ValueError):
    """The state file does not read back; it is left as it is."""


class State(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(0, ge=0, description="set by Store.save: one more than the last saved (0 = never saved)")
    services: ServiceList = []
    timeouts: Timeouts = Timeouts()
    checks: dict = Field({}, description="unused (checks are part of the services); state files of earlier "
                         "versions have it")
    ha: dict | None = Field(None, description="unused (HA is the configuration file's ha section); state files "
                            "of earlier versions have it")


class Store:
    """One director's desired state on disk. Thread safe; one process writes a state directory."""

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(state_dir)
        self.path = self.dir / STATE_FILE
        self._version: int | None = None  # the last version saved or loaded; None = not read yet
        self._lock = threading.Lock()

    def load(self) -> State | None:
        """The last saved state, None when nothing was ever saved."""
        with self._lock:
            return self._load()

    def save(self, state: State) -> int:
        """Persist the state durably (its version is replaced by the next number) and return the version."""
        with self._lock:
            if self._version is None:
                self._load()  # learn the version; a corrupt file stops here, untouched
            version = (self._version or 0) + 1
            data = state.model_copy(update={"version": version}).model_dump_json(indent=1)
            self._version = None  # unknown again should the write fail half way
            self._write(data.encode())
            self._version = version
        log.debug("saved state version %d (%d services) to %s", version, len(state.services), self.path)
        return version

    def _load(self) -> State | None:
        self._remove_leftovers()
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            self._version = 0
            return None
        try:
            state = State.model_validate_json(raw)
        except ValidationError as e:
            problems = "; ".join(f"{_dotted(err['loc'])}{err['msg']}" for err in e.errors()[:3])
            more = f" (and {e.error_count() - 3} more)" if e.error_count() > 3 else ""
            raise StoreError(f"{self.path} is not a valid state: {problems}{more}. It is left as it is for "
                             "inspection; move it away to start from an empty state") from None
        self._version = state.version
        return state

    def _write(self, data: bytes) -> None:
        self._make_dir()
        fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, suffix=_TMP_SUFFIX, dir=self.dir)  # mode 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())  # the content is on disk before the name points at it
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        _fsync_dir(self.dir)  # the rename itself is on disk

    def _make_dir(self) -> None:
        if not self.dir.is_dir():
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            _fsync_dir(self.dir.parent)

    def _remove_leftovers(self) -> None:
        """Temporary files of saves a crash interrupted: never renamed, so never the state."""
        if not self.dir.is_dir():
            return
        for tmp in self.dir.glob(f"{_TMP_PREFIX}*{_TMP_SUFFIX}"):
            log.warning("removing %s, left by an interrupted save", tmp)
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _dotted(loc: tuple[str | int, ...]) -> str:
    text = ".".join(str(part) for part in loc)
    return f"{text}: " if text else ""
