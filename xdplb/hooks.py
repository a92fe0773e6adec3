"""Operator hooks (notify, quorum up/down): a program and its arguments, never through a shell, run
in the background with a time limit; what it says and how it ends go to the log."""

from __future__ import annotations

import logging
import subprocess
import threading

log = logging.getLogger(__name__)

TIMEOUT_S = 10.0


def run(argv: list[str], timeout: float = TIMEOUT_S) -> threading.Thread:
    thread = threading.Thread(target=_run, args=(argv, timeout), name="xdplb-hook", daemon=True)
    thread.start()
    return thread


def _run(argv: list[str], timeout: float) -> None:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        log.error("hook %s killed after %.0f s", argv, timeout)
        return
    except OSError as e:
        log.error("hook %s could not run: %s", argv, e)
        return
    output = (proc.stdout + proc.stderr).strip()[-2000:]
    if proc.returncode:
        log.error("hook %s exited %d: %s", argv, proc.returncode, output)
    else:
        log.info("hook %s done%s", argv, f": {output}" if output else "")
