"""Kernel time from ONNX Runtime's own profiler, without the layout conversions of running alone.

A kernel timed alone by wall clock pays for what it never pays inside a model: on the CPU
provider its input is reordered into the blocked NCHWc layout and its output back (on GPU
providers, copies to and from the device), plus the cost of one ``run`` call. The profiler
times each node, so the kernel's own nodes can be summed and those boundaries left out.

The profiler also costs time of its own inside every node it times: a Relu over one element
reads about 6 µs profiled, against about 1 µs of a trivial node in an unprofiled model. A
network of small kernels (lcnet, mnasnet) runs 10–20 µs per node, so that floor alone made their
summed kernels 1.5–2.5x their measured latency. ``profiler_floor_us`` measures it (again every
30 s, as it moves with the machine), and each node's time is read net of it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time

import numpy as np

from .base import Artifact, TargetError
from .locks import device_lock
from .ort import OPT_LEVELS, PROVIDERS
from .timing import LatencyStats, _load_per_core, median_ci

BOUNDARY_OPS = frozenset({"ReorderInput", "ReorderOutput", "MemcpyToHost", "MemcpyFromHost"})


def session_options(settings: dict, profile_prefix: str | None = None):
    """ONNX Runtime session options for a target's ``settings`` (sequential), profiling to ``profile_prefix`` if given."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = settings["threads"]
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPT_LEVELS[settings["graph_optimization"]])
    so.log_severity_level = 3
    if profile_prefix:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    return so


_FLOORS: dict[tuple, tuple[float, float]] = {}   # setting -> (floor µs, when measured)
FLOOR_MAX_AGE_S = 30.0


def profiler_floor_us(target, runs: int = 200, max_age_s: float = FLOOR_MAX_AGE_S) -> float:
    """What the profiler reports for a node that does nothing (a Relu over one element), in µs: its own cost.

    Measured per setting (provider, threads, optimization level) and again once it is older than
    ``max_age_s``: it moves with the machine's state, so a long table build keeps it current
    (about 20 ms each time).
    """
    import onnxruntime as ort
    from onnx import TensorProto, helper

    s = target.settings
    key = (s["provider"], s["threads"], s["graph_optimization"])
    if key not in _FLOORS or time.monotonic() - _FLOORS[key][1] > max_age_s:
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
        g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "floor", [x], [y])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
        tmp = tempfile.mkdtemp(prefix="tradeoff-prof-")
        try:
            sess = ort.InferenceSession(m, session_options(s, os.path.join(tmp, "p")),
                                        providers=[PROVIDERS[s["provider"]]])
            feed = {"x": np.zeros(1, np.float32)}
            for _ in range(runs):
                sess.run(None, feed)
            per_run = _runs(sess.end_profiling(), frozenset(), floor_us=0.0)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        _FLOORS[key] = (float(np.median(per_run[len(per_run) // 4:])), time.monotonic())
    return _FLOORS[key][0]


def profile_kernel(target, artifact: Artifact, exclude: frozenset[str] = BOUNDARY_OPS,
                   min_time_s: float = 0.05) -> LatencyStats:
    """Per-run sum of the profiled node times of ``artifact`` on an ``ort`` target, ``exclude`` left out, each net of the floor.

    Repeats at least the policy's ``min_repeats`` (and 20) times and at least ``min_time_s``;
    ``median_ms`` is the interquartile mean and ``p10_ms`` the mean of the fastest fifth, since
    the profiler counts whole microseconds and a median of them would be as coarse.
    """
    import onnxruntime as ort

    if target.kind != "ort":
        raise TargetError(f"profile_kernel needs an ort target, got {target.kind}")
    s, policy = target.settings, target.policy
    floor = profiler_floor_us(target)
    tmp = tempfile.mkdtemp(prefix="tradeoff-prof-")
    so = session_options(s, os.path.join(tmp, "p"))
    t_start, load0 = time.perf_counter(), _load_per_core()
    try:
        with device_lock(target.device):
            try:
                sess = ort.InferenceSession(artifact.onnx_bytes(), so, providers=[PROVIDERS[s["provider"]]])
            except Exception as e:  # noqa: BLE001 - the runtime's refusal, with its reason
                raise TargetError(f"ort rejected the kernel: {str(e).strip().splitlines()[0][:300]}") from None
            feed = dict(zip([i.name for i in sess.get_inputs()], artifact.numpy_inputs(s["batch"])))
            n, t0 = 0, time.perf_counter()
            for _ in range(policy.warmup):
                sess.run(None, feed)
            while True:
                sess.run(None, feed)
                n += 1
                spent = time.perf_counter() - t0
                if n >= max(policy.min_repeats, 20) and spent >= min_time_s:
                    break
                if n >= policy.max_repeats or spent >= policy.time_cap_s:
                    break
            path = sess.end_profiling()
        runs = _runs(path, exclude, floor)[policy.warmup:]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not runs:
        raise TargetError("ort profiler recorded no runs")
    x = np.sort(np.asarray(runs, dtype=float)) / 1000.0     # µs -> ms
    q = len(x) // 4
    lo, hi = median_ci(x)
    stats = LatencyStats(median_ms=float(x[q:len(x) - q].mean()), p10_ms=float(x[:max(1, len(x) // 5)].mean()),
                         p90_ms=float(np.percentile(x, 90)), mean_ms=float(x.mean()), n=len(x), ci_low_ms=lo,
                         ci_high_ms=hi, warmup=policy.warmup, target=target.name, device=target.device,
                         settings={**target.describe(), "kernel_timing": "profile"})
    stats.load = round(max(load0, _load_per_core()), 3)
    if stats.ci_rel > policy.rel_ci:
        stats.flag("ci")
    if stats.load > policy.max_load:
        stats.flag("load")
    stats.seconds = time.perf_counter() - t_start
    return stats


def _runs(path: str, exclude: frozenset[str], floor_us: float) -> list[float]:
    """Per ``run`` call, the summed duration (µs) of its nodes that are not in ``exclude``, each net of ``floor_us``."""
    with open(path) as f:
        events = json.load(f)
    runs, cur = [], 0.0
    for e in events:
        if e.get("cat") == "Session" and e.get("name") == "model_run":
            runs.append(cur)
            cur = 0.0
        elif e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time") \
                and e.get("args", {}).get("op_name") not in exclude:
            cur += max(float(e.get("dur", 0.0)) - floor_us, 0.0)
    return runs
