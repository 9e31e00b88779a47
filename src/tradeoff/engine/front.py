"""Front: the Pareto-optimal trials of a search, its hypervolume and its tables.

Non-dominated filtering and hypervolume live in ``core.pareto`` (moocore, pymoo's own backend).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from .objectives import Constraint, Objective
from ..core.pareto import derive_reference, hypervolume, nondominated_mask  # noqa: F401  (re-exported)
from ..core.trial import Trial


@dataclass
class Front:
    """Every trial of a search and the non-dominated, feasible ones among them."""

    objectives: list[Objective]
    trials: list[Trial]
    constraints: list[Constraint] = field(default_factory=list)
    reference_point: dict[str, float] | None = None  # user units; derived when None

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
        return curve

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

    def summary(self) -> str:
        n_base = len(self.trials) - len(self.searched)
        extra = f" + {n_base} baselines" if n_base else ""
        return (
            f"{len(self.searched)} trials ({len(self.failed)} failed, {len(self.trials) - len(self.feasible) - len(self.failed)}"
            f" infeasible){extra}, front of {len(self.members)}, hypervolume {self.hypervolume():.6g}"
        )
