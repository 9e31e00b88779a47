"""MetaSchedule tuning inside the compile child: a database kept on disk, each task tuned once per budget.

Candidates are built in process (the child is already isolated) and run where the model will run:
here, or on a device from an RPC tracker. Only the target's own tensor intrinsics are loaded.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import re
import sys
from pathlib import Path

from .tvm_compile import _ChildError, _first_line


def tune(mod, target, spec: dict) -> dict:
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
