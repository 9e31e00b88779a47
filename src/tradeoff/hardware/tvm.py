"""Apache TVM target: compile (``tvm_compile``, tuned by ``tvm_tune`` when asked) in a child process,
check the output once against a reference, time with TVM's own evaluator.

Each measurement calls ``config_threadpool(1, threads)`` and checks ``runtime.NumThreads`` (the pool
is per OS thread, and timing runs on the thread that configured it); see ``tvm_setup``. The compile
child runs with TVM_NUM_THREADS=threads, so MetaSchedule's runner measures candidates with it too.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .base import Artifact, Target, TargetError, register_target
from .ort import cpu_name
from .tvm_compile import compile_artifact
from .tvm_setup import (  # noqa: F401
    CHECK_ATOL,
    CHECK_RTOL,
    FRONTENDS,
    _tvm,
    device_type,
    host_target,
    parse_target,
    set_threads,
    target_hash,
)

# ---------------------------------------------------------------- check and time

def flatten_outputs(out) -> list[np.ndarray]:
    if hasattr(out, "numpy"):
        return [np.asarray(out.numpy())]
    if isinstance(out, (list, tuple)) or type(out).__name__ in ("Array", "List"):
        return [a for o in out for a in flatten_outputs(o)]
    return [np.asarray(out)]


def reference_outputs(artifact: Artifact, inputs: list[np.ndarray], frontend: str) -> tuple[str, list[np.ndarray]]:
    """The model's own answer: onnxruntime for an imported ONNX model, else the torch module."""
    if frontend == "onnx":
        try:
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.intra_op_num_threads, so.log_severity_level = 1, 3
            sess = ort.InferenceSession(artifact.onnx_bytes(), so, providers=["CPUExecutionProvider"])
            feed = {i.name: a for i, a in zip(sess.get_inputs(), inputs)}
            return "onnxruntime", [np.asarray(o) for o in sess.run(None, feed)]
        except ImportError:
            pass
    import torch

    with torch.no_grad():
        out = artifact.module(*[torch.from_numpy(a) for a in inputs])
    outs = out if isinstance(out, (list, tuple)) else [out]
    return "torch", [o.detach().cpu().numpy() for o in outs]


def check_outputs(outs: list[np.ndarray], refs: list[np.ndarray], ref_name: str, kind: str = "tvm") -> float:
    """Raise unless every output matches the reference; return the largest absolute error."""
    if len(outs) != len(refs):
        raise TargetError(f"{kind}: {len(outs)} outputs, {ref_name} gives {len(refs)}")
    worst = 0.0
    for i, (o, r) in enumerate(zip(outs, refs)):
        if o.shape != r.shape:
            raise TargetError(f"{kind}: output {i} has shape {o.shape}, {ref_name} gives {r.shape}")
        o, r = o.astype(np.float64), r.astype(np.float64)
        scale = float(np.max(np.abs(r))) if r.size else 0.0
        err = float(np.max(np.abs(o - r))) if r.size else 0.0
        worst = max(worst, err)
        if not np.allclose(o, r, rtol=CHECK_RTOL, atol=CHECK_ATOL * max(scale, 1e-6)) or not np.isfinite(o).all():
            raise TargetError(f"{kind}: output {i} differs from {ref_name}: max abs error {err:.3g} "
                              f"(largest |reference| {scale:.3g})")
    return worst


def vm_runner(vm, dev, args: list) -> tuple:
    """(run once, timer(fn, number) -> ms per call) through the VM's stateful API (works over RPC)."""
    vm.set_input("main", *args)
    evaluators: dict[int, Any] = {}

    def timer(_fn, number: int) -> float:
        if number not in evaluators:
            evaluators[number] = vm.time_evaluator("invoke_stateful", dev, number=number, repeat=1)
        return float(evaluators[number]("main").mean) * 1e3

    return (lambda: vm.invoke_stateful("main")), timer


@register_target("tvm")
class TvmTarget(Target):
    """Settings: target (dict or "llvm -mcpu=..."), frontend (onnx|torch), batch, threads, opt_level,
    tune (MetaSchedule trials for the model, split over its tasks; 0 = default schedules), tune_dir (the
    database, kept and reused: a tuned figure uses the best schedules it holds; default
    <TRADEOFF_HOME>/tvm_tuning/<target hash>), compile_timeout_s. Tuned builds use opt_level 3 (compile_relax)."""

    kind = "tvm"

    def __init__(self, name=None, cache=True, target: dict | str | None = None, frontend: str = "onnx",
                 batch: int = 1, threads: int = 1, opt_level: int = 3, tune: int = 0, tune_dir: str | None = None,
                 compile_timeout_s: float | None = None, **settings):
        if frontend not in FRONTENDS:
            raise ValueError(f"frontend {frontend!r} is not one of {', '.join(FRONTENDS)}")
        tgt = parse_target(target)
        if int(tune) > 0 and tgt["kind"] == "llvm":
            tgt.setdefault("num-cores", int(threads))  # MetaSchedule's CPU rules require it
        if int(tune) > 0 and tune_dir is None:
            from ..core.paths import tradeoff_home

            tune_dir = str(tradeoff_home() / "tvm_tuning" / self._tune_dir_name(tgt, settings))
        # the time limit changes no figure, so it stays out of describe() and the cache key
        self.compile_timeout_s = float(compile_timeout_s or (600 + 10 * int(tune)))
        self.compiles = 0                      # compiles this target ran (the cache skips them)
        self.last_compile: dict[str, Any] = {}  # compile_s, tuned_tasks, reused_tasks, records ...
        super().__init__(name, cache, target=tgt, frontend=frontend, batch=int(batch), threads=int(threads),
                         opt_level=int(opt_level), tune=int(tune),
                         tune_dir=str(Path(tune_dir).resolve()) if int(tune) > 0 else None, **settings)

    def unavailable(self):
        kind = self.settings["target"]["kind"]
        if device_type(self.settings["target"]) == "cpu" or _tvm().device(kind).exist:
            return None
        return f"target: this machine has no {kind!r} device for TVM to run on (available here: llvm)"

    def _tune_dir_name(self, target: dict, settings: dict) -> str:
        return target_hash(target)

    @property
    def device(self) -> str:
        dt = device_type(self.settings["target"])
        return f"cpu:{cpu_name()}" if dt == "cpu" else f"{dt}:0"

    def compile(self, artifact: Artifact, workdir: Path, cc: str | None = None, rpc: dict | None = None) -> Path:
        """Compile to a shared library in workdir; ``rpc`` (tracker host, port, key ...) tunes on that device."""
        self.compiles += 1
        lib, self.last_compile = compile_artifact(artifact, self.settings, workdir, self.compile_timeout_s, cc, rpc)
        return lib

    def _prepare(self, artifact):
        tvm = _tvm()
        from tvm import relax  # noqa: F401  (loads the Relax runtime before the VM is made)

        inputs = artifact.numpy_inputs(self.settings["batch"])
        with tempfile.TemporaryDirectory(prefix="tvm-") as tmp:
            lib = tvm.runtime.load_module(str(self.compile(artifact, Path(tmp))))  # loaded: the file may go
        dt = device_type(self.settings["target"])
        run, timer, err = load_and_check(lib, tvm.device(dt, 0), dt, tvm.get_global_func, artifact, inputs,
                                         self.settings, self.kind)
        self.last_compile["max_abs_error"] = err
        return run, timer


def load_and_check(lib, dev, dt: str, get_func, artifact, inputs, settings, kind: str):
    """A VM on ``dev`` (local or remote) for a loaded module, its outputs checked once against the
    reference runtime: (run once, timer, max abs error)."""
    tvm = _tvm()
    from tvm import relax

    vm = relax.VirtualMachine(lib, dev)
    if dt == "cpu":
        set_threads(get_func, settings["threads"])
    args = [tvm.runtime.tensor(a, dev) for a in inputs]
    run, timer = vm_runner(vm, dev, args)
    run()
    ref_name, refs = reference_outputs(artifact, inputs, settings["frontend"])
    return run, timer, check_outputs(flatten_outputs(vm.get_outputs("main")), refs, ref_name, kind)
