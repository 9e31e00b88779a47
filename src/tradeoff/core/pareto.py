"""Pareto arithmetic on minimised matrices: non-dominated rows, hypervolume, a reference point.

moocore (pymoo's own backend) does the work; workloads, evaluators and the engine share it.
"""

from __future__ import annotations

import moocore
import numpy as np


def nondominated_mask(F: np.ndarray) -> np.ndarray:
    """Rows of a minimised matrix that no other row dominates (duplicates kept once)."""
    if len(F) == 0:
        return np.zeros(0, dtype=bool)
    keep = moocore.is_nondominated(F, keep_weakly=True)
    # keep the first of exact duplicates only
    seen: set[bytes] = set()
    for i in np.flatnonzero(keep):
        b = F[i].tobytes()
        if b in seen:
            keep[i] = False
        seen.add(b)
    return keep


def hypervolume(F: np.ndarray, reference: np.ndarray) -> float:
    """Hypervolume of minimised points against a reference point (points beyond it add nothing)."""
    F = np.asarray(F, dtype=float)
    if len(F) == 0:
        return 0.0
    F = F[np.all(F < reference, axis=1)]
    return float(moocore.hypervolume(F, ref=reference)) if len(F) else 0.0


def derive_reference(F: np.ndarray, margin: float = 0.1) -> np.ndarray:
    """Nadir of the given points plus ``margin`` of their range (or of |nadir| when flat)."""
    nadir, ideal = F.max(axis=0), F.min(axis=0)
    span = np.where(nadir > ideal, nadir - ideal, np.maximum(np.abs(nadir), 1.0))
    return nadir + margin * span
