"""The ``processes`` executor: trials in worker processes, so a crash or a leak costs one trial, not the search.

Each worker is a fresh ``python -m tradeoff.engine.workers`` speaking over two pipes (the
evaluate function travels once, by cloudpickle). A worker that dies mid-trial (a segfault, the
OOM killer, ``os._exit``) is replaced and the trial retried once, then recorded as failed with
the signal or exit code. A worker over ``memory_mb`` (resident memory, checked while it runs and
after each trial) is stopped and replaced; a trial over ``timeout`` has its worker killed.
Latency timing stays one model per device: the device lock is an ``flock`` shared by processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection, wait
from typing import Any

import cloudpickle

from .executors import Executor, Result, _reason

POLL_S = 0.1


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


def death_reason(code: int | None) -> str:
    """A worker's end in words: the signal that killed it, or its exit code."""
    if code is None:
        return "worker vanished"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (out of memory?)" if -code == signal.SIGKILL else ""
        return f"worker killed by {name}{hint}"
    return f"worker exited with code {code}"


class Worker:
    """One worker process and its two pipes."""

    def __init__(self, payload: bytes):
        to_r, to_w = os.pipe()
        from_r, from_w = os.pipe()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)  # the driver's imports resolve here too
        self.proc = subprocess.Popen([sys.executable, "-m", "tradeoff.engine.workers", str(to_r), str(from_w)],
                                     pass_fds=(to_r, from_w), env=env, stdin=subprocess.DEVNULL)
        os.close(to_r)
        os.close(from_w)
        self.send, self.recv = Connection(to_w, readable=False), Connection(from_r, writable=False)
        self.send.send_bytes(payload)
        self.job: tuple[str, dict, int] | None = None
        self.started = 0.0
        self.running = False    # the worker said it started the trial (its timeout counts from then)

    def submit(self, key: str, config: dict, attempt: int) -> None:
        self.job, self.started, self.running = (key, config, attempt), time.perf_counter(), False
        self.send.send_bytes(cloudpickle.dumps(config))

    def kill(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.kill()
        code = self.proc.wait()
        for c in (self.send, self.recv):
            try:
                c.close()
            except OSError:
                pass
        return code


class ProcessExecutor(Executor):
    """Trials in a pool of worker processes, recycled after a crash, a memory cap or a timeout."""

    name = "processes"

    def __init__(self, workers: int = 2, memory_mb: float | None = None, retries: int = 1):
        self.workers, self.memory_mb, self.retries = workers, memory_mb, retries
        self._pool: list[Worker] = []
        self._fn: Any = None
        self._payload = b""
        self.restarts = 0

    def _ensure(self, fn: Callable) -> None:
        if fn is not self._fn:
            self.close()
            self._fn, self._payload = fn, cloudpickle.dumps(fn)
        while len(self._pool) < self.workers:
            self._pool.append(Worker(self._payload))

    def _replace(self, w: Worker) -> None:
        w.kill()
        self._pool[self._pool.index(w)] = Worker(self._payload)
        self.restarts += 1

    def map(self, fn, items, timeout) -> Iterator[Result]:
        self._ensure(fn)
        busy: list[Worker] = []
        try:
            yield from self._map(items, timeout, busy)
        finally:  # abandoned mid-batch (Ctrl-C in the driver): workers still busy are stopped
            for w in busy:
                self._replace(w)

    def _map(self, items, timeout, busy: list[Worker]) -> Iterator[Result]:
        queue = [(k, c, 0) for k, c in items]
        while queue or busy:
            for w in self._pool:
                if queue and w.job is None:
                    w.submit(*queue.pop(0))
                    busy.append(w)
            ready = wait([w.recv for w in busy], timeout=POLL_S)
            for w in list(busy):
                key, config, attempt = w.job
                dur = time.perf_counter() - w.started
                fail = None
                if w.recv in ready:
                    try:
                        msg = w.recv.recv_bytes()
                    except (EOFError, OSError):
                        fail = death_reason(w.proc.wait())
                    else:
                        if msg == b"S":  # started: the clock for its timeout starts now
                            w.started, w.running = time.perf_counter(), True
                            continue
                        out, reason, dur, recycle = cloudpickle.loads(msg)
                        busy.remove(w)
                        w.job = None
                        over = self.memory_mb is not None and _rss_mb(w.proc.pid) > self.memory_mb
                        if recycle or over:
                            self._replace(w)
                        yield key, config, out, reason, dur
                        continue
                elif timeout is not None and w.running and dur > timeout:
                    busy.remove(w)
                    self._replace(w)
                    yield key, config, None, f"timed out after {timeout:g} s (worker stopped)", dur
                    continue
                elif self.memory_mb is not None and (rss := _rss_mb(w.proc.pid)) > self.memory_mb:
                    fail = f"worker over the memory cap ({rss:.0f} MB > {self.memory_mb:g} MB)"
                elif w.proc.poll() is not None:
                    fail = death_reason(w.proc.returncode)
                if fail is None:
                    continue
                busy.remove(w)
                self._replace(w)
                if attempt < self.retries:
                    queue.insert(0, (key, config, attempt + 1))
                else:
                    yield key, config, None, f"{fail}, {attempt + 1} attempts", dur

    def close(self) -> None:
        for w in self._pool:
            w.kill()
        self._pool = []


def _serve(read_fd: int, write_fd: int) -> None:
    """The worker's loop: receive the function once, then configs; send back (output, reason, seconds, recycle)."""
    from .executors import call_with_timeout  # noqa: F401  (same failure wording as in-process)

    recv, send = Connection(read_fd, writable=False), Connection(write_fd, readable=False)
    fn = cloudpickle.loads(recv.recv_bytes())
    while True:
        try:
            config = cloudpickle.loads(recv.recv_bytes())
        except EOFError:
            return
        send.send_bytes(b"S")
        t = time.perf_counter()
        recycle = False
        try:
            out, reason = fn(config), None
        except MemoryError as e:
            out, reason, recycle = None, _reason(e) or "MemoryError", True
        except Exception as e:  # noqa: BLE001 - a bad candidate is a failed trial
            out, reason = None, _reason(e)
        dur = time.perf_counter() - t
        try:
            data = cloudpickle.dumps((out, reason, dur, recycle))
        except Exception as e:  # noqa: BLE001
            data = cloudpickle.dumps((None, f"evaluator output cannot be sent back: {_reason(e)}", dur, recycle))
        send.send_bytes(data)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    _serve(int(sys.argv[1]), int(sys.argv[2]))
