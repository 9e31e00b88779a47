"""What a search logs for comparison in the MLflow UI: step-wise curves and table-view summaries.

Curves use ``step`` = trials done, so MLflow's chart view overlays several runs' convergence:
``hypervolume`` (at the run's reference, shared by its experiment), ``best_<objective>`` so far
and ``wall_clock_s``. The summaries fill the runs table: best and knee value per objective,
trials per minute, and the evaluations needed to reach 95% of the final hypervolume.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from ..engine.front import Front


def best_so_far(front: Front) -> dict[str, np.ndarray]:
    """Per objective, the best feasible value after each trial (NaN before the first)."""
    out = {}
    for o in front.objectives:
        best, vals = math.nan, []
        for t in front.trials:
            if t.ok and t.feasible:
                v = t.metrics[o.name]
                if math.isnan(best) or (v < best if o.direction == "minimize" else v > best):
                    best = v
            vals.append(best)
        out[o.name] = np.array(vals, dtype=float)
    return out


def evals_to_fraction(curve: np.ndarray, fraction: float = 0.95) -> int | None:
    """Trials needed to reach ``fraction`` of the curve's final value (None when the final value is 0)."""
    if len(curve) == 0 or curve[-1] <= 0:
        return None
    return int(np.argmax(curve >= fraction * curve[-1])) + 1


MAX_POINTS = 250   # per curve: a chart shows no more, and each point is a row in the store


def curve_steps(n: int, max_points: int = MAX_POINTS) -> list[int]:
    """The steps (1..n) a curve is logged at: all of them up to ``max_points``, else evenly spaced, always n.

    The spacing depends on ``max_points`` alone, so a run logged again after a resume repeats its points."""
    stride = max(1, -(-n // max_points))
    stride = 1 << (stride - 1).bit_length()   # a power of two: the points of a shorter run are among a longer one's
    return sorted({*range(stride, n + 1, stride), n}) if n else []


def curves(front: Front, wall_clock_s: Mapping[int, float] | None = None,
           max_points: int = MAX_POINTS) -> list[tuple[str, float, int]]:
    """(metric, value, step) rows: hypervolume, best_<objective> and wall_clock_s, step = trials done."""
    rows: list[tuple[str, float, int]] = []
    steps = curve_steps(len(front.trials), max_points)
    hv = front.hypervolume_curve()
    rows += [("hypervolume", float(hv[s - 1]), s) for s in steps]
    for name, vals in best_so_far(front).items():
        rows += [(f"best_{name}", float(vals[s - 1]), s) for s in steps if not math.isnan(vals[s - 1])]
    if wall_clock_s:
        rows += [("wall_clock_s", float(wall_clock_s[front.trials[s - 1].number]), s) for s in steps
                 if front.trials[s - 1].number in wall_clock_s]
    return rows


def summary_metrics(front: Front, elapsed_s: float | None) -> dict[str, float]:
    """Best and knee per objective, trials per minute, evaluations to 95% of the final hypervolume."""
    out: dict[str, float] = {}
    for name, v in front.best().items():
        if not math.isnan(v):
            out[f"best_{name}"] = v
    knee = front.knee()
    if knee is not None:
        out.update({f"knee_{n}": knee.metrics[n] for n in front.names})
    if elapsed_s and elapsed_s > 0:
        out["trials_per_min"] = 60.0 * len(front.trials) / elapsed_s
    n95 = evals_to_fraction(front.hypervolume_curve())
    if n95 is not None:
        out["evals_to_95pct_hv"] = n95
    return out


def grouping_tags(info: Mapping, spec: Mapping) -> dict[str, str]:
    """algorithm, workload and target as tags, so the MLflow UI can group and filter runs by them."""
    tags = {"algorithm": str(spec.get("algorithm", "")), "seed": str(spec.get("seed", ""))}
    if info.get("workload"):
        tags["workload"] = str(info["workload"])
    targets = (info.get("resolved") or {}).get("targets") or info.get("targets") or {}
    if targets:
        tags["target"] = ", ".join(f"{n}:{(t or {}).get('runtime', '?')}" for n, t in targets.items())
    else:
        tags["target"] = "none (precomputed or user function)"
    return {k: v for k, v in tags.items() if v}


def series(rows: Sequence[tuple[str, float, int]], name: str) -> list[tuple[int, float]]:
    return [(step, v) for k, v, step in rows if k == name]
