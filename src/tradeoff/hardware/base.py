"""Artifact (the model that would be deployed) and Target (a place to run and time it).

Every target times through ``Target.measure(artifact) -> LatencyStats``: it checks the
measurement cache, takes the device lock, compiles, times with the shared timing policy and
stores the result. A subclass only says how to compile and how to run once.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import io
import os
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.registry import Registry
from .cache import MeasurementCache, measurement_key
from .locks import device_lock
from .timing import LatencyStats, TimingPolicy, time_callable


class TargetError(RuntimeError):
    """A model this target cannot import, compile or run; the trial fails with this reason."""


@dataclass
class Artifact:
    """A deployable model: a torch module and/or ONNX bytes, with batch-1 example inputs."""

    name: str
    example_inputs: tuple = ()
    module: Any = None                 # torch.nn.Module (eval mode) when there is one
    onnx: bytes | None = None          # the ONNX model; exported from the module on first use
    meta: dict[str, Any] = field(default_factory=dict)
    opset: int = 17

    def onnx_bytes(self) -> bytes:
        if self.onnx is None:
            if self.module is None:
                raise TargetError(f"{self.name}: no ONNX model and no torch module to export")
            self.onnx = export_onnx(self.module, self.example_inputs, self.opset)
        return self.onnx

    def digest(self) -> str:
        """Hash of the deployed bytes: equal models share measurements, different ones never do."""
        if "digest" not in self.meta:
            try:
                blob = self.onnx_bytes()
            except TargetError:
                blob = _module_fingerprint(self.module, self.example_inputs)
            self.meta["digest"] = hashlib.sha256(blob).hexdigest()
        return self.meta["digest"]

    def numpy_inputs(self, batch: int | None = None) -> list[np.ndarray]:
        out = []
        for x in self.example_inputs:
            a = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
            if batch is not None and a.ndim and a.shape[0] != batch:
                a = np.repeat(a[:1], batch, axis=0)
            out.append(np.ascontiguousarray(a))
        return out


# torch's exporters keep process-wide "exporting" state: two exports on two threads at once can
# leave it set, and torch.compile then silently does nothing. One export at a time.
_EXPORT_LOCK = threading.Lock()


def export_onnx(module, example_inputs: tuple, opset: int = 17) -> bytes:
    """TorchScript-based export (fast); the dynamo exporter when that one fails."""
    import torch

    module = module.eval()
    buf = io.BytesIO()
    with _EXPORT_LOCK, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # the exporter dumps whole graphs on failure
                torch.onnx.export(module, tuple(example_inputs), buf, dynamo=False, opset_version=opset,
                                  input_names=[f"input{i}" for i in range(len(example_inputs))],
                                  dynamic_axes={f"input{i}": {0: "batch"} for i in range(len(example_inputs))})
            return buf.getvalue()
        except Exception as first:  # noqa: BLE001 - try the other exporter before giving up
            try:
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                    prog = torch.onnx.export(module, tuple(example_inputs), dynamo=True, verbose=False)
                return prog.model_proto.SerializeToString()
            except Exception as second:  # noqa: BLE001
                raise TargetError(f"ONNX export failed: {type(first).__name__}: {str(first)[:200]}; "
                                  f"dynamo: {type(second).__name__}: {str(second)[:200]}") from None


def _module_fingerprint(module, example_inputs) -> bytes:
    h = hashlib.sha256()
    if module is not None:
        h.update(repr(module).encode())
        for k, v in module.state_dict().items():
            h.update(k.encode())
            h.update(v.detach().cpu().numpy().tobytes())
    for x in example_inputs:
        h.update(str(tuple(getattr(x, "shape", ()))).encode())
    return h.digest()


class Target(abc.ABC):
    """A place to run and time a model. Subclasses implement ``device`` and ``_prepare``.

    Every target takes ``timing`` (``TimingPolicy`` fields) and ``remeasure`` (true: each figure is
    timed afresh once by this object, and cached, instead of taken from the cache; also set for
    every target by ``TRADEOFF_REMEASURE=1``).
    """

    kind = "target"

    def __init__(self, name: str | None = None, cache: MeasurementCache | bool | None = True,
                 remeasure: bool = False, **settings: Any):
        allowed = target_settings(type(self))
        unknown = sorted(set(settings) - allowed)
        if unknown:   # a misspelt or misplaced setting would otherwise be ignored without a word
            raise ValueError(f"{', '.join(unknown)}: not a setting of the {self.kind} target; allowed: "
                             f"{', '.join(sorted(allowed))}")
        self.name = name or self.kind
        self.settings = dict(settings)
        self.policy = TimingPolicy.from_settings(self.settings.get("timing", {}))
        # how often a figure is timed changes no figure: out of describe() and the cache key, so a
        # forced or repeated measurement replaces the very row a plain run reads
        if not isinstance(remeasure, bool):
            raise ValueError(f"remeasure {remeasure!r} is not true or false")
        self.remeasure = remeasure or remeasure_forced()
        self._remeasured: set[str] = set()    # keys timed afresh by this object (remeasure: once each)
        timing = self.settings.get("timing")
        if isinstance(timing, dict) and "remeasure_noisy" in timing:
            timing = {k: v for k, v in timing.items() if k != "remeasure_noisy"}
            if timing:
                self.settings["timing"] = timing
            else:
                del self.settings["timing"]
        if cache is True:
            cache = MeasurementCache()
        self.cache = cache if isinstance(cache, MeasurementCache) else None  # (an empty cache is falsy)

    @property
    @abc.abstractmethod
    def device(self) -> str:
        """A stable id of the device this target times on (part of the lock and the cache key)."""
        raise NotImplementedError

    def unavailable(self) -> str | None:
        """Why this machine cannot run the target (``setting: reason, available ...``), or None; checked at validate time."""
        return None

    def describe(self) -> dict[str, Any]:
        """Everything that changes a figure: recorded with each measurement and in its cache key."""
        return {"kind": self.kind, "device": self.device, **self.settings}

    @abc.abstractmethod
    def _prepare(self, artifact: Artifact) -> tuple[Callable[[], Any], Callable | None]:
        """Compile; return (run once, optional timer(fn, number) -> ms per call)."""
        raise NotImplementedError

    def measure(self, artifact: Artifact) -> LatencyStats:
        settings = self.describe()
        key = measurement_key(artifact.digest(), self.kind, settings)
        if self.cache is not None and not (self.remeasure and key not in self._remeasured):
            hit = self.cache.get(key, int(self.policy.remeasure_noisy))
            if hit is not None:
                return hit
        t0 = time.perf_counter()
        with device_lock(self.device):
            try:
                run, timer = self._prepare(artifact)
                ref = self._reference() if self.policy.reference else None
                stats = time_callable(run, self.policy, timer, ref, target=self.name, device=self.device,
                                      settings=settings)
            except TargetError:
                raise
            except Exception as e:  # noqa: BLE001 - the runtime's own error, as the trial's reason
                raise TargetError(f"{self.kind}: {type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}") from e
        stats.seconds = time.perf_counter() - t0
        if stats.ref_ratio:
            ref_ms = stats.median_ms / stats.ref_ratio
            first = self.__dict__.setdefault("_ref_first_ms", ref_ms)
            stats.ref_drift = ref_ms / first - 1.0
            if abs(stats.ref_drift) > 0.10:   # the yardstick moved: not a clean figure
                stats.flag("drift")
        if self.cache is not None:
            self.cache.put(key, stats)
        if self.remeasure:
            self._remeasured.add(key)
        return stats


    def _reference(self):
        """The reference model compiled on this target, once (its run and timer)."""
        if getattr(self, "_ref", None) is None:
            self._ref = self._prepare(reference_artifact())
        return self._ref


def remeasure_forced() -> bool:
    """``TRADEOFF_REMEASURE=1`` (what ``tradeoff run --remeasure`` sets): every target times every figure afresh."""
    return os.environ.get("TRADEOFF_REMEASURE", "").strip().lower() not in ("", "0", "false", "no")


def reference_artifact() -> Artifact:
    """A fixed small model (3x3 convolution 16->16 + ReLU on 16x32x32, constant weights): the yardstick."""
    import onnx
    from onnx import helper, numpy_helper

    w = numpy_helper.from_array((np.arange(16 * 16 * 9, dtype=np.float32).reshape(16, 16, 3, 3) % 7 - 3) / 30, "w")
    g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
                           helper.make_node("Relu", ["c"], ["y"])], "reference",
                          [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 16, 32, 32])],
                          [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 16, 32, 32])], [w])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    x = np.linspace(-1, 1, 16 * 32 * 32, dtype=np.float32).reshape(1, 16, 32, 32)
    return Artifact("reference", (x,), onnx=model.SerializeToString())


RUNTIMES = Registry("runtime", __package__, {"ort": "ort", "tvm": "tvm", "tvm-rpc": "tvm_rpc", "torch": "torch"})
register_target = RUNTIMES.register


def target_kinds() -> list[str]:
    return RUNTIMES.names()


def make_target(runtime: str, name: str | None = None, **settings: Any) -> Target:
    """A target from its recipe form: ``{runtime: ort, threads: 1, batch: 1}``."""
    return RUNTIMES.get(runtime)(name=name, **settings)


def target_settings(cls: type) -> set[str]:
    """The settings a target class takes: the named arguments of every ``__init__`` along its bases, and ``timing``."""
    import inspect

    names = {"timing"}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is not None:
            names |= {n for n, prm in inspect.signature(init).parameters.items()
                      if n not in ("self", "name") and prm.kind not in (prm.VAR_KEYWORD, prm.VAR_POSITIONAL)}
    return names
