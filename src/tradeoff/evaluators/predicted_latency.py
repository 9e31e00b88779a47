"""Predicted latency as an evaluator, allowed only where its predictor has passed a held-out check."""

from __future__ import annotations

from typing import Any

from ..predictors.latency import LatencyPredictor


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
