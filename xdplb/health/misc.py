"""MISC check (keepalived MISC_CHECK): a program's exit code is the verdict.

Exit 0 is up, anything else down; with `dynamic` (keepalived misc_dynamic) 0 is up at the
configured weight, 1 down, and 2-255 up with weight code-2. The program runs without a shell, in a
session of its own, so a check past its timeout kills the program and whatever it started. Its
output (stdout and stderr, the first 4 kB) is logged at debug level.

`run()` also runs the monitor's notify hooks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass

from xdplb.health.probe import BaseChecker, CheckFailed, Result

log = logging.getLogger(__name__)

MAX_OUTPUT = 4096


@dataclass(frozen=True)
class Ran:
    returncode: int  # negative: killed by that signal
    output: bytes    # stdout and stderr, the first MAX_OUTPUT bytes


def _drain(loop: asyncio.AbstractEventLoop, fd: int, into: bytearray) -> None:
    """Read what the pipe holds: the first MAX_OUTPUT bytes kept, the rest read and dropped (so
    the program never blocks on a full pipe)."""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return
        if not chunk:
            loop.remove_reader(fd)
            return
        if len(into) < MAX_OUTPUT:
            into += chunk[:MAX_OUTPUT - len(into)]


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: the group id is its pid


async def run(argv: Sequence[str]) -> Ran:
    """Run a program (no shell) to its end; OSError when it cannot start. Cancelled (the caller's
    timeout), its process group is killed and reaped before the cancellation goes on.

    Its output goes to a pipe of our own rather than asyncio's: asyncio's wait() also waits for
    the pipe to close, which a child the program left running in the background would hold open."""
    loop = asyncio.get_running_loop()
    read_end, write_end = os.pipe()
    try:
        os.set_blocking(read_end, False)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=write_end, stderr=write_end,
                start_new_session=True)
        finally:
            os.close(write_end)
        output = bytearray()
        loop.add_reader(read_end, _drain, loop, read_end, output)
        try:
            code = await proc.wait()
        except BaseException:
            _kill_group(proc)
            with contextlib.suppress(ProcessLookupError):
                await proc.wait()
            raise
        _drain(loop, read_end, output)  # what it wrote last
        return Ran(code, bytes(output))
    finally:
        loop.remove_reader(read_end)
        os.close(read_end)


def describe(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit {code}"


def cannot_run(argv: Sequence[str], e: OSError) -> str:
    return f"cannot run {argv[0]}: {os.strerror(e.errno) if e.errno else e}"


class MiscChecker(BaseChecker):
    async def probe(self) -> Result:
        argv = self.config.command or []
        try:
            ran = await run(argv)
        except OSError as e:
            raise CheckFailed(cannot_run(argv, e)) from None
        if ran.output and log.isEnabledFor(logging.DEBUG):
            log.debug("misc check %s of %s: %s: %r", argv[0], self.target, describe(ran.returncode), ran.output)
        return self.verdict(ran.returncode)

    def verdict(self, code: int) -> Result:
        if code == 0:
            return Result(True, "exit 0")
        if self.config.dynamic and 2 <= code <= 255:
            return Result(True, f"exit {code}: weight {code - 2}", weight=code - 2)
        return Result(False, describe(code))
