"""Latency predictors built from measurements on the user's own device, and a gate on their accuracy.

Three ways to predict a model's latency on a target without timing the model itself:

- ``LookupTable`` (FBNet / OFA): every distinct fused kernel is timed alone once on the target
  and kept in a table on disk; a model costs the sum of its kernels plus a correction fitted
  by least squares on calibration models.
- ``KernelRegressor`` (nn-Meter): one random forest per kernel type, trained on kernels timed
  alone, predicts kernels it has never seen; summed and corrected the same way.
- ``ModelRegressor``: whole-model features (MACs, activations, layer counts per kernel type)
  to latency; the simplest learned baseline.

Timing a kernel alone is not timing it inside a model, in two ways. ONNX Runtime's CPU provider
converts a lone kernel's input to its blocked NCHWc layout and its output back, which inside a
model happens once, not per kernel; so on ONNX Runtime the table reads each kernel's own nodes
from the runtime's profiler (``KernelTable(timing="profile")``). And a kernel run over and over
alone finds its weights in cache, while inside a model they were evicted by the layers between;
so the sum is corrected by least squares on the calibration models with a scale, a cost per
kernel, a cost per weight and a constant (``correction="linear"``; about 0.1 ms per million fp32
weights here, i.e. the ~40 GB/s they stream at). Timed by wall clock (``"wall"``, any target)
the correction also learns a cost per element of the activations entering and leaving each
kernel (``"boundary"``); ``"constant"`` is the plain FBNet sum plus a constant.

A predictor is only as good as its held-out accuracy (``calibration.calibrate`` measures it);
the ``PredictedLatency`` evaluator refuses to stand in for measurement unless it is good enough.
"""

from __future__ import annotations

import abc
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from .coverage import Coverage
from .kernels import FEATURES, KERNEL_TYPES, Kernel, KernelTable, model_kernels
from .quality import quality

Measured = Sequence[tuple[Any, float]]   # (artifact, measured latency in ms)

# -- whole-model features ---------------------------------------------------------------------

def _act_in(k: Kernel) -> float:
    return float(sum(int(np.prod(s)) for s in k.inputs))


def _act_out(k: Kernel) -> float:
    return float(np.prod(k.output)) if k.output else 0.0


def model_summary(artifact) -> dict[str, float]:
    """Whole-model features: MACs, params, activations and kernel counts, in total and per kernel type."""
    ks = model_kernels(artifact)
    out: dict[str, float] = {"macs": float(sum(k.macs for k in ks)), "params": float(sum(k.params for k in ks)),
                             "kernels": float(len(ks)), "act": float(sum(_act_in(k) + _act_out(k) for k in ks))}
    for t in KERNEL_TYPES:
        sel = [k for k in ks if k.op == t]
        out[f"{t}_n"] = float(len(sel))
        out[f"{t}_macs"] = float(sum(k.macs for k in sel))
        out[f"{t}_act"] = float(sum(_act_in(k) + _act_out(k) for k in sel))
    return out


class RuntimeNodes:
    """``artifact -> Counter`` of the nodes ONNX Runtime runs for it on ``target`` (once per digest; picklable)."""

    def __init__(self, target):
        self.target = target
        self.seen: dict[str, Any] = {}

    def __call__(self, artifact):
        from ..hardware.ort_dispatch import executed_nodes

        key = artifact.digest()
        if key not in self.seen:
            self.seen[key] = executed_nodes(self.target, artifact)
        return self.seen[key]


def runtime_nodes(target) -> RuntimeNodes:
    return RuntimeNodes(target)


# -- predictors ------------------------------------------------------------------------------

class LatencyPredictor(abc.ABC):
    """``fit`` on measured models, ``predict`` one artifact in ms, ``evaluate`` on held-out models."""

    name = "latency"
    quality: dict[str, float] | None = None
    coverage: Coverage | None = None      # the family it was calibrated on (set by fit)

    def learn_coverage(self, artifacts: Sequence[Any]) -> None:
        self.coverage = Coverage.of(artifacts, nodes=self.runtime_nodes())

    def runtime_nodes(self):
        """Op types of the nodes the target's runtime executes for a model, where it can say (ONNX Runtime)."""
        target = getattr(getattr(self, "table", None), "target", None)
        return runtime_nodes(target) if target is not None and target.kind == "ort" else None

    @abc.abstractmethod
    def fit(self, measured: Measured) -> LatencyPredictor:
        raise NotImplementedError

    @abc.abstractmethod
    def predict(self, artifact) -> float:
        raise NotImplementedError

    def predict_many(self, artifacts: Sequence[Any]) -> np.ndarray:
        return np.array([self.predict(a) for a in artifacts], dtype=float)

    def evaluate(self, held_out: Measured) -> dict[str, float]:
        """Accuracy on models the predictor never saw; kept, because the gate reads it."""
        if len(held_out) < 3:
            raise ValueError(f"latency predictor {self.name}: evaluate needs at least 3 held-out models")
        y = np.array([float(ms) for _, ms in held_out])
        t0 = time.perf_counter()
        p = self.predict_many([a for a, _ in held_out])
        self.quality = {**quality(y, p), "predict_s": time.perf_counter() - t0}
        self.last_predictions = p
        return dict(self.quality)


CORRECTIONS = ("constant", "linear", "boundary")


def _correction_features(kernels: list[Kernel], times: Sequence[float], correction: str) -> np.ndarray:
    total = float(np.sum(times))
    if correction == "constant":
        return np.array([total, 1.0])
    weights = sum(k.params for k in kernels) / 1e6    # warm in cache when a kernel runs alone, cold in a model
    if correction == "linear":
        return np.array([total, float(len(kernels)), weights, 1.0])
    act_in = sum(_act_in(k) for k in kernels) / 1e6
    act_out = sum(_act_out(k) for k in kernels) / 1e6
    return np.array([total, act_in, act_out, float(len(kernels)), weights, 1.0])


def _weighted_lstsq(F: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least squares on relative error: each row weighted by 1/y."""
    w = 1.0 / np.maximum(y, 1e-9)
    coef, *_ = np.linalg.lstsq(F * w[:, None], y * w, rcond=None)
    return coef


class _KernelSum(LatencyPredictor):
    """Shared by the table and the kernel regressor: sum of kernel latencies, then the correction."""

    correction = "auto"
    coef: np.ndarray | None = None
    table: KernelTable

    def kernel_times(self, artifact) -> tuple[list[Kernel], list[float]]:
        raise NotImplementedError

    def _resolve(self, correction: str) -> str:
        if correction == "auto":
            return "linear" if self.table.timing == "profile" else "boundary"
        if correction not in CORRECTIONS:
            raise ValueError(f"correction {correction!r} is not one of auto, {', '.join(CORRECTIONS)}")
        return correction

    def _fit_correction(self, measured: Measured) -> None:
        self.learn_coverage([a for a, _ in measured])
        F = np.stack([_correction_features(*self.kernel_times(a), self.correction) for a, _ in measured])
        y = np.array([float(ms) for _, ms in measured])
        if self.correction == "constant":            # slope 1: only the per-model overhead is learned
            w2 = 1.0 / np.maximum(y, 1e-9) ** 2
            self.coef = np.array([1.0, float(np.sum(w2 * (y - F[:, 0])) / np.sum(w2))])
            return
        if len(y) < 2 * F.shape[1]:
            raise ValueError(f"latency predictor {self.name}: the {self.correction} correction needs at least "
                             f"{2 * F.shape[1]} measured models, got {len(y)}")
        self.coef = _weighted_lstsq(F, y)

    def predict(self, artifact) -> float:
        if self.coef is None:
            raise RuntimeError(f"latency predictor {self.name}: call fit first")
        ks, ts = self.kernel_times(artifact)
        pred = float(_correction_features(ks, ts, self.correction) @ self.coef)
        return max(pred, 0.1 * float(np.sum(ts)), 1e-6)


class LookupTable(_KernelSum):
    """FBNet/OFA-style: each distinct kernel timed alone once on the target, summed and corrected.

    A kernel of a model to predict that is not yet in the table is timed then (once, ever);
    with ``measure_missing=False`` such a model raises instead.
    """

    def __init__(self, target, table: KernelTable | None = None, correction: str = "auto",
                 measure_missing: bool = True, name: str = "lut"):
        self.table = table if table is not None else KernelTable(target)
        self.correction, self.measure_missing, self.name = self._resolve(correction), measure_missing, name

    def kernel_times(self, artifact):
        pairs = self.table.ensure(artifact, measure=self.measure_missing)
        return [k for k, _ in pairs], [t for _, t in pairs]

    def fit(self, measured: Measured) -> LookupTable:
        self._fit_correction(measured)
        return self


MIN_KERNEL_MS = 1e-4    # a kernel read net of the profiler's floor can read 0; the regressors learn logs


def _kernel_x(k: Kernel) -> np.ndarray:
    f = k.features()
    return np.log1p(np.array([float(f[n]) for n in FEATURES]))


def _work(k: Kernel) -> float:
    """MACs plus elements moved: the regressors learn log time per unit of work, which trees extrapolate better."""
    return float(k.macs) + k.bytes / 4.0 + 1.0


class KernelRegressor(_KernelSum):
    """nn-Meter-style: a regressor per kernel type on kernel features, trained on kernels timed alone.

    It trains on the kernels of the fitted models (and of ``extra`` architectures, timed only
    kernel by kernel); it never times a kernel when predicting.
    """

    def __init__(self, target, table: KernelTable | None = None, regressor: str = "rf",
                 correction: str = "auto", extra: Sequence[Any] = (), seed: int = 0, name: str = "kernel-rf"):
        self.table = table if table is not None else KernelTable(target)
        self.regressor, self.extra, self.seed, self.name = regressor, extra, seed, name
        self.correction = self._resolve(correction)
        self.models: dict[str, Any] = {}
        self.n_kernels: dict[str, int] = {}
        self._cache: dict[str, float] = {}

    def _make(self):
        from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor

        if self.regressor == "rf":
            return RandomForestRegressor(n_estimators=200, min_samples_leaf=1, max_features=0.7,
                                         random_state=self.seed, n_jobs=1)
        if self.regressor == "gbm":
            return GradientBoostingRegressor(n_estimators=300, learning_rate=0.05, min_samples_leaf=3,
                                             random_state=self.seed)     # one thread (no OpenMP), as rf
        raise ValueError(f"regressor {self.regressor!r} is not rf or gbm")

    def fit(self, measured: Measured) -> KernelRegressor:
        seen: dict[str, tuple[Kernel, float]] = {}
        for a in [*(a for a, _ in measured), *self.extra]:
            for k, t in self.table.ensure(a):
                seen[k.key] = (k, t)
        by_type: dict[str, list[tuple[Kernel, float]]] = {}
        for k, t in seen.values():
            by_type.setdefault(k.op, []).append((k, t))
        self.models, self.n_kernels = {}, {op: len(v) for op, v in by_type.items()}
        allx = np.stack([np.r_[_kernel_x(k), [KERNEL_TYPES.index(k.op)]] for k, _ in seen.values()])
        ally = np.log([max(t, MIN_KERNEL_MS) / _work(k) for k, t in seen.values()])
        self.models["*"] = self._make().fit(allx, ally)
        for op, rows in by_type.items():
            if len(rows) >= 5:
                X = np.stack([_kernel_x(k) for k, _ in rows])
                self.models[op] = self._make().fit(X, np.log([max(t, MIN_KERNEL_MS) / _work(k) for k, t in rows]))
        self._cache: dict[str, float] = {}
        self._fit_correction(measured)
        return self

    def kernel_ms(self, k: Kernel) -> float:
        if k.key not in self._cache:
            if k.op in self.models:
                v = self.models[k.op].predict(_kernel_x(k)[None])[0]
            else:
                v = self.models["*"].predict(np.r_[_kernel_x(k), [KERNEL_TYPES.index(k.op)]][None])[0]
            self._cache[k.key] = float(math.exp(v)) * _work(k)
        return self._cache[k.key]

    def kernel_times(self, artifact):
        ks = model_kernels(artifact)
        return ks, [self.kernel_ms(k) for k in ks]


MODEL_FEATURES = ("conv_macs", "conv_act", "conv_n", "dwconv_macs", "dwconv_act", "dwconv_n", "params", "act",
                  "kernels")


class ModelRegressor(LatencyPredictor):
    """Whole-model features to latency: ``linear`` (weighted least squares) or a tree ensemble (rf, gbm)."""

    def __init__(self, regressor: str = "linear", seed: int = 0, name: str = "model"):
        self.regressor, self.seed, self.name = regressor, seed, name

    def _x(self, artifact) -> np.ndarray:
        s = model_summary(artifact)
        return np.array([s[f] / (1e6 if ("macs" in f or "act" in f or f == "params") else 1.0)
                         for f in MODEL_FEATURES])

    def fit(self, measured: Measured) -> ModelRegressor:
        self.learn_coverage([a for a, _ in measured])
        X = np.stack([self._x(a) for a, _ in measured])
        y = np.array([float(ms) for _, ms in measured])
        if self.regressor == "linear":
            if len(y) < 2 * (X.shape[1] + 1):
                raise ValueError(f"latency predictor {self.name}: needs at least {2 * (X.shape[1] + 1)} "
                                 f"measured models, got {len(y)}")
            self.coef = _weighted_lstsq(np.c_[X, np.ones(len(X))], y)
        else:
            from .models import make_predictor

            self.model = make_predictor(self.regressor, self.seed).fit(np.log1p(X), np.log(y))
        return self

    def predict(self, artifact) -> float:
        x = self._x(artifact)
        if self.regressor == "linear":
            return max(float(np.r_[x, 1.0] @ self.coef), 1e-6)
        return float(math.exp(self.model.predict(np.log1p(x)[None])[0][0]))
