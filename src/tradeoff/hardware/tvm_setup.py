"""What TVM needs before anything compiles: the import with every CPU in its pool, and targets.

Threads: TVM sizes its thread pool once, at first use, from TVM_NUM_THREADS (else half the logical
CPUs on x86: one thread on a 2-core VM), and ``runtime.config_threadpool(mode, n)`` can only shrink
it. So ``_tvm()`` sets TVM_NUM_THREADS to every CPU this process may use before TVM starts, and
``set_threads`` shrinks the pool per measurement and checks ``runtime.NumThreads``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re

from .base import TargetError

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
