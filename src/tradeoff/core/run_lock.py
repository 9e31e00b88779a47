"""Locks between processes: one process per run directory, and one creator of a store at a time.

Both are ``flock`` locks, so the kernel drops them when their holder dies (``kill -9`` included):
a stale lock file never blocks a resume.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path


class RunLocked(RuntimeError):
    """Another process is running this search; its pid, host and start time are in the message."""


class RunLock:
    """Holds ``<run_dir>/lock`` for as long as this process works on the run."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / "lock"
        self._f = None

    def acquire(self) -> RunLock:
        f = open(self.path, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = _holder(f)
            f.close()
            raise RunLocked(f"run {self.path.parent.name} is in use by {who}; "
                            "wait for it to end (or stop it) before resuming") from None
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                            "started": time.strftime("%Y-%m-%d %H:%M:%S %z")}))
        f.flush()
        self._f = f
        return self

    def release(self) -> None:
        if self._f is not None:
            with contextlib.suppress(OSError):
                self._f.seek(0)
                self._f.truncate()
                fcntl.flock(self._f, fcntl.LOCK_UN)
            self._f.close()
            self._f = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _holder(f) -> str:
    f.seek(0)
    try:
        h = json.loads(f.read().strip())
        return f"pid {h['pid']} on {h['host']}, started {h['started']}"
    except (ValueError, KeyError, TypeError):
        return "another process"


def held_by(run_dir: str | Path) -> str | None:
    """Who is working on the run now (pid, host, start), or None when no live process holds its lock."""
    path = Path(run_dir) / "lock"
    if not path.exists():
        return None
    with open(path) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _holder(f)
        fcntl.flock(f, fcntl.LOCK_UN)
        return None


@contextlib.contextmanager
def file_lock(path: str | Path):
    """Exclusive ``flock`` on ``path`` (created if needed) for the duration of the block."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
