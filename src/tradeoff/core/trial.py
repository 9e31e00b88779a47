"""Trial: one evaluated config, its state and metrics, as recorded and resumed."""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, field
from typing import Any


class TrialError(Exception):
    """Raised by an evaluator for a bad candidate; the trial is recorded as failed with this message."""


class TrialState(enum.StrEnum):
    """What became of a trial. A string enum, so logs and MLflow keep the plain words."""

    COMPLETE = "complete"
    FAILED = "failed"


COMPLETE = TrialState.COMPLETE
FAILED = TrialState.FAILED


@dataclass
class Trial:
    number: int
    key: str
    config: dict[str, Any]          # JSON form (space.to_json) so it survives files and MLflow
    state: TrialState = COMPLETE
    metrics: dict[str, float] = field(default_factory=dict)
    reason: str | None = None       # why a failed trial failed
    feasible: bool = True           # all constraints satisfied
    duration_s: float = 0.0
    batch: int = 0
    baseline: str | None = None     # the name of the workload baseline this trial evaluated, if any
    stands_in_for: dict[str, Any] | None = None  # the asked config (JSON form) a sparse table lacks; this, its nearest row

    def __post_init__(self):
        self.state = TrialState(self.state)

    @property
    def ok(self) -> bool:
        return self.state == COMPLETE

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, default=float)

    @staticmethod
    def from_json(line: str) -> Trial:
        data = json.loads(line)
        return Trial(**{k: v for k, v in data.items() if k in Trial.__dataclass_fields__})
