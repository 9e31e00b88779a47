"""The ``ray`` executor: trials as Ray tasks, on this machine (``ray.init()``) or a cluster (``address``).

Ray already isolates trials in worker processes, retries a task whose worker died and kills
a cancelled one; this adapter maps its outcomes onto trial reasons. The evaluate function is
shipped with cloudpickle, so it must not hold unpicklable state (open sockets, locks, sessions).
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Iterator
from typing import Any

from .executors import Executor, Result, _reason


def _run(fn, config):
    t = time.perf_counter()
    try:
        return fn(config), None, time.perf_counter() - t
    except Exception as e:  # noqa: BLE001 - a bad candidate is a failed trial
        return None, _reason(e), time.perf_counter() - t


def ray_reason(e: BaseException) -> str:
    """Ray's error in one line: its kind and its last words (not the task banner)."""
    lines = [ln.strip() for ln in re.sub(r"\x1b\[[0-9;]*m", "", str(e)).splitlines() if ln.strip()]
    last = next((ln for ln in reversed(lines) if not set(ln) <= set("^~ ")), "")
    return f"ray {type(e).__name__}: {last[:300]}"


class RayExecutor(Executor):
    """Up to ``workers`` trials at once as Ray tasks, each with ``num_cpus``/``num_gpus``/``memory_mb``."""

    name = "ray"

    def __init__(self, workers: int = 2, address: str | None = None, num_cpus: float = 1, num_gpus: float = 0,
                 memory_mb: float | None = None, retries: int = 1):
        self.workers, self.address, self.retries = workers, address, retries
        self.resources: dict[str, Any] = {"num_cpus": num_cpus, "num_gpus": num_gpus}
        if memory_mb:
            self.resources["memory"] = int(memory_mb * 2**20)
        self._remote = None
        self._fn_ref = None
        self._fn = None

    def _start(self, fn) -> None:
        import ray

        if not ray.is_initialized():
            if self.address:
                ray.init(address=self.address, log_to_driver=False)
            else:  # a local Ray imports what this process imports
                env = {"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}}
                ray.init(num_cpus=max(self.workers, 1), include_dashboard=False, log_to_driver=False,
                         runtime_env=env)
        if self._remote is None:
            self._remote = ray.remote(max_retries=self.retries, retry_exceptions=False)(_run)
        if fn is not self._fn:
            self._fn, self._fn_ref = fn, ray.put(fn)

    def map(self, fn, items, timeout) -> Iterator[Result]:
        import ray
        from ray.exceptions import GetTimeoutError, RayError

        self._start(fn)
        queue = list(items)
        running: dict[Any, tuple[str, dict, float]] = {}
        while queue or running:
            while queue and len(running) < self.workers:
                k, c = queue.pop(0)
                ref = self._remote.options(**self.resources).remote(self._fn_ref, c)
                running[ref] = (k, c, time.perf_counter())
            done, _ = ray.wait(list(running), num_returns=1, timeout=0.1)
            for ref in done:
                k, c, t0 = running.pop(ref)
                try:
                    out, reason, dur = ray.get(ref, timeout=0)
                except (RayError, GetTimeoutError) as e:
                    yield k, c, None, ray_reason(e), time.perf_counter() - t0
                    continue
                yield k, c, out, reason, dur
            if timeout is not None:
                for ref, (k, c, t0) in list(running.items()):
                    if time.perf_counter() - t0 > timeout:
                        ray.cancel(ref, force=True)
                        running.pop(ref)
                        yield k, c, None, f"timed out after {timeout:g} s (task cancelled)", time.perf_counter() - t0

    def close(self) -> None:
        """Ray stays up for the process (starting it again costs seconds); ``ray.shutdown()`` ends it."""
