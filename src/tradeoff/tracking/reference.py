"""The shared reference point of an experiment, kept as an experiment tag per set of objectives.

The first run that finishes with a reference (the recipe's, or its own nadir +10%) records it;
later runs with the same objectives read it back, so every run's ``hypervolume`` is comparable.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from mlflow.tracking import MlflowClient

from ..engine.objectives import Objective
from ..engine.reference import reference_tag


def read_shared_reference(client: MlflowClient, experiment_id: str,
                          objectives: Sequence[Objective]) -> dict[str, float] | None:
    """The experiment's reference point for these objectives, or None when no run has fixed one yet."""
    exp = client.get_experiment(experiment_id)
    text = exp.tags.get(reference_tag(objectives)) if exp is not None else None
    if not text:
        return None
    try:
        point = json.loads(text)["point"]
        return {o.name: float(point[o.name]) for o in objectives}
    except (ValueError, KeyError, TypeError):
        return None


def record_shared_reference(client: MlflowClient, experiment_id: str, objectives: Sequence[Objective],
                            point: Mapping[str, float], run_id: str) -> bool:
    """Fix the experiment's reference for these objectives unless one is already recorded; True if recorded."""
    if read_shared_reference(client, experiment_id, objectives) is not None:
        return False
    if not all(v == v for v in point.values()):  # NaN: a run with nothing feasible fixes nothing
        return False
    value = {"objectives": {o.name: o.direction for o in objectives}, "point": dict(point), "set_by": run_id}
    client.set_experiment_tag(experiment_id, reference_tag(objectives), json.dumps(value))
    return True
