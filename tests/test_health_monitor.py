"""The health monitor against real servers: exact fall and rise counts, a flapping server that
never changes state, notify hooks and their arguments, MISC dynamic weights, watch() adding,
removing and changing watches, checks that never overlap, the source address, stop(), and a
monitor started inside a network namespace checking from there."""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from tests.test_health_checkers import SECOND, HttpServer, TcpListener, closed_port, wait_for
from xdplb.checks import HealthCheck
from xdplb.health.monitor import Health, HealthMonitor, Watch, next_health
from xdplb.health.probe import Result, Target

pytestmark = pytest.mark.health

LOCAL = ipaddress.ip_address("127.0.0.1")
SERVICE = "tcp:10.100.0.100:80"
FAST = {"interval": 0.05, "timeout": 1.0}


class Changes:
    """What on_change was told, in order (it is called from the monitor's thread)."""

    def __init__(self) -> None:
        self.seen: list[Health] = []
        self._lock = threading.Lock()

    def __call__(self, health: Health) -> None:
        with self._lock:
            self.seen.append(health)

    def of(self, backend: ipaddress.IPv4Address = LOCAL) -> list[Health]:
        with self._lock:
            return [h for h in self.seen if h.backend == backend]


@pytest.fixture
def changes() -> Changes:
    return Changes()


@pytest.fixture
def monitor(changes: Changes) -> Iterator[HealthMonitor]:
    m = HealthMonitor(changes).start()
    yield m
    m.stop()


def watch(port: int, backend: ipaddress.IPv4Address = LOCAL, weight: int = 1, **check: object) -> Watch:
    return Watch(SERVICE, backend, Target(LOCAL, port), HealthCheck(**{**FAST, **check}), weight)


def state(monitor: HealthMonitor, backend: ipaddress.IPv4Address = LOCAL) -> Health:
    return monitor.states()[(SERVICE, backend)]


@pytest.mark.unit
def test_state_machine_counts():
    w = Watch(SERVICE, LOCAL, Target(LOCAL, 80), HealthCheck(type="tcp", rise=2, fall=3), 1)
    h = Health(SERVICE, LOCAL, True, "new", None, 0.0, 0.0, None, 0, 0)
    ok, bad = Result(True, "fine"), Result(False, "refused")
    ups = []
    for i, r in enumerate([bad, bad, ok, bad, bad, bad, ok, bad, ok, ok]):
        h = next_health(h, w, r, float(i))
        ups.append(h.up)
    assert ups == [True, True, True, True, True, False, False, False, False, True]
    assert h.reason == "fine (2 successes in a row)" and h.since == 9.0


def test_fall_and_rise_exactly(monitor, changes):
    listener = TcpListener()
    try:
        monitor.watch([watch(listener.port, type="tcp", rise=2, fall=3)])
        wait_for(lambda: state(monitor).successes >= 3)
        assert state(monitor).up and not changes.of()
        listener.stop()
        down = wait_for(lambda: changes.of())[0]
        assert (down.up, down.failures, down.successes) == (False, 3, 0)
        assert down.reason == "connect: Connection refused (3 failures in a row)"
        assert down.last == Result(False, "connect: Connection refused", elapsed=down.last.elapsed)
        listener.start()
        up = wait_for(lambda: changes.of()[1:])[0]
        assert (up.up, up.successes, up.failures) == (True, 2, 0)
        assert up.reason.endswith("(2 successes in a row)") and up.since >= down.since
    finally:
        listener.stop()


def test_a_new_watch_starts_up_and_a_dead_backend_goes_down(monitor, changes):
    monitor.watch([watch(closed_port(), type="tcp", fall=2)])
    first = state(monitor)
    assert (first.up, first.reason, first.last, first.checked) == (True, "not checked yet", None, 0.0)
    down = wait_for(lambda: changes.of())[0]
    assert (down.up, down.failures) == (False, 2)


def test_flapping_never_changes_state(monitor, changes):
    server = HttpServer()
    server.mode = "alternate"
    try:
        monitor.watch([watch(server.port, type="http", rise=2, fall=2)])
        wait_for(lambda: server.requests >= 20)
        h = state(monitor)
        assert h.up and changes.of() == []
        assert "still up" in h.reason or h.last.ok
    finally:
        server.close()


def test_notify_hook_arguments(monitor, tmp_path):
    out = tmp_path / "hook.out"
    hook = [sys.executable, "-c", f"import sys; open({str(out)!r}, 'a').write('|'.join(sys.argv[1:]) + '\\n')"]
    listener = TcpListener()
    try:
        monitor.watch([watch(listener.port, type="tcp", rise=1, fall=1, notify=hook)])
        wait_for(lambda: state(monitor).successes >= 1)
        listener.stop()
        wait_for(lambda: out.exists())
        listener.start()
        wait_for(lambda: len(out.read_text().splitlines()) == 2)
    finally:
        listener.stop()
    down, up = (line.split("|") for line in out.read_text().splitlines())
    assert down == [SERVICE, "127.0.0.1", "down", "connect: Connection refused (1 failure in a row)"]
    assert up[:3] == [SERVICE, "127.0.0.1", "up"] and up[3].endswith("(1 success in a row)")


def test_hooks_run_in_order_and_stop_waits_for_them(changes, tmp_path):
    """A slow hook for "down" still ends before the hook for "up" starts, and stop() lets the last
    one finish."""
    out = tmp_path / "hook.out"
    hook = ["/bin/sh", "-c", f'sleep 0.3; echo "$3" >> {out}', "hook"]
    listener = TcpListener()
    monitor = HealthMonitor(changes).start()
    try:
        monitor.watch([watch(listener.port, type="tcp", rise=1, fall=1, notify=hook)])
        wait_for(lambda: state(monitor).successes >= 1)
        listener.stop()
        wait_for(lambda: changes.of())
        listener.start()
        wait_for(lambda: len(changes.of()) == 2)
    finally:
        monitor.stop()
        listener.stop()
    assert out.read_text().split() == ["down", "up"]


def test_hook_timeout_and_missing_hook_are_logged(changes, caplog):
    monitor = HealthMonitor(changes, hook_timeout=0.2).start()
    try:
        monitor.watch([watch(closed_port(), type="tcp", fall=1, notify=["/bin/sh", "-c", "sleep 30", "hook"]),
                       watch(closed_port(), backend=SECOND, type="tcp", fall=1, notify=["/nonexistent/hook"])])
        assert monitor.wait_idle()
        wait_for(lambda: len(changes.seen) == 2)
        wait_for(lambda: "killed after 0.2 s" in caplog.text and "/nonexistent/hook: No such file" in caplog.text)
    finally:
        monitor.stop()


def test_misc_dynamic_weight_changes_are_reported(monitor, changes, tmp_path):
    code = tmp_path / "code"
    code.write_text("5")
    check = {"type": "misc", "command": ["/bin/sh", "-c", f"exit $(cat {code})"], "dynamic": True}
    monitor.watch([watch(0, weight=7, **check)])
    assert state(monitor).weight == 7  # the configured weight until a check says otherwise
    assert wait_for(lambda: changes.of())[0].weight == 3
    code.write_text("0")
    assert wait_for(lambda: changes.of()[1:])[0].weight == 7
    monitor.watch([watch(0, weight=9, **check)])  # the configured weight itself changes
    assert wait_for(lambda: changes.of()[2:])[0].weight == 9
    code.write_text("1")
    down = wait_for(lambda: [h for h in changes.of() if not h.up])[0]
    assert down.reason == "exit 1 (2 failures in a row)"


def test_watch_add_remove_change(monitor, changes):
    a, b = HttpServer(), TcpListener()
    try:
        monitor.watch([watch(a.port, type="http")])
        wait_for(lambda: a.requests >= 3)
        monitor.watch([watch(a.port, type="http"), watch(b.port, backend=SECOND, type="tcp")])  # add
        wait_for(lambda: b.accepted >= 3)
        assert set(monitor.states()) == {(SERVICE, LOCAL), (SERVICE, SECOND)}
        monitor.watch([watch(b.port, backend=SECOND, type="tcp")])  # remove
        assert set(monitor.states()) == {(SERVICE, SECOND)}
        wait_for(lambda: a.open == 0)  # its kept connection closed
        requests = a.requests
        time.sleep(0.3)
        assert a.requests == requests  # and its checks stopped
        # a changed check restarts the watch and keeps its state: down, it needs `rise` successes
        monitor.watch([watch(closed_port(), backend=SECOND, type="tcp", fall=1)])
        wait_for(lambda: not state(monitor, SECOND).up)
        monitor.watch([watch(b.port, backend=SECOND, type="tcp", rise=3)])
        h = state(monitor, SECOND)
        assert not h.up
        up = wait_for(lambda: changes.of(SECOND)[1:])[0]
        assert (up.up, up.successes) == (True, 3)
        assert [x.up for x in changes.of(SECOND)] == [False, True]
    finally:
        a.close()
        b.stop()


def test_checks_never_overlap_and_time_out(monitor):
    server = HttpServer()
    server.mode, server.delay = "slow", 0.15
    try:
        monitor.watch([watch(server.port, type="http", interval=0.05, timeout=1.0)])
        wait_for(lambda: server.requests >= 5)
        assert server.most_active == 1 and server.connections == 1
        monitor.watch([watch(server.port, type="http", interval=0.05, timeout=0.1, fall=1)])
        h = wait_for(lambda: not state(monitor).up and state(monitor))
        assert h.reason == "timed out after 0.1 s (1 failure in a row)"
    finally:
        server.close()


def test_source_address(monitor):
    server = HttpServer()
    try:
        monitor.watch([watch(server.port, type="http", source=SECOND)])
        wait_for(lambda: server.requests >= 2)
        assert set(server.peers) == {"127.0.0.2"}
    finally:
        server.close()


def test_stop_closes_kept_connections(changes):
    server = HttpServer()
    monitor = HealthMonitor(changes).start()
    try:
        monitor.watch([watch(server.port, type="http")])
        wait_for(lambda: server.requests >= 2)
    finally:
        monitor.stop()
    try:
        wait_for(lambda: server.open == 0)
        assert monitor.states()[(SERVICE, LOCAL)].up
    finally:
        server.close()


def test_monitor_lives_in_the_namespace_it_was_started_in(changes):
    """Started from inside a namespace, its checks leave from there: a server only that namespace
    has is up, the same port in the root namespace is not what it reaches."""
    from xdplb.net import create_netns, in_netns, remove_netns

    name = f"xdplbt-health-{os.getpid()}"
    remove_netns(name)
    create_netns(name)
    try:
        with in_netns(name):
            server = HttpServer()
            monitor = HealthMonitor(changes).start()
        try:
            monitor.watch([watch(server.port, type="http", fall=1)])
            wait_for(lambda: server.requests >= 2)
            assert state(monitor).up and not changes.seen
            with socket.socket() as s:  # the root namespace has no such server
                assert s.connect_ex(("127.0.0.1", server.port)) != 0
        finally:
            monitor.stop()
            server.close()
    finally:
        remove_netns(name)


def test_wait_idle_and_states_snapshot(monitor):
    listener = TcpListener()
    try:
        monitor.watch([watch(listener.port, type="tcp")])
        assert monitor.wait_idle(5)
        h = state(monitor)
        assert h.checked > 0 and h.last.ok
    finally:
        listener.stop()
