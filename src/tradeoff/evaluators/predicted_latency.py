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
                 metric: str = "latency_ms", check_family: bool = True):
        self.predictor, self.metric, self.check_family = predictor, metric, check_family
        self.min_within_10pct, self.min_kendall_tau = float(min_within_10pct), float(min_kendall_tau)
        self.name = f"predicted-{metric}"
        self.directions = {metric: "minimize"}
        self.check()

    def shortfalls(self) -> list[str]:
        q = self.predictor.quality
        if not q:
            return [f"latency predictor {self.predictor.name}: not evaluated on held-out models; calibrate it first"]
        n, out = int(q.get("n", 0)), []
        rep = q.get("repeatability_within_10pct")
        device = (f" (the device itself re-times {_pct(rep)} of models within ±10% of their first figure)"
                  if rep is not None else "")
        if q["within_10pct"] < self.min_within_10pct:
            out.append(f"latency predictor {self.predictor.name}: {_pct(q['within_10pct'])} within ±10% on {n} "
                       f"held-out models, the recipe requires {_pct(self.min_within_10pct)}{device}")
        if q["kendall_tau"] < self.min_kendall_tau:
            out.append(f"latency predictor {self.predictor.name}: Kendall τ {q['kendall_tau']:.2f} on {n} "
                       f"held-out models, the recipe requires {self.min_kendall_tau:.2f}")
        return out

    def check(self) -> None:
        short = self.shortfalls()
        if short:
            raise ValueError("; ".join(short) + " (measure latency instead, or calibrate on more models)")

    def family_gaps(self, artifact) -> list[str]:
        """Why ``artifact`` is outside the family the predictor was calibrated on (empty: inside)."""
        cov = getattr(self.predictor, "coverage", None)
        return cov.gaps(artifact) if (cov is not None and self.check_family) else []

    def __call__(self, artifact, context: Any = None) -> dict[str, float]:
        self.check()
        gaps = self.family_gaps(artifact)
        if gaps:
            raise ValueError(f"latency predictor {self.predictor.name} was not calibrated on models like "
                             f"{getattr(artifact, 'name', 'this one')}: " + "; ".join(gaps)
                             + " (this family needs its own calibration; measure latency instead)")
        return {self.metric: float(self.predictor.predict(artifact)), "latency_predicted": 1.0}
