"""Apache TVM target: import (ONNX or torch.export), compile untuned or MetaSchedule-tuned in a child
process under a time limit, check the output once against a reference, time with TVM's own evaluator.

Threads: TVM sizes its thread pool once, at first use, from TVM_NUM_THREADS (else half the logical
CPUs on x86: one thread on a 2-core VM), and ``runtime.config_threadpool(mode, n)`` can only shrink
it. So ``_tvm()`` sets TVM_NUM_THREADS to every CPU this process may use before TVM starts, each
measurement calls ``config_threadpool(1, threads)`` and checks ``runtime.NumThreads`` (the pool is
per OS thread, and timing runs on the thread that configured it). The compile child runs with
TVM_NUM_THREADS=threads, so MetaSchedule's runner measures candidates with the stated count too.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .base import Artifact, Target, TargetError, register_target
from .ort import cpu_name

FRONTENDS = ("onnx", "torch")
CHECK_RTOL = 1e-2   # the output check: a wrong compile is off by O(1), float reordering by ~1e-6,
CHECK_ATOL = 1e-2   # ... and int8 requantisation by a step; atol is relative to the largest |reference|
_LIST_ATTRS = {"mattr", "keys", "libs", "device-features"}


def _tvm():
    """Import tvm, first letting its thread pool hold every CPU this process may use."""
    os.environ.setdefault("TVM_NUM_THREADS", str(len(os.sched_getaffinity(0))))
    import tvm

    return tvm


def host_target() -> dict:
    """llvm with the host's CPU as LLVM names it (plain llvm when LLVM cannot tell)."""
    from tvm.target import codegen

    cpu = str(codegen.llvm_get_system_cpu() or "")
    return {"kind": "llvm", "mcpu": cpu} if cpu and cpu != "generic" else {"kind": "llvm"}


def parse_target(spec: dict | str | None) -> dict:
    """The dict form TVM 0.27 accepts, from a dict, ``"llvm -mcpu=znver4 -num-cores=4"`` or None (the host)."""
    tvm = _tvm()
    if spec is None:
        out = host_target()
    elif isinstance(spec, dict):
        out = dict(spec)
    else:
        tokens = str(spec).split()
        if not tokens:
            raise ValueError("target: empty string")
        out, i = {"kind": tokens[0]}, 1
        while i < len(tokens):
            key, _, value = tokens[i].lstrip("-").partition("=")
            if not value and i + 1 < len(tokens) and not tokens[i + 1].startswith("-"):
                value, i = tokens[i + 1], i + 1
            out[key] = _attr_value(key, value)
            i += 1
    try:
        tvm.target.Target(out)
    except Exception as e:  # noqa: BLE001 - TVM's own reason for a bad target
        msg = str(e).strip().splitlines()[0][:200]
        if "is not defined" in msg:
            msg = f"kind {out.get('kind')!r} is not one of {', '.join(sorted(tvm.target.Target.list_kinds()))}"
        raise ValueError(f"target {spec!r}: {msg}") from None
    return out


def _attr_value(key: str, value: str):
    if key in _LIST_ATTRS:
        return [v for v in value.split(",") if v]
    if value in ("", "true", "True"):
        return True
    if value in ("false", "False"):
        return False
    return int(value) if re.fullmatch(r"-?\d+", value) else value


def target_hash(target: dict) -> str:
    return hashlib.sha256(json.dumps(target, sort_keys=True).encode()).hexdigest()[:16]


def device_type(target: dict) -> str:
    return {"llvm": "cpu", "c": "cpu"}.get(target["kind"], target["kind"])


def set_threads(get_func, n: int) -> None:
    """Use exactly n threads on this OS thread; ``get_func`` is tvm.get_global_func or a remote's."""
    get_func("runtime.config_threadpool")(1, int(n))
    have = int(get_func("runtime.NumThreads")())
    if have != n:
        raise TargetError(f"tvm: threads={n} but TVM's pool holds {have} (TVM_NUM_THREADS must be >= {n} "
                          f"before TVM first runs)")


# ---------------------------------------------------------------- compile (parent side)

def compile_artifact(artifact: Artifact, settings: dict, workdir: Path, timeout_s: float,
                     cc: str | None = None, rpc: dict | None = None) -> tuple[Path, dict]:
    """Compile in a child process (its own session, killed whole on timeout); return (library, info)."""
    frontend, batch = settings["frontend"], settings["batch"]
    inputs = artifact.numpy_inputs(batch)
    spec: dict[str, Any] = {k: settings[k] for k in ("target", "frontend", "opt_level", "tune", "tune_dir", "threads")}
    spec.update(lib=str(workdir / "model.so"), result=str(workdir / "result.json"), cc=cc, rpc=rpc)
    if frontend == "onnx":
        import onnx

        model = onnx.load_from_string(artifact.onnx_bytes())
        init = {i.name for i in model.graph.initializer}
        names = [i.name for i in model.graph.input if i.name not in init]
        if len(names) != len(inputs):
            raise TargetError(f"tvm: the model takes {len(names)} inputs, the artifact has {len(inputs)}")
        (workdir / "model.onnx").write_bytes(artifact.onnx_bytes())
        spec.update(model=str(workdir / "model.onnx"), shapes={n: list(a.shape) for n, a in zip(names, inputs)},
                    dtypes={n: str(a.dtype) for n, a in zip(names, inputs)})
    else:
        import torch

        if artifact.module is None:
            raise TargetError("tvm: the torch frontend needs the artifact's torch module")
        try:
            ep = torch.export.export(artifact.module.eval(), tuple(torch.from_numpy(a) for a in inputs))
            torch.export.save(ep, str(workdir / "model.pt2"))
        except Exception as e:  # noqa: BLE001
            raise TargetError(f"tvm: torch.export failed: {type(e).__name__}: {_first_line(e)}") from None
        spec.update(model=str(workdir / "model.pt2"))
    if spec["tune"]:
        Path(spec["tune_dir"]).mkdir(parents=True, exist_ok=True)
    (workdir / "spec.json").write_text(json.dumps(spec))
    env = dict(os.environ, TVM_NUM_THREADS=str(settings["threads"]))
    src = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([src] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    log = workdir / "compile.log"
    t0 = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", __name__, str(workdir / "spec.json")], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise TargetError(f"tvm: compile exceeded {timeout_s:g} s") from None
        finally:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            with contextlib.suppress(ProcessLookupError):  # MetaSchedule's popen workers, if any are left
                os.killpg(proc.pid, signal.SIGKILL)
    result = json.loads(Path(spec["result"]).read_text()) if Path(spec["result"]).exists() else None
    if result is None:
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        sig = f" (signal {-proc.returncode})" if proc.returncode < 0 else f" (exit {proc.returncode})"
        raise TargetError(f"tvm: compile process died{sig}{_crash_hint()}: {' | '.join(tail)[-300:]}")
    if not result.get("ok"):
        raise TargetError(f"tvm: {result['error']}")
    result["wall_s"] = time.perf_counter() - t0
    return Path(spec["lib"]), result


def _crash_hint() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        ffi = version("apache-tvm-ffi")
    except PackageNotFoundError:
        return ""
    # 0.1.15 crashes TVM 0.27 in ToJSONGraph (save_json), which MetaSchedule uses; 0.1.14.post1 works
    return f"; apache-tvm-ffi {ffi} is known to crash TVM 0.27, use 0.1.14.post1" if ffi.startswith("0.1.15") else ""


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return s.splitlines()[0][:300] if s else ""


# ---------------------------------------------------------------- compile (child side)

def _child_main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    t0 = time.perf_counter()
    info: dict[str, Any] = {"ok": True}
    try:
        tvm = _tvm()
        mod = _import(spec)
        info["import_s"] = time.perf_counter() - t0
        target = tvm.target.Target(spec["target"])
        if spec["tune"]:
            info.update(_tune(mod, target, spec))
        try:
            ex = _build(mod, target, spec)
        except Exception as e:  # noqa: BLE001
            raise _ChildError(f"compile error: {type(e).__name__}: {_first_line(e)}") from None
        fcompile = None
        if spec.get("cc"):
            from tvm.contrib import cc

            fcompile = cc.cross_compiler(spec["cc"])
        ex.export_library(spec["lib"], fcompile=fcompile)
    except _ChildError as e:
        info = {"ok": False, "error": str(e)}
    except Exception as e:  # noqa: BLE001 - anything else is still this model's failure, with a reason
        info = {"ok": False, "error": f"{type(e).__name__}: {_first_line(e)}"}
    info["compile_s"] = time.perf_counter() - t0
    Path(spec["result"]).write_text(json.dumps(info))


class _ChildError(Exception):
    pass


def _import(spec: dict):
    if spec["frontend"] == "onnx":
        import onnx
        from tvm.relax.frontend.onnx import from_onnx

        try:
            return from_onnx(onnx.load(spec["model"]), shape_dict=spec["shapes"], dtype_dict=spec["dtypes"])
        except Exception as e:  # noqa: BLE001
            m = re.search(r"not supported for frontend ONNX: (.+)", str(e))
            if m:
                raise _ChildError(f"cannot import op {m.group(1).strip()}") from None
            raise _ChildError(f"ONNX import failed: {type(e).__name__}: {_first_line(e)}") from None
    import torch
    from tvm.relax.frontend.torch import from_exported_program

    try:
        return from_exported_program(torch.export.load(spec["model"]))
    except Exception as e:  # noqa: BLE001
        m = re.search(r"Unsupported function types? \[(.+?)\]", str(e))
        if m:
            raise _ChildError(f"cannot import op {m.group(1).replace(chr(39), '')}") from None
        raise _ChildError(f"torch import failed: {type(e).__name__}: {_first_line(e)}") from None


def _build(mod, target, spec: dict):
    tvm = _tvm()
    if not spec["tune"]:
        with tvm.transform.PassContext(opt_level=spec["opt_level"]):
            return tvm.compile(mod, target=target)
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.relax_integration import compile_relax

    return compile_relax(ms.database.JSONDatabase(work_dir=spec["tune_dir"]), mod, target, None)


def _tune(mod, target, spec: dict) -> dict:
    """Tune the tasks this database has not yet had ``tune`` trials' worth of; the rest are reused.

    ``tune`` is the model's budget, split evenly over its tasks; tradeoff_tuned.json beside the
    database keeps each task's largest budget, so the same (or a smaller) budget never tunes again.
    """
    _light_tensor_intrin(spec["target"])
    import tvm_ffi
    from tvm import relax, transform
    from tvm.relax import pipeline
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule import relax_integration as ri

    with target:  # the same preparation compile_relax applies, so database keys match
        prep = transform.Sequential(pipeline.library_dispatch_passes(target) + [
            relax.transform.LegalizeOps(), relax.transform.AnnotateTIROpPattern(), relax.transform.FoldConstant(),
            relax.transform.FuseOps(), relax.transform.FuseTIR()])(mod)
    tasks = ri.extract_tasks(prep, target)
    work_dir, budget = Path(spec["tune_dir"]), int(spec["tune"])
    with open(work_dir / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one tuner per database at a time
        db = ms.database.JSONDatabase(work_dir=str(work_dir))
        ledger_path = work_dir / "tradeoff_tuned.json"
        ledger = json.loads(ledger_path.read_text()) if ledger_path.exists() else {}
        keys = [f"{tvm_ffi.structural_hash(t.dispatched[0]) & (2**64 - 1):016x}" for t in tasks]
        todo = [(t, k) for t, k in zip(tasks, keys) if ledger.get(k, 0) < budget]
        before = len(db)
        per = max(1, math.ceil(budget / max(len(tasks), 1)))
        if todo:
            strategy = ms.search_strategy.EvolutionarySearch(population_size=min(512, max(16, 8 * per)),
                                                             init_min_unmeasured=min(50, max(8, 4 * per)))
            ctxs, weights = ri.extracted_tasks_to_tune_contexts([t for t, _ in todo], str(work_dir),
                                                                strategy=strategy, num_threads=spec["threads"], seed=0)
            try:
                import xgboost  # noqa: F401

                cost = "xgb"
            except ImportError:
                cost = "random"
            try:
                ms.tune.tune_tasks(
                    tasks=ctxs, task_weights=weights, work_dir=str(work_dir), max_trials_global=per * len(todo),
                    max_trials_per_task=per, num_trials_per_iter=min(per, 64), builder=_in_process_builder(),
                    runner=_runner(spec), database=db, cost_model=cost)
            except ImportError as e:
                raise _ChildError(f"tuning needs {e.name or 'a missing package'}: {_first_line(e)}") from None
            ledger.update({k: budget for _, k in todo})
            ledger_path.write_text(json.dumps(ledger, indent=0, sort_keys=True))
    return {"tasks": len(tasks), "tuned_tasks": len(todo), "reused_tasks": len(tasks) - len(todo),
            "trials_per_task": per, "records_before": before, "records_after": len(db)}


def _runner(spec: dict):
    """Candidates run where the model will: here, or on a device from the tracker (tvm-rpc)."""
    import functools

    from tvm.s_tir import meta_schedule as ms

    evaluator = ms.runner.EvaluatorConfig(number=3, repeat=1, min_repeat_ms=20, enable_cpu_cache_flush=False)
    rpc = spec.get("rpc")
    if not rpc:
        return ms.runner.LocalRunner(timeout_sec=60, evaluator_config=evaluator)
    config = ms.runner.RPCConfig(tracker_host=rpc["host"], tracker_port=rpc["port"], tracker_key=rpc["key"],
                                 session_priority=rpc["priority"], session_timeout_sec=rpc["session_timeout"] or 120)
    return ms.runner.RPCRunner(config, evaluator_config=evaluator,
                               f_run_evaluator=functools.partial(_rpc_run_evaluator, spec["threads"]))


def _rpc_run_evaluator(threads, session, rt_mod, device, evaluator_config, repeated_args):
    from tvm.s_tir.meta_schedule.runner.rpc_runner import default_run_evaluator

    if device.dlpack_device_type() == 1:  # kDLCPU: the remote pool, at the stated thread count
        session.get_function("runtime.config_threadpool")(1, int(threads))
    return default_run_evaluator(session, rt_mod, device, evaluator_config, repeated_args)


def _light_tensor_intrin(target: dict) -> None:
    """MetaSchedule imports tvm.s_tir.tensor_intrin, which parses every backend's intrinsics (45 s on
    2 cores, 29 of them CUDA's, and again in every builder worker); load only this target's."""
    if "tvm.s_tir.tensor_intrin" in sys.modules:
        return
    import importlib
    import types

    import tvm.s_tir

    triple = str(target.get("mtriple", "")) or os.uname().machine
    family = {"cuda": "cuda", "rocm": "rocm", "hexagon": "hexagon", "metal": "metal"}.get(target["kind"])
    family = family or ("arm_cpu" if re.match(r"(aarch64|arm)", triple) else
                        "riscv_cpu" if triple.startswith("riscv") else "x86")
    pkg = types.ModuleType("tvm.s_tir.tensor_intrin")
    pkg.__path__ = [str(Path(tvm.s_tir.__file__).parent / "tensor_intrin")]
    sys.modules[pkg.__name__] = pkg
    tvm.s_tir.tensor_intrin = pkg
    importlib.import_module(f"tvm.s_tir.tensor_intrin.{family}")


def _in_process_builder():
    """LocalBuilder starts a fresh worker pool per batch (and re-imports every intrinsic there); the
    child is already an isolated process, so build here."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder
    from tvm.s_tir.meta_schedule.builder.local_builder import default_build, default_export

    @derived_object
    class InProcessBuilder(PyBuilder):
        def build(self, build_inputs):
            results = []
            for b in build_inputs:
                try:
                    results.append(BuilderResult(default_export(default_build(b.mod, b.target, None)), None))
                except Exception as e:  # noqa: BLE001 - a candidate that does not build is a failed trial
                    results.append(BuilderResult(None, f"{type(e).__name__}: {_first_line(e)}"))
            return results

    return InProcessBuilder()


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
        from tvm import relax

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


if __name__ == "__main__":
    _child_main(sys.argv[1])
