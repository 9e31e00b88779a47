"""Calibrating latency predictors on a target: measure sampled architectures, fit, score on held-out ones.

Every report carries the device's own repeatability (how often a re-timed model lands within
±10% of its first figure; 10 held-out models by default): the ceiling any predictor is judged
against, also kept in each predictor's quality so the gate's message can quote it.

Each model's kernels are timed right after the model itself, not minutes later when the
predictors fit: on a shared machine whose speed drifts over minutes, a model and the kernels it
is summed from then see the same machine.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.protocols import BuildableSpace
from .kernels import STATS, KernelTable
from .latency import KernelRegressor, LatencyPredictor, LookupTable, ModelRegressor

PREDICTORS = ("lut", "lut-constant", "lut-wall", "kernel-rf", "kernel-gbm", "model", "model-rf")
KERNEL_PREDICTORS = ("lut", "lut-constant", "kernel-rf", "kernel-gbm")   # those that read the (profiled) table


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


def calibrate(target, space: BuildableSpace, n_train: int = 60, n_test: int = 40, seed: int = 0,
              predictors: Sequence[str] = ("lut", "kernel-rf", "model"), n_extra: int = 0,
              table: KernelTable | None = None, retest: int = 10, stat: str = "median_ms",
              log=None) -> CalibrationReport:
    """Measure architectures sampled from ``space`` (a space that can ``build`` models) on ``target``, fit each predictor on ``n_train``, score it on ``n_test`` unseen ones.

    ``retest`` held-out models are timed a second time (cache bypassed): how often the device
    reproduces its own figure within ±10% is the ceiling any predictor is judged against.
    """
    if stat not in STATS:
        raise ValueError(f"stat {stat!r} is not one of {', '.join(STATS)}")
    unknown = [p for p in predictors if p not in PREDICTORS]
    if unknown:              # before any model is measured, not after
        raise ValueError(f"predictor {unknown[0]!r} is not one of {', '.join(PREDICTORS)}")
    t_start = time.perf_counter()
    configs = sample_architectures(space, n_train + n_test + n_extra, seed)
    table = table if table is not None else KernelTable(target, stat=stat)
    if table.stat != stat:
        raise ValueError(f"the kernel table holds {table.stat}, the calibration measures {stat}")
    pair = any(p in KERNEL_PREDICTORS for p in predictors)
    models, stats, t_build, t_measure, t_pair = [], [], 0.0, 0.0, 0.0
    for i, c in enumerate(configs[:n_train + n_test]):
        t0 = time.perf_counter()
        art = space.build(c)
        art.onnx_bytes()
        t_build += time.perf_counter() - t0
        t0 = time.perf_counter()
        st = target.measure(art)
        t_measure += time.perf_counter() - t0
        if pair:      # its kernels timed now, beside it: a device whose speed drifts over minutes drifts for both
            t0 = time.perf_counter()
            table.ensure(art)
            t_pair += time.perf_counter() - t0
        models.append((art, float(getattr(st, stat))))
        stats.append(st)
        if log:
            log(f"model {i + 1}/{n_train + n_test}: {st.median_ms:.3f} ms ±{st.ci_rel:.1%}")
    extra = [space.build(c) for c in configs[n_train + n_test:]]
    train, test = models[:n_train], models[n_train:]
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
    for name in predictors:   # every name is in PREDICTORS, checked before measuring
        p = makers[name]()
        tab = getattr(p, "table", table)
        t0, k0, m0 = time.perf_counter(), tab.seconds, tab.measured
        p.fit(train)
        t_fit = time.perf_counter() - t0
        m1 = tab.measured
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
        "seconds": {"total": time.perf_counter() - t_start, "build_export": t_build, "measure_models": t_measure,
                    "kernels_beside_models": t_pair},
        "predictor_costs": timings,
        "held_out": {"measured_ms": y[n_train:].tolist(), "ci_rel": ci[n_train:].tolist(),
                     **{n: p.last_predictions.tolist() for n, p in fitted.items()}},
    }
    if retest:
        fresh = copy.copy(target)
        fresh.cache = None
        again = np.array([float(getattr(fresh.measure(a), stat)) for a, _ in test[:retest]])
        first = y[n_train:n_train + len(again)]
        rel = np.abs(again - first) / first
        summary["repeatability"] = {"n": len(again), "within_10pct": float(np.mean(rel <= 0.10)),
                                    "mape": float(rel.mean()), "max_rel": float(rel.max())}
        for p in fitted.values():       # the ceiling travels with each predictor's score, to the gate
            p.quality["repeatability_within_10pct"] = summary["repeatability"]["within_10pct"]
    summary["seconds"]["total"] = time.perf_counter() - t_start
    return CalibrationReport(target.describe(), fitted, summary, train, test)
