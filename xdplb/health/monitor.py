"""The health monitor: runs every watch's checks on schedule and turns results into up/down.

One thread runs one asyncio loop with a task per watch (a backend of a service under a check). Its
one job is the verdict: what a verdict does to the service (weights, quorum, the sorry server) is
effective.py's, which hears of every change through `on_change`.

The state machine, per watch: a new watch is up (adding a check never takes traffic away before
there is evidence), `fall` failures in a row take it down, `rise` successes in a row bring it back;
anything else (a flapping server when rise and fall are 2 or more) changes nothing. A MISC dynamic
check also gives a weight, and a change of it while up is a change too. Checks of one watch never
overlap: the next is due `interval` after the previous one was due, or at once if that has passed;
start times are rounded up to a grid of 50 ms (a twentieth of the interval when shorter), so checks
due together start together (on_grid says why).

Notify hooks (check.notify) run on every up/down transition, without a shell, one at a time per
watch (so a slow hook cannot let "up" overtake "down"), killed after `hook_timeout`; their output
is logged, their failures are logged and never raised.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from xdplb.checks import HealthCheck
from xdplb.health import misc
from xdplb.health.probe import Checker, IPAddress, Result, Target, make_checker

log = logging.getLogger(__name__)

HOOK_TIMEOUT = 10.0  # seconds a notify hook may run before it is killed
TICK = 0.05          # checks start on a 50 ms grid (a twentieth of the interval at most): see on_grid
STOP_GRACE = 3.0     # seconds stop() waits for hooks still running


@dataclass(frozen=True)
class Watch:
    """One backend of one service under one check."""

    service: str            # the service id (tcp:10.100.0.100:80)
    backend: IPAddress
    target: Target
    check: HealthCheck
    weight: int             # its configured weight (what MISC dynamic exit 0 gives)

    @property
    def key(self) -> tuple[str, IPAddress]:
        return (self.service, self.backend)


@dataclass(frozen=True)
class Health:
    service: str
    backend: IPAddress
    up: bool
    reason: str             # why it is in this state: the last result's reason, and how many in a row
    weight: int | None      # MISC dynamic: the weight it gives; else None
    since: float            # wall-clock time of the last transition (or of the watch's start)
    checked: float          # wall-clock time of the last result (0: none yet)
    last: Result | None
    successes: int          # in a row
    failures: int           # in a row


@dataclass(eq=False)
class _State:
    """A watch as the loop runs it (loop thread only)."""

    watch: Watch
    health: Health
    task: asyncio.Task[None] | None = None
    hook: asyncio.Task[None] | None = None  # its latest notify hook: the next one waits for it
    weight_is_configured: bool = True       # MISC dynamic: the weight is the configured one (exit 0)
    epoch: int = 0


def on_grid(when: float, grid: float) -> float:
    """`when` rounded up to the grid. The checks due in one slot then start in one turn of the
    loop, and their answers come back close together: a turn of the loop (an epoll_wait, the
    timer heap) serves tens of checks rather than one each. At 1,000 checks a second that is a
    third to a half of the monitor's CPU (bench/health.py)."""
    return math.ceil(when / grid - 1e-6) * grid  # a time already on the grid stays (float error)


async def sleep_until(loop: asyncio.AbstractEventLoop, when: float) -> None:
    """asyncio.sleep to an exact loop time: timers of one slot are equal, so they fire together."""
    if when <= loop.time():
        return
    waiter = loop.create_future()
    handle = loop.call_at(when, _wake, waiter)
    try:
        await waiter
    finally:
        handle.cancel()


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class _Broken:
    """Stands for a checker that could not be made: every check fails, saying why (a watch that
    stopped checking would stay up for good)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    async def check(self) -> Result:
        return Result(False, self.reason)

    async def close(self) -> None:
        return None


def _checker(check: HealthCheck, watch: Watch) -> Checker:
    try:
        return make_checker(check, watch.target)
    except Exception as e:
        log.exception("%s %s: cannot make its %s checker", watch.service, watch.backend, check.type)
        return _Broken(f"checker error: {type(e).__name__}: {e}")


def _in_a_row(n: int, what: str) -> str:
    plural = {"success": "successes", "failure": "failures"}[what]
    return f"{n} {what if n == 1 else plural} in a row"


def _initial_weight(watch: Watch) -> int | None:
    return watch.weight if watch.check.dynamic else None


def _initial(watch: Watch, now: float) -> Health:
    """A new watch: up until there is evidence, at its configured weight."""
    return Health(watch.service, watch.backend, True, "not checked yet", _initial_weight(watch), now, 0.0, None, 0, 0)


def next_health(health: Health, watch: Watch, result: Result, now: float) -> Health:
    """The state machine: the health after one more result."""
    check = watch.check
    successes = health.successes + 1 if result.ok else 0
    failures = 0 if result.ok else health.failures + 1
    up, since, reason = health.up, health.since, result.reason
    if up and failures >= check.fall:
        up, since, reason = False, now, f"{result.reason} ({_in_a_row(failures, 'failure')})"
    elif not up and successes >= check.rise:
        up, since, reason = True, now, f"{result.reason} ({_in_a_row(successes, 'success')})"
    elif up != result.ok:
        goal = f"{check.fall} to go down" if up else f"{check.rise} to come up"
        reason = f"{result.reason} ({_in_a_row(max(successes, failures), 'failure' if up else 'success')}, " \
                 f"{goal}; still {'up' if up else 'down'})"
    weight = health.weight
    if check.dynamic and result.ok:
        weight = watch.weight if result.weight is None else result.weight
    return Health(health.service, health.backend, up, reason, weight, since, now, result, successes, failures)


class HealthMonitor:
    def __init__(self, on_change: Callable[[Health], None], *, hook_timeout: float = HOOK_TIMEOUT) -> None:
        self.on_change = on_change
        self.hook_timeout = hook_timeout
        self._lock = threading.Lock()
        self._desired: dict[tuple[str, IPAddress], Watch] = {}
        self._health: dict[tuple[str, IPAddress], Health] = {}  # what states() shows, under the lock
        self._states: dict[tuple[str, IPAddress], _State] = {}   # loop thread only
        self._tasks: set[asyncio.Task[None]] = set()  # every watch task, until it has closed its checker
        self._hooks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # --- the caller's side (any thread) ---

    def start(self) -> HealthMonitor:
        """Starts the loop's thread; it lives in the network namespace of the calling thread (a new
        thread inherits it), and so do the programs it runs."""
        if self._thread is not None:
            raise RuntimeError("the health monitor is already running")
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="xdplb-health", daemon=True)
        self._thread.start()
        ready.wait()
        return self

    def stop(self) -> None:
        """Stops every watch (closing its checker), waits up to STOP_GRACE seconds for running hooks
        (then kills them), and ends the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(STOP_GRACE + 5)
        except Exception:
            log.exception("health monitor: stopping the watches failed")
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        self._loop = self._thread = None

    def __enter__(self) -> HealthMonitor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def watch(self, watches: Iterable[Watch]) -> None:
        """The whole set of watches: new ones begin (after a random warm-up in [0, check.warmup]),
        removed ones stop, one whose check or target changed restarts, keeping its up/down state."""
        desired = {w.key: w for w in watches}
        now = time.time()
        with self._lock:  # states() shows the new set at once; the loop starts and stops the checks
            self._desired = desired
            self._health = {key: self._health.get(key) or _initial(w, now) for key, w in desired.items()}
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._apply)

    def states(self) -> dict[tuple[str, IPAddress], Health]:
        with self._lock:
            return dict(self._health)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """For tests and benchmarks: wait until every watch has a result newer than this call and no
        hook is running; False if that did not happen within `timeout` seconds."""
        start = time.time()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = self.states()
            with self._lock:
                applied = states.keys() == self._desired.keys()
            if applied and all(h.checked >= start for h in states.values()) and not self._hooks:
                return True
            time.sleep(0.01)
        return False

    # --- the loop's side ---

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        loop.call_soon(self._apply)
        loop.call_soon(ready.set)
        try:
            loop.run_forever()
        finally:
            loop.close()

    def _apply(self) -> None:
        with self._lock:
            desired = self._desired
        for key in self._states.keys() - desired.keys():
            self._remove(key)
        for key, watch in desired.items():
            state = self._states.get(key)
            if state is None:
                self._add(watch)
            elif (state.watch.check, state.watch.target) != (watch.check, watch.target):
                self._restart(state, watch)
            elif state.watch != watch:
                self._reweigh(state, watch)

    def _add(self, watch: Watch) -> None:
        with self._lock:
            health = self._health.get(watch.key) or _initial(watch, time.time())
        state = _State(watch, health)
        self._states[watch.key] = state
        self._publish(state)
        self._launch(state)

    def _remove(self, key: tuple[str, IPAddress]) -> None:
        state = self._states.pop(key)
        state.epoch += 1
        if state.task is not None:
            state.task.cancel()

    def _restart(self, state: _State, watch: Watch) -> None:
        """A new check or target: the evidence starts again, the up/down state stays."""
        if state.task is not None:
            state.task.cancel()
        h = state.health
        if watch.check.dynamic and not state.weight_is_configured and h.weight is not None:
            weight: int | None = h.weight  # the weight the old check gave stands until the new one speaks
        else:
            weight, state.weight_is_configured = _initial_weight(watch), True
        state.watch = watch
        state.health = replace(h, reason=f"check changed; {h.reason}", weight=weight, successes=0, failures=0)
        self._publish(state, weight != h.weight and h.up)
        self._launch(state)

    def _reweigh(self, state: _State, watch: Watch) -> None:
        """Only the configured weight changed: MISC dynamic at exit 0 gives the new one."""
        state.watch = watch
        h = state.health
        if watch.check.dynamic and state.weight_is_configured and h.weight != watch.weight:
            state.health = replace(h, weight=watch.weight)
            self._publish(state, h.up)

    def _launch(self, state: _State) -> None:
        state.epoch += 1
        state.task = asyncio.get_running_loop().create_task(
            self._watch(state, state.epoch), name=f"health {state.watch.service} {state.watch.backend}")
        self._tasks.add(state.task)
        state.task.add_done_callback(self._tasks.discard)

    async def _watch(self, state: _State, epoch: int) -> None:
        watch = state.watch
        check = watch.check
        loop = asyncio.get_running_loop()
        grid = min(TICK, check.interval / 20)
        due = on_grid(loop.time() + random.uniform(0, check.warmup), grid)
        await sleep_until(loop, due)
        checker = _checker(check, watch)
        try:
            while True:
                result = await checker.check()
                if state.epoch != epoch:  # replaced while this check ran
                    return
                self._record(state, result)
                # from when it was due, not when the loop got to it: the schedule does not drift
                due = on_grid(max(due + check.interval, loop.time()), grid)
                await sleep_until(loop, due)
        finally:
            await checker.close()

    def _record(self, state: _State, result: Result) -> None:
        before = state.health
        after = next_health(before, state.watch, result, time.time())
        if state.watch.check.dynamic and result.ok:
            state.weight_is_configured = result.weight is None
        state.health = after
        transition = after.up != before.up
        self._publish(state, transition or (after.up and after.weight != before.weight))
        if transition:
            log.info("%s %s: %s, %s", after.service, after.backend, "up" if after.up else "down", after.reason)
            if state.watch.check.notify:
                self._hook(state, [*state.watch.check.notify, after.service, str(after.backend),
                                   "up" if after.up else "down", after.reason])

    def _publish(self, state: _State, changed: bool = False) -> None:
        with self._lock:
            if state.watch.key not in self._desired:
                return  # removed by a watch() the loop has not applied yet
            self._health[state.watch.key] = state.health
        if changed:
            try:
                self.on_change(state.health)
            except Exception:
                log.exception("health monitor: on_change failed for %s %s", state.watch.service,
                              state.watch.backend)

    # --- notify hooks ---

    def _hook(self, state: _State, argv: list[str]) -> None:
        task = asyncio.get_running_loop().create_task(self._run_hook(argv, state.hook))
        state.hook = task
        self._hooks.add(task)
        task.add_done_callback(self._hooks.discard)

    async def _run_hook(self, argv: list[str], previous: asyncio.Task[None] | None) -> None:
        if previous is not None and not previous.done():
            await asyncio.wait([previous])  # its outcome is its own; a cancellation of this one goes on
        try:
            async with asyncio.timeout(self.hook_timeout):
                ran = await misc.run(argv)
        except TimeoutError:
            log.warning("notify hook %s: killed after %g s", argv, self.hook_timeout)
        except OSError as e:
            log.warning("notify hook: %s", misc.cannot_run(argv, e))
        except Exception:
            log.exception("notify hook %s failed", argv)
        else:
            level = logging.INFO if ran.returncode == 0 else logging.WARNING
            log.log(level, "notify hook %s: %s%s", argv, misc.describe(ran.returncode),
                    f", output: {ran.output.decode('utf-8', 'replace').strip()}" if ran.output else "")

    async def _shutdown(self) -> None:
        tasks = set(self._tasks)
        for task in tasks:
            task.cancel()
        self._states.clear()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._hooks:
            _, late = await asyncio.wait(set(self._hooks), timeout=STOP_GRACE)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
