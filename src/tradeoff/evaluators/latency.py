"""Latency on a hardware target, with the spread and the cost of measuring it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..hardware.base import Target, TargetError, make_target
from . import Evaluator, TrialError, register_evaluator


@register_evaluator("latency")
class Latency(Evaluator):
    """``<prefix>_ms`` (median) with p10, p90, CI, n, noisy, cached and cost_s from ``target.measure``.

    A noisy or cached measurement is reported as such, not failed: the flags are metrics. A model
    the target cannot import, compile or run fails the trial with the target's reason.
    """

    def __init__(self, target: Target | Mapping[str, Any] | str | None = None, prefix: str = "latency",
                 **target_settings: Any):
        if target is None or isinstance(target, str):  # make_evaluator("latency", runtime="ort", threads=1)
            target = {"runtime": target or target_settings.pop("runtime", "ort"), **target_settings}
        elif target_settings:
            raise TypeError(f"target settings {sorted(target_settings)} given beside a target")
        if isinstance(target, Mapping):
            settings = dict(target)
            target = make_target(settings.pop("runtime", "ort"), **settings)
        self.target = target
        self.prefix = prefix
        self.name = prefix
        self.directions = {f"{prefix}_ms": "minimize"}

    def __call__(self, artifact, context: Mapping[str, Any] | None = None) -> dict[str, float]:
        try:
            stats = self.target.measure(artifact)
        except TargetError as e:
            reason = str(e) if str(e).startswith(self.target.name) else f"{self.target.name}: {e}"
            raise TrialError(reason) from e
        return stats.metrics(self.prefix)

    def __repr__(self) -> str:
        return f"Latency(target={self.target.name!r}, prefix={self.prefix!r})"
