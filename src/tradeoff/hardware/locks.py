"""One model timed per device at a time, across threads and processes on this host."""

from __future__ import annotations

import contextlib
import re
import threading
from pathlib import Path

from ..core.run_lock import file_lock

_THREAD_LOCKS: dict[str, threading.Lock] = {}
_GUARD = threading.Lock()


def _lock_dir() -> Path:
    from ..core.paths import tradeoff_home

    d = tradeoff_home() / "locks"
    d.mkdir(parents=True, exist_ok=True)
    return d


@contextlib.contextmanager
def device_lock(device: str):
    """Hold the device exclusively: a thread lock in this process, an flock between processes."""
    with _GUARD:
        lock = _THREAD_LOCKS.setdefault(device, threading.Lock())
    with lock, file_lock(_lock_dir() / (re.sub(r"[^A-Za-z0-9_.-]+", "_", device) + ".lock")):
        yield
