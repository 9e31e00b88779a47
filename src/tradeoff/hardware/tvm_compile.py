"""Compiling a model with TVM in a child process: its own session, a time limit, killed whole on timeout.

The parent writes a spec (model file, shapes, target, tuning budget) and runs this module; the
child imports (ONNX or torch.export), tunes when asked (``tvm_tune``), builds and exports a
library, and writes a result the parent reads. A crash or a hang is this model's failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .base import Artifact, TargetError
from .tvm_setup import _tvm


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
            from .tvm_tune import tune

            info.update(tune(mod, target, spec))
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



if __name__ == "__main__":
    _child_main(sys.argv[1])
