"""The persisted desired state: it reads back equal, each save numbers it one more, a corrupt file is
reported and left alone, and a process killed at any moment of a save leaves a complete state."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from xdplb.model import Service, Timeouts
from xdplb.store import STATE_FILE, State, Store, StoreError

REPO = Path(__file__).resolve().parent.parent


def _state(n: int = 3, weight: int = 1) -> State:
    return State(timeouts=Timeouts(udp=30), services=[
        Service(protocol="tcp", vip=f"10.100.{i // 250}.{i % 250 + 1}", port=80, scheduler="mh",
                backends=[{"address": f"10.200.{i % 250}.{j}", "weight": weight} for j in range(1, 9)])
        for i in range(n)])


@pytest.mark.unit
def test_round_trip_and_versions(tmp_path: Path):
    store = Store(tmp_path / "lb1")
    assert store.load() is None
    state = _state()
    assert [store.save(state) for _ in range(3)] == [1, 2, 3]
    loaded = store.load()
    assert loaded == state.model_copy(update={"version": 3})
    assert loaded.services[0].backends[7].address.exploded == "10.200.0.8"
    again = Store(tmp_path / "lb1")  # a restarted daemon goes on numbering
    assert again.save(State()) == 4
    assert again.load() == State(version=4)
    assert (tmp_path / "lb1").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "lb1" / STATE_FILE).stat().st_mode & 0o777 == 0o600
    assert os.listdir(tmp_path / "lb1") == [STATE_FILE]


@pytest.mark.unit
def test_state_refuses_colliding_services():
    svc = Service(protocol="tcp", vip="10.100.0.100", port=80)
    with pytest.raises(ValidationError, match=r"same key as services\[0\]"):
        State(services=[svc, svc])


@pytest.mark.unit
@pytest.mark.parametrize(("content", "message"), [
    (b"", "Invalid JSON"),
    (b'{"version": 3, "services": [', "Invalid JSON"),
    (b"\xff\xfe", "Invalid JSON"),
    (b"[]", "Input should be an object"),
    (b'{"version": 3, "colour": "red"}', "colour: Extra inputs are not permitted"),
    (b'{"version": 3, "services": [{"protocol": "tcp", "vip": "10.0.0.1", "port": 80, '
     b'"backends": [{"address": "10.0.0.2", "weight": 70000}]}]}', "services.0.backends.0.weight"),
])
def test_corrupt_file_is_reported_and_left(tmp_path: Path, content: bytes, message: str):
    (tmp_path / STATE_FILE).write_bytes(content)
    store = Store(tmp_path)
    with pytest.raises(StoreError, match=message) as info:
        store.load()
    assert str(tmp_path / STATE_FILE) in str(info.value)
    assert "left as it is" in str(info.value)
    with pytest.raises(StoreError):  # saving over it would lose it, and every service with it
        store.save(_state())
    assert (tmp_path / STATE_FILE).read_bytes() == content


@pytest.mark.unit
def test_leftover_temp_file_is_ignored_and_removed(tmp_path: Path):
    store = Store(tmp_path)
    store.save(_state())
    leftover = tmp_path / f".{STATE_FILE}.abc123.tmp"
    leftover.write_text('{"version": 9, "serv')
    assert Store(tmp_path).load().version == 1
    assert not leftover.exists()


def _saver(state_dir: Path, out: int, states: list[State]) -> None:
    """A forked child's loop: save the two states in turn, told apart by their backends' weight
    (version % 2 + 1) so a state read back must be whole and match its own version; print each
    version once save returned. It never returns: it is killed."""
    store = Store(state_dir)
    current = store.load()
    version = current.version if current else 0
    while True:
        version = store.save(states[(version + 1) % 2])
        os.write(out, f"{version}\n".encode())  # one write of a few bytes: atomic on a pipe


def _assert_whole(state: State | None, at_least: int) -> None:
    assert state is not None
    assert state.version >= at_least
    assert len(state.services) == 500
    weights = {b.weight for svc in state.services for b in svc.backends}
    assert weights == {state.version % 2 + 1}, f"version {state.version} holds another state's services"


@pytest.mark.daemon
def test_killed_at_random_moments_leaves_a_whole_state(tmp_path: Path):
    """Forked children (the states are built once) saving in a loop, SIGKILLed at random moments."""
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    states = [_state(500, weight=1), _state(500, weight=2)]
    interrupted = 0
    for kill in range(30):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never back into pytest
            try:
                os.close(r)
                _saver(tmp_path, w, states)
            finally:
                os._exit(1)
        os.close(w)
        with os.fdopen(r) as out:
            first = out.readline()  # one save done: the kill falls among the next ones
            assert first, f"the child died before saving (kill {kill})"
            time.sleep(rng.uniform(0, 0.05))  # a save of 500 services takes about 10 ms here
            os.kill(pid, signal.SIGKILL)
            assert os.waitpid(pid, 0)[1] == signal.SIGKILL
            durable = int((first + out.read()).split()[-1])  # the last version a save returned
        interrupted += any(name.endswith(".tmp") for name in os.listdir(tmp_path))
        state = Store(tmp_path).load()
        _assert_whole(state, durable)
        assert state.version <= durable + 1, f"seed {seed}"
        assert os.listdir(tmp_path) == [STATE_FILE]
    print(f"30 kills (seed {seed}), {interrupted} between a temporary file's creation and its rename, "
          f"last version {durable}")


# A fresh interpreter saves `saves` states. XDPLB_TEST_DIE_BEFORE_RENAME makes it kill itself where the
# rename would be, after the temporary file was written and fsynced (a hook of this script, not of the library).
CHILD = """
import os, signal, sys
from tests.test_store import _state
from xdplb.store import Store

if os.environ.get("XDPLB_TEST_DIE_BEFORE_RENAME"):
    os.replace = lambda src, dst: os.kill(os.getpid(), signal.SIGKILL)
store = Store(sys.argv[1])
for _ in range(int(sys.argv[2])):
    print(store.save(_state(500, weight=2)), flush=True)
"""


def _child(state_dir: Path, saves: int, die_before_rename: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if die_before_rename:
        env["XDPLB_TEST_DIE_BEFORE_RENAME"] = "1"
    return subprocess.run([sys.executable, "-c", CHILD, str(state_dir), str(saves)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.daemon
def test_killed_between_write_and_rename_keeps_the_old_state(tmp_path: Path):
    assert _child(tmp_path, saves=2).stdout.split() == ["1", "2"]
    died = _child(tmp_path, saves=1, die_before_rename=True)
    assert died.returncode == -signal.SIGKILL
    assert died.stdout == ""
    (tmp,) = (p for p in tmp_path.iterdir() if p.name != STATE_FILE)
    assert json.loads(tmp.read_text())["version"] == 3  # the new state was whole, only not renamed yet
    store = Store(tmp_path)
    state = store.load()
    assert state.version == 2
    assert {b.weight for svc in state.services for b in svc.backends} == {2}
    assert len(state.services) == 500
    assert not tmp.exists()
    assert store.save(State()) == 3
