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

A predictor is only as good as its held-out accuracy; ``PredictedLatency`` refuses to stand
in for measurement unless that accuracy reaches the recipe's thresholds.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .kernels import FEATURES, KERNEL_TYPES, STATS, Kernel, KernelTable, model_kernels
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


# -- predictors ------------------------------------------------------------------------------

class LatencyPredictor:
    """``fit`` on measured models, ``predict`` one artifact in ms, ``evaluate`` on held-out models."""

    name = "latency"
    quality: dict[str, float] | None = None

    def fit(self, measured: Measured) -> "LatencyPredictor":
        raise NotImplementedError

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

    def fit(self, measured: Measured) -> "LookupTable":
        self._fit_correction(measured)
        return self


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
        from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor

        if self.regressor == "rf":
            return RandomForestRegressor(n_estimators=200, min_samples_leaf=1, max_features=0.7,
                                         random_state=self.seed, n_jobs=1)
        if self.regressor == "gbm":
            return HistGradientBoostingRegressor(max_iter=300, learning_rate=0.05, min_samples_leaf=3,
                                                 random_state=self.seed)
        raise ValueError(f"regressor {self.regressor!r} is not rf or gbm")

    def fit(self, measured: Measured) -> "KernelRegressor":
        seen: dict[str, tuple[Kernel, float]] = {}
        for a in [*(a for a, _ in measured), *self.extra]:
            for k, t in self.table.ensure(a):
                seen[k.key] = (k, t)
        by_type: dict[str, list[tuple[Kernel, float]]] = {}
        for k, t in seen.values():
            by_type.setdefault(k.op, []).append((k, t))
        self.models, self.n_kernels = {}, {op: len(v) for op, v in by_type.items()}
        allx = np.stack([np.r_[_kernel_x(k), [KERNEL_TYPES.index(k.op)]] for k, _ in seen.values()])
        ally = np.log([t / _work(k) for k, t in seen.values()])
        self.models["*"] = self._make().fit(allx, ally)
        for op, rows in by_type.items():
            if len(rows) >= 5:
                X = np.stack([_kernel_x(k) for k, _ in rows])
                self.models[op] = self._make().fit(X, np.log([t / _work(k) for k, t in rows]))
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

    def fit(self, measured: Measured) -> "ModelRegressor":
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


# -- the gate ----------------------------------------------------------------------------------

def _pct(v: float) -> str:
    """82.5% as 82.5%, 95% as 95%: a refusal never reads as if the figure met the bar."""
    return f"{100 * v:.1f}".rstrip("0").rstrip(".") + "%"


class PredictedLatency:
    """An evaluator that predicts latency instead of timing, and refuses to unless the predictor is good enough."""

    def __init__(self, predictor: LatencyPredictor, min_within_10pct: float = 0.95, min_kendall_tau: float = 0.9,
                 metric: str = "latency_ms"):
        self.predictor, self.metric = predictor, metric
        self.min_within_10pct, self.min_kendall_tau = float(min_within_10pct), float(min_kendall_tau)
        self.name = f"predicted-{metric}"
        self.directions = {metric: "minimize"}
        self.check()

    def shortfalls(self) -> list[str]:
        q = self.predictor.quality
        if not q:
            return [f"latency predictor {self.predictor.name}: not evaluated on held-out models; calibrate it first"]
        n, out = int(q.get("n", 0)), []
        if q["within_10pct"] < self.min_within_10pct:
            out.append(f"latency predictor {self.predictor.name}: {_pct(q['within_10pct'])} within ±10% on {n} "
                       f"held-out models, the recipe requires {_pct(self.min_within_10pct)}")
        if q["kendall_tau"] < self.min_kendall_tau:
            out.append(f"latency predictor {self.predictor.name}: Kendall τ {q['kendall_tau']:.2f} on {n} "
                       f"held-out models, the recipe requires {self.min_kendall_tau:.2f}")
        return out

    def check(self) -> None:
        short = self.shortfalls()
        if short:
            raise ValueError("; ".join(short) + " (measure latency instead, or calibrate on more models)")

    def __call__(self, artifact, context: Any = None) -> dict[str, float]:
        self.check()
        return {self.metric: float(self.predictor.predict(artifact)), "latency_predicted": 1.0}


# -- calibration -------------------------------------------------------------------------------

@dataclass
class CalibrationReport:
    """Held-out accuracy of each predictor on one target, with what the calibration cost."""

    target: dict[str, Any]
    predictors: dict[str, LatencyPredictor]
    summary: dict[str, Any] = field(default_factory=dict)
    train: list = field(default_factory=list)
    test: list = field(default_factory=list)

    def quality(self) -> dict[str, dict[str, float]]:
        return {n: dict(p.quality or {}) for n, p in self.predictors.items()}

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, **self.summary, "quality": self.quality()}


def sample_architectures(space, n: int, seed: int = 0) -> list[dict]:
    """``n`` distinct configs of ``space`` (by key), reproducibly."""
    rng = np.random.default_rng(seed)
    seen, out = set(), []
    for _ in range(n * 50):
        c = space.sample(rng)
        k = space.key(c)
        if k not in seen:
            seen.add(k)
            out.append(c)
            if len(out) == n:
                break
    return out


def calibrate(target, space, n_train: int = 60, n_test: int = 40, seed: int = 0,
              predictors: Sequence[str] = ("lut", "kernel-rf", "model"), n_extra: int = 0,
              table: KernelTable | None = None, retest: int = 0, stat: str = "median_ms",
              log=None) -> CalibrationReport:
    """Measure architectures sampled from ``space`` (a space that can ``build`` models) on ``target``, fit each predictor on ``n_train``, score it on ``n_test`` unseen ones.

    ``retest`` held-out models are timed a second time (cache bypassed): how often the device
    reproduces its own figure within ±10% is the ceiling any predictor is judged against.
    """
    if stat not in STATS:
        raise ValueError(f"stat {stat!r} is not one of {', '.join(STATS)}")
    t_start = time.perf_counter()
    configs = sample_architectures(space, n_train + n_test + n_extra, seed)
    models, stats, t_build, t_measure = [], [], 0.0, 0.0
    for i, c in enumerate(configs[:n_train + n_test]):
        t0 = time.perf_counter()
        art = space.build(c)
        art.onnx_bytes()
        t_build += time.perf_counter() - t0
        t0 = time.perf_counter()
        st = target.measure(art)
        t_measure += time.perf_counter() - t0
        models.append((art, float(getattr(st, stat))))
        stats.append(st)
        if log:
            log(f"model {i + 1}/{n_train + n_test}: {st.median_ms:.3f} ms ±{st.ci_rel:.1%}")
    extra = [space.build(c) for c in configs[n_train + n_test:]]
    train, test = models[:n_train], models[n_train:]
    table = table if table is not None else KernelTable(target, stat=stat)
    if table.stat != stat:
        raise ValueError(f"the kernel table holds {table.stat}, the calibration measures {stat}")
    tables = {table.timing: table}

    def wall() -> KernelTable:
        return tables.setdefault("wall", KernelTable(target, stat=stat, timing="wall"))

    makers = {"lut": lambda: LookupTable(target, table),
              "lut-constant": lambda: LookupTable(target, table, correction="constant", name="lut-constant"),
              "lut-wall": lambda: LookupTable(target, wall(), name="lut-wall"),
              "kernel-rf": lambda: KernelRegressor(target, table, "rf", extra=extra),
              "kernel-gbm": lambda: KernelRegressor(target, table, "gbm", extra=extra, name="kernel-gbm"),
              "model": lambda: ModelRegressor("linear"),
              "model-rf": lambda: ModelRegressor("rf", seed=seed, name="model-rf")}
    fitted, timings = {}, {}
    for name in predictors:
        if name not in makers:
            raise ValueError(f"predictor {name!r} is not one of {', '.join(makers)}")
        p = makers[name]()
        tab = getattr(p, "table", table)
        t0, k0, m0 = time.perf_counter(), tab.seconds, tab.measured
        p.fit(train)
        t_fit = time.perf_counter() - t0
        k1, m1 = tab.seconds, tab.measured
        p.evaluate(test)
        timings[name] = {"fit_s": t_fit, "kernel_timing_s": tab.seconds - k0, "kernels_timed_fit": m1 - m0,
                         "kernels_timed_predict": tab.measured - m1, "evaluate_s": p.quality["predict_s"]}
        fitted[name] = p
        if log:
            q = p.quality
            log(f"{name}: {q['within_10pct']:.0%} within ±10%, MAPE {q['mape']:.1%}, τ {q['kendall_tau']:.3f}")
    ci = np.array([s.ci_rel for s in stats])
    y = np.array([ms for _, ms in models])
    summary = {
        "n_train": n_train, "n_test": n_test, "n_extra": n_extra, "seed": seed, "stat": stat,
        "policy": dict(target.policy.__dict__),
        "models": {"min_ms": float(y.min()), "median_ms": float(np.median(y)), "max_ms": float(y.max()),
                   "ci_rel_median": float(np.median(ci)), "ci_rel_p90": float(np.percentile(ci, 90)),
                   "noisy_share": float(np.mean([s.noisy for s in stats])),
                   "load_per_core_median": float(np.median([getattr(s, "load", 0.0) for s in stats])),
                   "cached_share": float(np.mean([s.cached for s in stats])), "ci_rel": ci.tolist()},
        "kernels": {t.timing: {"in_table": len(t), "timed_now": t.measured, "timing_s": t.seconds,
                               "table": str(t.path)} for t in tables.values()},
        "seconds": {"total": time.perf_counter() - t_start, "build_export": t_build, "measure_models": t_measure},
        "predictor_costs": timings,
        "held_out": {"measured_ms": y[n_train:].tolist(), "ci_rel": ci[n_train:].tolist(),
                     **{n: p.last_predictions.tolist() for n, p in fitted.items()}},
    }
    if retest:
        import copy

        fresh = copy.copy(target)
        fresh.cache = None
        again = np.array([float(getattr(fresh.measure(a), stat)) for a, _ in test[:retest]])
        first = y[n_train:n_train + len(again)]
        rel = np.abs(again - first) / first
        summary["repeatability"] = {"n": len(again), "within_10pct": float(np.mean(rel <= 0.10)),
                                    "mape": float(rel.mean()), "max_rel": float(rel.max())}
    summary["seconds"]["total"] = time.perf_counter() - t_start
    # the same scores on the held-out models whose own measurement is precise (median's CI within the policy's)
    precise = ci[n_train:] <= target.policy.rel_ci + 1e-9
    if precise.sum() >= 3:
        summary["quality_precise"] = {n: quality(y[n_train:][precise], p.last_predictions[precise])
                                      for n, p in fitted.items()}
    return CalibrationReport(target.describe(), fitted, summary, train, test)
