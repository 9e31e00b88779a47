"""Front: the Pareto-optimal trials of a search, its hypervolume and its tables.

Non-dominated filtering and hypervolume live in ``core.pareto`` (moocore, pymoo's own backend).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.pareto import derive_reference, hypervolume, nondominated_mask  # noqa: F401  (re-exported)
from ..core.trial import Trial
from ..hardware.timing import NOISY_REASONS
from .objectives import Constraint, Objective
from .reference import DERIVED, outside
from .reference import label as ref_label


@dataclass
class Front:
    """Every trial of a search and the non-dominated, feasible ones among them."""

    objectives: list[Objective]
    trials: list[Trial]
    constraints: list[Constraint] = field(default_factory=list)
    reference_point: dict[str, float] | None = None  # user units; derived when None
    reference_source: str | None = None  # where reference_point came from: recipe, experiment NAME, ...
    run_id: str | None = None       # the search's id: tradeoff show / resume take it
    stop_reason: str | None = None  # why the search stopped before its budget (e.g. the space is exhausted)
    _curves: dict = field(default_factory=dict, repr=False, compare=False)  # hypervolume curves already computed

    # -- views -------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return [o.name for o in self.objectives]

    def _signs(self) -> np.ndarray:
        return np.array([o.sign for o in self.objectives])

    def values(self, trials: Sequence[Trial]) -> np.ndarray:
        """Minimised objective matrix for the given complete trials."""
        if not trials:
            return np.zeros((0, len(self.objectives)))
        return np.array([[o.sign * float(t.metrics[o.name]) for o in self.objectives] for t in trials])

    @property
    def complete(self) -> list[Trial]:
        return [t for t in self.trials if t.ok]

    @property
    def failed(self) -> list[Trial]:
        return [t for t in self.trials if not t.ok]

    @property
    def feasible(self) -> list[Trial]:
        return [t for t in self.trials if t.ok and t.feasible]

    @property
    def baselines(self) -> dict[str, dict[str, float]]:
        """The workload's named baselines (fp32, int8, ...) as evaluated: name -> metrics in user units."""
        return {t.baseline: dict(t.metrics) for t in self.trials if t.baseline and t.ok}

    @property
    def searched(self) -> list[Trial]:
        """The trials the algorithm asked for (baselines evaluated up front are not among them)."""
        return [t for t in self.trials if not t.baseline]

    @property
    def members(self) -> list[Trial]:
        """The Pareto-optimal feasible trials, sorted by the first objective."""
        pool = self.feasible
        if not pool:
            return []
        keep = nondominated_mask(self.values(pool))
        out = [t for t, k in zip(pool, keep) if k]
        return sorted(out, key=lambda t: (self._signs()[0] * t.metrics[self.names[0]], t.number))

    def best(self) -> dict[str, float]:
        """The best feasible value of each objective (in its own direction), NaN when none."""
        pool = self.feasible
        out = {}
        for o in self.objectives:
            vals = [t.metrics[o.name] for t in pool]
            out[o.name] = (min(vals) if o.direction == "minimize" else max(vals)) if vals else math.nan
        return out

    def knee(self) -> Trial | None:
        """The member closest to the ideal point once each objective is scaled to [0, 1] over the front."""
        members = self.members
        if not members:
            return None
        F = self.values(members)
        lo, hi = F.min(axis=0), F.max(axis=0)
        scaled = (F - lo) / np.where(hi > lo, hi - lo, 1.0)
        return members[int(np.argmin(np.linalg.norm(scaled, axis=1)))]

    # -- hypervolume -------------------------------------------------------------------------
    def reference(self, reference: Mapping[str, float] | None = None) -> dict[str, float]:
        """The reference point in user units: given, else stored, else nadir of the feasible trials + 10%."""
        if reference is not None:
            missing = [n for n in self.names if n not in reference]
            if missing:
                raise ValueError(f"reference point lacks {', '.join(missing)}")
            return {n: float(reference[n]) for n in self.names}
        if self.reference_point is not None:
            return dict(self.reference_point)
        F = self.values(self.feasible)
        if len(F) == 0:
            return {n: math.nan for n in self.names}
        ref = derive_reference(F)
        return {n: float(s * r) for n, s, r in zip(self.names, self._signs(), ref)}

    def own_reference(self) -> dict[str, float]:
        """This run's own reference (nadir of its feasible trials + 10%), whatever reference_point says."""
        return Front(self.objectives, self.trials, self.constraints).reference()

    def outside_reference(self, reference: Mapping[str, float] | None = None) -> int:
        """Front members that do not dominate the reference point, so count for nothing in its hypervolume."""
        ref = reference if reference is not None else self.reference_point
        return outside(self.objectives, self.values(self.members), ref)

    def hypervolume_text(self) -> str:
        """The hypervolume as the progress line shows it: the value, its reference, and what lies outside."""
        if not self.members:
            return "HV -"
        hv = f"HV {self.hypervolume():.5g} @ {ref_label(self.reference_point, self.reference_source)}"
        out = self.outside_reference()
        if not out:
            return hv
        n = len(self.members)
        if out < n:
            return f"{hv}; {out}/{n} front points outside it"
        own = self.hypervolume(self.own_reference())
        return f"{hv}; all {n} front points outside it, HV {own:.5g} @ ref {DERIVED}"

    def _ref_min(self, reference: Mapping[str, float] | None) -> np.ndarray:
        ref = self.reference(reference)
        return np.array([o.sign * ref[o.name] for o in self.objectives])

    def hypervolume(self, reference: Mapping[str, float] | None = None) -> float:
        """Hypervolume of the feasible trials against the reference point (in user units)."""
        ref = self._ref_min(reference)
        if not np.all(np.isfinite(ref)):
            return 0.0
        return hypervolume(self.values(self.members), ref)

    def hypervolume_curve(self, reference: Mapping[str, float] | None = None) -> np.ndarray:
        """Hypervolume after each trial, in trial order (flat through failed/infeasible ones)."""
        ref = self._ref_min(reference)
        memo = (len(self.trials), tuple(ref))
        if memo in self._curves:
            return self._curves[memo].copy()
        curve = np.zeros(len(self.trials))
        if not np.all(np.isfinite(ref)):
            return curve
        pts: list[np.ndarray] = []
        hv = 0.0
        for i, t in enumerate(self.trials):
            if t.ok and t.feasible:
                p = self.values([t])[0]
                if np.all(p < ref):
                    pts.append(p)
                    F = np.array(pts)
                    F = F[nondominated_mask(F)]
                    pts = list(F)
                    hv = hypervolume(F, ref)
            curve[i] = hv
        self._curves[memo] = curve
        return curve.copy()

    # -- tables ------------------------------------------------------------------------------
    def rows(self, trials: Sequence[Trial] | None = None) -> list[dict[str, Any]]:
        trials = self.members if trials is None else trials
        out = []
        for t in trials:
            row: dict[str, Any] = {"trial": t.number}
            row.update({n: t.metrics.get(n) for n in self.names})
            row.update({k: v for k, v in t.metrics.items() if k not in self.names})
            row.update(t.config)
            out.append(row)
        return out

    def to_frame(self, trials: Sequence[Trial] | None = None):
        import pandas as pd

        return pd.DataFrame(self.rows(trials))

    def to_json(self, reference: Mapping[str, float] | None = None) -> str:
        ref = self.reference(reference)
        return json.dumps(
            {
                "objectives": [{"name": o.name, "direction": o.direction} for o in self.objectives],
                "constraints": [str(c) for c in self.constraints],
                "reference_point": ref,
                "hypervolume": self.hypervolume(reference),
                "n_trials": len(self.trials),
                "n_failed": len(self.failed),
                "baselines": self.baselines,
                "members": [
                    {"trial": t.number, "key": t.key, "metrics": t.metrics, "config": t.config} for t in self.members
                ],
            },
            indent=2,
            default=float,
        )

    # -- what went wrong ----------------------------------------------------------------------
    def failure_counts(self, top: int = 5) -> list[tuple[str, int]]:
        """The most common reasons trials failed (or were infeasible), with their counts, commonest first."""
        counts: Counter[str] = Counter()
        for t in self.trials:
            if not t.ok:
                counts[(t.reason or "unknown reason").splitlines()[0][:200]] += 1
            elif not t.feasible:
                broken = [str(c) for c in self.constraints if c.metric not in t.metrics
                          or not c.satisfied(t.metrics[c.metric])]
                counts[f"infeasible: violates {', '.join(broken) or 'a constraint'}"] += 1
        return counts.most_common(top)

    def failure_report(self, top: int = 5) -> str:
        """Lines naming why trials failed, grouped with counts; empty when every trial worked."""
        counts = self.failure_counts(top)
        if not counts:
            return ""
        bad = len(self.trials) - len(self.feasible)
        lines = [f"{bad} of {len(self.trials)} trials failed or were infeasible; top reasons:"]
        lines += [f"  {n:>5} x {reason}" for reason, n in counts]
        return "\n".join(lines)

    def noisy_latency(self) -> dict[str, dict[str, Any]]:
        """Per latency metric prefix (``latency``, ``latency_cpu`` ...): how many of its figures were noisy and why.

        ``{"latency": {"figures": 60, "noisy": 7, "median_load": 1.8, "reasons": {"ci": 2, "load": 5}}}``:
        ``median_load`` is the load per core while the noisy figures were timed (NaN when none was),
        ``reasons`` counts each NOISY_REASONS code (a figure may have several, or none recorded).
        """
        out: dict[str, dict[str, Any]] = {}
        for t in self.trials:
            m = t.metrics
            for prefix in [k[: -len("_noisy")] for k in m if k.endswith("_noisy")]:
                if f"{prefix}_ms" not in m:
                    continue
                entry = out.setdefault(prefix, {"figures": 0, "noisy": 0, "loads": [], "reasons": Counter()})
                entry["figures"] += 1
                if m[f"{prefix}_noisy"]:
                    entry["noisy"] += 1
                    if f"{prefix}_load" in m:
                        entry["loads"].append(m[f"{prefix}_load"])
                    entry["reasons"].update(w for w in NOISY_REASONS if m.get(f"{prefix}_noisy_{w}"))
        return {p: {"figures": e["figures"], "noisy": e["noisy"],
                    "median_load": float(np.median(e["loads"])) if e["loads"] else math.nan,
                    "reasons": dict(e["reasons"])} for p, e in out.items()}

    def noisy_report(self) -> str:
        """One line per latency metric with noisy figures (how many, the load, why); empty when none was."""
        lines = []
        for prefix, e in self.noisy_latency().items():
            if not e["noisy"]:
                continue
            why = [f"{n} {NOISY_REASONS[w]}" for w, n in e["reasons"].items()]
            load = [] if math.isnan(e["median_load"]) else [f"median load {e['median_load']:.2g} per core"]
            detail = "; ".join(x for x in (", ".join(load), ", ".join(why)) if x)
            lines.append(f"{prefix}: {e['noisy']} of {e['figures']} figures noisy" + (f" ({detail})" if detail else "")
                         + "; rerun with --remeasure to time them again")
        return "\n".join(lines)

    def summary(self) -> str:
        n_base = len(self.trials) - len(self.searched)
        extra = f" + {n_base} baselines" if n_base else ""
        stand_ins = sum(1 for t in self.trials if getattr(t, "stands_in_for", None))
        if stand_ins:  # a sparse table answered configs it lacks with their nearest rows
            extra += f" ({stand_ins} stood in for configs the table lacks)"
        return (
            f"{len(self.searched)} trials ({len(self.failed)} failed, {len(self.trials) - len(self.feasible) - len(self.failed)}"
            f" infeasible){extra}, front of {len(self.members)}, hypervolume {self.hypervolume():.6g}"
        )
