"""Executors: where a batch of trials is evaluated (in this process, on threads, in processes, on Ray)."""

from __future__ import annotations

import abc
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

Result = tuple[str, dict, Any, "str | None", float]   # key, config, output, failure reason, seconds


def _reason(exc: BaseException) -> str:
    from ..core.trial import TrialError

    if isinstance(exc, TrialError):  # the evaluator's own words are the reason
        return str(exc).strip() or "TrialError"
    msg = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {msg[0] if msg else ''}".rstrip(": ")


def call_with_timeout(fn: Callable, config: dict, timeout: float | None) -> tuple[Any, str | None, float]:
    """Run fn(config); never raises: returns (output, failure reason or None, seconds)."""
    t = time.perf_counter()
    if timeout is None:
        try:
            return fn(config), None, time.perf_counter() - t
        except Exception as e:  # a bad candidate must not end the search
            return None, _reason(e), time.perf_counter() - t
    box: dict[str, Any] = {}

    def target():
        try:
            box["out"] = fn(config)
        except BaseException as e:  # noqa: BLE001 - recorded as the trial's reason
            box["err"] = e
            box["tb"] = traceback.format_exc()

    th = threading.Thread(target=target, daemon=True, name="tradeoff-trial")
    th.start()
    th.join(timeout)
    dur = time.perf_counter() - t
    if th.is_alive():
        # Python cannot stop a thread: it is left to finish in the background, its result unused
        return None, f"timed out after {timeout:g} s", dur
    if "err" in box:
        return None, _reason(box["err"]), dur
    return box.get("out"), None, dur


class Executor(abc.ABC):
    name = "executor"

    @abc.abstractmethod
    def map(self, fn: Callable, items: list[tuple[str, dict]], timeout: float | None) -> Iterator[Result]:
        raise NotImplementedError


class LocalExecutor(Executor):
    """One trial at a time in this process: the right choice when timing latency."""

    name = "local"

    def map(self, fn, items, timeout):
        for key, config in items:
            out, reason, dur = call_with_timeout(fn, config, timeout)
            yield key, config, out, reason, dur


class ThreadExecutor(Executor):
    """Trials on worker threads, for evaluators that wait (remote devices, servers, tables)."""

    name = "threads"

    def __init__(self, workers: int = 4):
        self.workers = workers

    def map(self, fn, items, timeout):
        with ThreadPoolExecutor(self.workers, thread_name_prefix="tradeoff-eval") as pool:
            futs = {pool.submit(call_with_timeout, fn, c, timeout): (k, c) for k, c in items}
            for f in as_completed(futs):
                k, c = futs[f]
                out, reason, dur = f.result()
                yield k, c, out, reason, dur


def make_executor(name: str, **options) -> Executor:
    """``local``, ``threads`` (workers), ``processes`` (workers, memory_mb) or ``ray`` (workers, address, ...)."""
    if name == "local":
        return LocalExecutor()
    if name == "threads":
        return ThreadExecutor(**{k: v for k, v in options.items() if k == "workers"})
    if name == "processes":
        from .workers import ProcessExecutor

        return ProcessExecutor(**{k: v for k, v in options.items() if k in ("workers", "memory_mb")})
    if name == "ray":
        from .ray_pool import RayExecutor

        return RayExecutor(**options)
    raise ValueError(f"executor {name!r} is not one of local, threads, processes, ray")
