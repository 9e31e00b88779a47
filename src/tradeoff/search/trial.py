"""Trial: one evaluated config, its state and metrics, as recorded and resumed."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

class TrialError(Exception):
    """Raised by an evaluator for a bad candidate; the trial is recorded as failed with this message."""


COMPLETE = "complete"
FAILED = "failed"


@dataclass
class Trial:
    number: int
    key: str
    config: dict[str, Any]          # JSON form (space.to_json) so it survives files and MLflow
    state: str = COMPLETE
    metrics: dict[str, float] = field(default_factory=dict)
    reason: str | None = None       # why a failed trial failed
    feasible: bool = True           # all constraints satisfied
    duration_s: float = 0.0
    batch: int = 0

    @property
    def ok(self) -> bool:
        return self.state == COMPLETE

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, default=float)

    @staticmethod
    def from_json(line: str) -> "Trial":
        return Trial(**json.loads(line))
