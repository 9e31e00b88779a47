"""Any function as an evaluator: a user's own model, data or lookup table plugs in here."""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable, Mapping
from typing import Any

from . import Evaluator, register_evaluator


@register_evaluator("callable")
class FromCallable(Evaluator):
    """``fn(artifact, context) -> {metric: value}`` (or ``fn(artifact)``; a bare number is ``{name: value}``)."""

    def __init__(self, fn: Callable[..., Any], name: str | None = None,
                 directions: Mapping[str, str] | None = None):
        if not callable(fn):
            raise TypeError(f"{fn!r} is not callable")
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "callable")
        self.directions = dict(directions or {})
        self._takes_context = _takes_two(fn)

    def __call__(self, artifact, context: Mapping[str, Any] | None = None) -> dict[str, float]:
        out = self.fn(artifact, context) if self._takes_context else self.fn(artifact)
        if isinstance(out, numbers.Real):
            return {self.name: float(out)}
        if not isinstance(out, Mapping):
            raise TypeError(f"evaluator {self.name!r} returned {type(out).__name__}, not a mapping of metrics")
        metrics = {}
        for k, v in out.items():
            try:
                metrics[str(k)] = float(v)
            except (TypeError, ValueError):
                continue  # non-numeric extras are dropped, as the study does
        return metrics

    def __repr__(self) -> str:
        return f"FromCallable({getattr(self.fn, '__qualname__', self.fn)!r}, name={self.name!r})"


def _takes_two(fn: Callable) -> bool:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # a builtin without a signature: assume the full form
        return True
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2

