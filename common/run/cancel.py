"""One process-wide "stop now" flag for work running in worker threads.

Why: Ctrl+C and SIGTERM reach only the main thread. Jobs that workers are waiting on (a
ComfyUI clip may take ten minutes) would otherwise run to their end before the script can
exit; a waiting loop that checks this flag cancels its job on the server and stops at once.
"""
from __future__ import annotations

import threading

_stop = threading.Event()


def request_stop() -> None:
    """Ask every waiting loop in this process to give up its job."""
    _stop.set()


def stop_requested() -> bool:
    return _stop.is_set()


def clear() -> None:
    """For a process that goes on after an interrupted batch (tests running scripts in-process)."""
    _stop.clear()
