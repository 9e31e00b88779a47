"""TVM over RPC: compile here for the remote's target, fetch a device through a tracker, time it there.

A recipe names the tracker as ``rpc://host:port/key``; the key names a class of devices (every
server registered under it is interchangeable), so the key and the remote device are the device id.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

from .base import TargetError, register_target
from .tvm import TvmTarget, _tvm, device_type, load_and_check, target_hash


def parse_tracker(url: str) -> tuple[str, int, str]:
    """``rpc://host:port/key`` -> (host, port, key)."""
    u = urlparse(url)
    key = u.path.strip("/")
    if u.scheme != "rpc" or not u.hostname or not u.port or not key:
        raise ValueError(f"tracker {url!r} is not of the form rpc://host:port/key")
    return u.hostname, u.port, key


def request_remote(host: str, port: int, key: str, priority: int = 1, timeout_s: float = 60.0,
                   session_timeout_s: float = 0.0):
    """A session on a free server with this key; TargetError when none is free within timeout_s."""
    from tvm import rpc

    check_reachable(host, port)
    with socket_timeout(timeout_s):  # the tracker session's socket takes the deadline when it is made
        tracker = rpc.connect_tracker(host, port)
    try:
        # TrackerSession.request blocks until the tracker hands out a server (or the deadline passes)
        return tracker.request(key, priority=priority, session_timeout=session_timeout_s, max_retry=1)
    except (RuntimeError, OSError) as e:
        if "timed out" in str(e):
            raise _no_device(key, timeout_s, host, port, priority, _tracker_queue(host, port)) from None
        raise TargetError(f"tvm-rpc: cannot get a {key!r} device from {host}:{port}: {str(e)[:300]}") from None
    finally:
        tracker.close()


_TIMEOUT_LOCK = threading.Lock()


@contextlib.contextmanager
def socket_timeout(seconds: float):
    """Sockets made inside get ``seconds`` as their timeout (TVM's tracker client sets none of its own)."""
    with _TIMEOUT_LOCK:
        before = socket.getdefaulttimeout()
        socket.setdefaulttimeout(seconds)
        try:
            yield
        finally:
            socket.setdefaulttimeout(before)


def check_reachable(host: str, port: int) -> None:
    try:
        socket.create_connection((host, port), timeout=5).close()
    except OSError as e:
        raise TargetError(f"tvm-rpc: tracker {host}:{port} unreachable: {e}") from None


def _tracker_queue(host: str, port: int) -> dict | None:
    """The tracker's queue per key (``{key: {"free": n, "pending": m}}``), or None when it cannot say."""
    from tvm import rpc

    with contextlib.suppress(Exception):
        with socket_timeout(5):
            t = rpc.connect_tracker(host, port)
        try:
            return dict(t.summary().get("queue_info", {}))
        finally:
            t.close()
    return None


def _no_device(key: str, timeout_s: float, host: str, port: int, priority: int, queue: dict | None) -> TargetError:
    keys = ", ".join(f"{k} ({v.get('free', 0)} free)" for k, v in sorted((queue or {}).items())) or "none"
    return TargetError(f"tvm-rpc: no {key!r} device free within {timeout_s:g} s at {host}:{port} "
                       f"(priority {priority}; the tracker knows keys: {keys})")


def wait_for_key(host: str, port: int, key: str, timeout_s: float, priority: int = 1) -> None:
    """Before a compile that may take minutes: some server with ``key`` is registered, or one registers in time."""
    deadline = time.monotonic() + timeout_s
    while True:
        queue = _tracker_queue(host, port)
        if queue is None or key in queue:     # a tracker that cannot say is asked again at request time
            return
        if time.monotonic() >= deadline:
            raise _no_device(key, timeout_s, host, port, priority, queue)
        time.sleep(min(0.5, max(deadline - time.monotonic(), 0.0)))


@register_target("tvm-rpc")
class TvmRpcTarget(TvmTarget):
    """The tvm target's settings plus tracker (rpc://host:port/key), priority, request_timeout_s,
    session_timeout_s and cc (a cross compiler to link the library for the remote, e.g. aarch64-linux-gnu-g++)."""

    kind = "tvm-rpc"

    def unavailable(self):
        return None  # the device is remote; the tracker is asked when timing starts

    def __init__(self, name=None, cache=True, tracker: str | None = None, priority: int = 1,
                 request_timeout_s: float = 60.0, session_timeout_s: float = 0.0, cc: str | None = None, **settings):
        if not tracker:
            raise ValueError("tvm-rpc needs tracker: rpc://host:port/key")
        parse_tracker(tracker)
        # like the compile limit, none of these changes a figure: they stay out of describe() and the cache key
        self.priority, self.request_timeout_s = int(priority), float(request_timeout_s)
        self.session_timeout_s = float(session_timeout_s)
        super().__init__(name, cache, tracker=tracker, cc=cc, **settings)

    def _tune_dir_name(self, target: dict, settings: dict) -> str:
        return f"{parse_tracker(settings['tracker'])[2]}-{target_hash(target)}"  # records are per device class

    @property
    def device(self) -> str:
        return f"rpc:{parse_tracker(self.settings['tracker'])[2]}/{device_type(self.settings['target'])}:0"

    def measure(self, artifact):
        try:
            return super().measure(artifact)
        finally:
            # The session holds the remote device until it is freed; the VM and its functions can sit
            # in reference cycles, so collect them now rather than leave the device busy for the next
            # request (or for MetaSchedule's RPC runner, which otherwise waits for it forever).
            gc.collect()

    def _prepare(self, artifact):
        host, port, key = parse_tracker(self.settings["tracker"])
        check_reachable(host, port)  # before a compile that may take minutes
        wait_for_key(host, port, key, self.request_timeout_s, self.priority)
        inputs = artifact.numpy_inputs(self.settings["batch"])
        with tempfile.TemporaryDirectory(prefix="tvm-rpc-") as tmp:
            lib = self.compile(artifact, Path(tmp), cc=self.settings.get("cc"),
                               rpc={"host": host, "port": port, "key": key, "priority": self.priority,
                                    "session_timeout": self.session_timeout_s})
            remote = request_remote(host, port, key, self.priority, self.request_timeout_s,
                                    self.session_timeout_s)
            name = f"tradeoff-{uuid.uuid4().hex[:8]}.so"
            remote.upload(str(lib), name)
        rlib = remote.load_module(name)
        dt = device_type(self.settings["target"])
        run, timer, err = load_and_check(rlib, remote.device(dt, 0), dt, remote.get_function, artifact, inputs,
                                         self.settings, self.kind)
        self.last_compile["max_abs_error"] = err
        return run, timer


class RpcUrl(str):
    """The tracker URL, with the process groups that serve it (for callers that check they are gone)."""

    pgids: tuple[int, ...] = ()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def start_local_rpc(key: str = "cpu0", wait_s: float = 60.0):
    """A tracker and one server on 127.0.0.1, each in its own process group, killed whole at exit
    (the server's popen_worker children otherwise outlive it and hold pipes open)."""
    port, server_port = _free_port(), _free_port()
    env = dict(os.environ)
    env.setdefault("TVM_NUM_THREADS", str(len(os.sched_getaffinity(0))))
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="tvm-rpc-") as tmp:
        def spawn(name: str, args: list[str]) -> None:
            log = open(Path(tmp) / f"{name}.log", "wb")
            procs.append(subprocess.Popen([sys.executable, "-m", f"tvm.exec.{name}", *args], stdout=log,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                          cwd=tmp, start_new_session=True))
            log.close()

        def check_alive() -> None:
            for p, name in zip(procs, ("rpc_tracker", "rpc_server")):
                if p.poll() is not None:
                    tail = (Path(tmp) / f"{name}.log").read_text(errors="replace").strip().splitlines()[-3:]
                    raise RuntimeError(f"{name} exited ({p.returncode}): {' | '.join(tail)}")

        try:
            spawn("rpc_tracker", ["--host", "127.0.0.1", "--port", str(port), "--port-end", str(port + 1)])
            spawn("rpc_server", ["--tracker", f"127.0.0.1:{port}", "--key", key, "--host", "127.0.0.1",
                                 "--port", str(server_port), "--port-end", str(server_port + 1)])
            _tvm()
            from tvm import rpc

            deadline = time.monotonic() + wait_s
            while True:
                check_alive()
                with contextlib.suppress(OSError, RuntimeError):
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    tracker = rpc.connect_tracker("127.0.0.1", port)
                    try:
                        if tracker.summary().get("queue_info", {}).get(key, {}).get("free", 0) > 0:
                            break
                    finally:
                        tracker.close()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the RPC server did not register {key!r} with 127.0.0.1:{port} in {wait_s:g} s")
                time.sleep(0.2)
            url = RpcUrl(f"rpc://127.0.0.1:{port}/{key}")
            url.pgids = tuple(p.pid for p in procs)
            yield url
        finally:
            for p in reversed(procs):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait()

