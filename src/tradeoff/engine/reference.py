"""The hypervolume's reference point: one per comparison, named wherever a hypervolume is shown.

Runs that share objectives are compared against one point. It comes from the recipe (or the
API's ``reference_point``) when given; otherwise the tracker fixes it from the experiment's first
run and records it on the experiment, where later runs find it by ``objectives_key``. Without
either, a run's hypervolume is taken against the nadir of its own trials so far (+10%), which
moves as the run goes on; the label says so.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import numpy as np

from .objectives import Objective

DERIVED = "nadir of this run +10%"


def check_reference(point: Mapping[str, float], names: Sequence[str]) -> dict[str, float]:
    """A user's reference point as floats: one finite number per objective, refused by name otherwise."""
    if set(point) != set(names):
        raise ValueError(f"reference_point: give one value per objective ({', '.join(names)}), "
                         f"got {', '.join(point) or 'none'}")
    out = {}
    for k, v in point.items():
        try:
            out[k] = float(v)
        except (TypeError, ValueError):
            out[k] = float("nan")
        if isinstance(v, bool) or not np.isfinite(out[k]):
            raise ValueError(f"reference_point.{k}: {v!r} is not allowed; a finite number")
    return out


def objectives_key(objectives: Sequence[Objective]) -> str:
    """The same objectives in the same directions give the same key (order does not matter)."""
    text = ",".join(sorted(f"{o.name}:{o.direction}" for o in objectives))
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def reference_tag(objectives: Sequence[Objective]) -> str:
    """The experiment tag that holds the shared reference point of these objectives."""
    return f"tradeoff.reference.{objectives_key(objectives)}"


def point_text(point: Mapping[str, float] | None) -> str:
    """``accuracy=0.5, latency_ms=12`` (or the derived reference's description)."""
    if not point:
        return DERIVED
    return ", ".join(f"{k}={float(v):.4g}" for k, v in point.items())


def label(point: Mapping[str, float] | None, source: str | None) -> str:
    """What the progress line and tables print after a hypervolume: which reference it is taken at."""
    if not point:
        return f"ref {DERIVED}"
    return f"ref {point_text(point)}" + (f" ({source})" if source else "")


def outside(objectives: Sequence[Objective], points: np.ndarray, point: Mapping[str, float] | None) -> int:
    """How many minimised points do not dominate the reference, so add nothing to the hypervolume."""
    if point is None or len(points) == 0:
        return 0
    ref = np.array([o.sign * float(point[o.name]) for o in objectives])
    return int(np.sum(~np.all(np.asarray(points) < ref, axis=1)))
