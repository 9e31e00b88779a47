"""Objectives and constraints as the user states them, and their minimised internal form."""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.options import nearest

DIRECTIONS = ("minimize", "maximize")
_OPS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}


@dataclass(frozen=True)
class Objective:
    """A metric to optimise; internally every objective is minimised (``sign`` flips maxima)."""

    name: str
    direction: str = "minimize"

    def __post_init__(self):
        if self.direction not in DIRECTIONS:
            raise ValueError(f"objective {self.name!r}: direction {self.direction!r} is not one of minimize, maximize")

    @property
    def sign(self) -> float:
        return 1.0 if self.direction == "minimize" else -1.0


class MetricNameError(ValueError):
    """An objective or constraint on a metric the evaluator never returns: a naming slip, not a bad candidate."""


class ConstraintError(MetricNameError):
    """A constraint on a metric the evaluator never returns: every trial would be silently infeasible."""


MISSING_METRIC_TRIALS = 3  # trials in a row, from the first, that return metrics but never an objective's


def missing_objective_metric(objectives: list[Objective], returned: list[Mapping[str, float]]) -> str | None:
    """The error when the first trials all returned metrics yet none returned an objective's, or None.

    ``returned`` is every trial's metrics so far. A candidate may fail without its metric now and then;
    an objective that none of the first ``MISSING_METRIC_TRIALS`` trials returned, while each returned
    others, is a misnamed objective, and every further trial would fail the same way."""
    if len(returned) < MISSING_METRIC_TRIALS or not all(returned[:MISSING_METRIC_TRIALS]):
        return None
    for o in objectives:
        if not any(o.name in m for m in returned):
            names = sorted({k for m in returned for k in m})
            close = nearest(o.name, names, cutoff=0.5, prefixes=True)
            hint = f"did you mean {' or '.join(map(repr, close))}?" if close else "name a metric it returns"
            return (f"objectives.{o.name}: the evaluator returned no {o.name!r} in any of its first "
                    f"{len(returned)} trials (it returns {', '.join(names)}); {hint}")
    return None


def missing_constraint_metrics(constraints: list[Constraint], metrics: Mapping[str, float]) -> str | None:
    """The error for a complete trial that lacks a constrained metric, or None."""
    missing = [c for c in constraints if c.metric not in metrics]
    if not missing:
        return None
    c = missing[0]
    return (f"constraints.{c.metric}: the evaluator returned no {c.metric!r} for '{c}' "
            f"(it returns {', '.join(metrics) or 'nothing'}); constrain a metric it returns")


@dataclass(frozen=True)
class Constraint:
    """``metric op bound``, e.g. latency_ms <= 5; violation is 0 when satisfied."""

    metric: str
    op: str
    bound: float

    def __post_init__(self):
        if self.op not in _OPS:
            raise ValueError(f"constraint on {self.metric!r}: operator {self.op!r} is not one of {', '.join(_OPS)}")

    def satisfied(self, value: float) -> bool:
        return bool(_OPS[self.op](value, self.bound))

    def violation(self, value: float) -> float:
        """How far the value is from satisfying the constraint, relative to the bound's scale."""
        if value is None or not math.isfinite(value):
            return math.inf
        if self.satisfied(value):
            return 0.0
        return abs(value - self.bound) / max(abs(self.bound), 1e-12)

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.bound:g}"


def parse_objectives(spec: Mapping[str, Any] | list) -> list[Objective]:
    """Accept {'acc': 'maximize', 'lat': {'direction': 'minimize'}} or a list of Objective."""
    if isinstance(spec, list):
        out = [o if isinstance(o, Objective) else Objective(**o) for o in spec]
    else:
        out = [_objective(name, v) for name, v in spec.items()]
    if not out:
        raise ValueError("objectives: at least one objective is needed")
    return out


def _objective(name: str, v: Any) -> Objective:
    if isinstance(v, Objective):
        return v
    if isinstance(v, str):
        return Objective(name, v)
    if isinstance(v, Mapping):
        return Objective(name, v.get("direction", "minimize"))
    raise ValueError(f"objective {name!r}: expected 'minimize', 'maximize' or a mapping, got {v!r}")


_CONSTRAINT_RE = re.compile(r"^\s*(<=|>=|<|>)\s*([-+0-9.eE]+)\s*$")


def parse_constraint(metric: str, spec: Any) -> Constraint:
    """Accept ('<=', 5.0), '<= 5', {'op': '<=', 'bound': 5} or a Constraint."""
    if isinstance(spec, Constraint):
        return spec
    if isinstance(spec, str):
        m = _CONSTRAINT_RE.match(spec)
        if not m:
            raise ValueError(f"constraint on {metric!r}: {spec!r} is not of the form '<= 5' (operators <=, >=, <, >)")
        return Constraint(metric, m.group(1), float(m.group(2)))
    if isinstance(spec, (tuple, list)) and len(spec) == 2:
        return Constraint(metric, str(spec[0]), float(spec[1]))
    if isinstance(spec, Mapping):
        return Constraint(metric, spec["op"], float(spec["bound"]))
    raise ValueError(f"constraint on {metric!r}: {spec!r} is not of the form '<= 5' or ('<=', 5)")


def parse_constraints(spec: Mapping[str, Any] | list | None) -> list[Constraint]:
    if not spec:
        return []
    if isinstance(spec, list):
        return [c if isinstance(c, Constraint) else Constraint(**c) for c in spec]
    return [parse_constraint(k, v) for k, v in spec.items()]


def minimised(objectives: list[Objective], metrics: Mapping[str, float]) -> np.ndarray:
    return np.array([o.sign * float(metrics[o.name]) for o in objectives], dtype=float)


def violations(constraints: list[Constraint], metrics: Mapping[str, float]) -> np.ndarray:
    return np.array([c.violation(metrics.get(c.metric, math.nan)) for c in constraints], dtype=float)
