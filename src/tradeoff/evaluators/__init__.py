"""What matters: evaluators turn an artifact into metrics (latency, size, MACs, a user's own).

An evaluator is a named callable ``evaluator(artifact, context) -> {metric: float}``; it raises
``TrialError`` for a bad candidate, and the study records that trial as failed with the reason.
``context`` is whatever the study passes along (the config, the trial number); these ignore it.
Built-ins are registered by name so a recipe can say ``latency`` or ``complexity``.
"""

from __future__ import annotations

import abc
import contextlib
import importlib
from collections.abc import Iterator, Mapping
from typing import Any

from ..core.registry import Registry, import_from
from ..core.trial import TrialError


class Evaluator(abc.ABC):
    """A name, the metrics it reports with their natural direction, and ``__call__``."""

    name: str = "evaluator"
    directions: Mapping[str, str] = {}  # metric -> "minimize" | "maximize", for the metrics fit to be objectives

    @abc.abstractmethod
    def __call__(self, artifact, context: Mapping[str, Any] | None = None) -> dict[str, float]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


@contextlib.contextmanager
def trial_error(what: str) -> Iterator[None]:
    """A target's or exporter's refusal becomes the trial's failure, with its reason."""
    from ..hardware.base import TargetError

    try:
        yield
    except TargetError as e:
        raise TrialError(f"{what}: {e}") from e


_LAZY = {"Accuracy": "accuracy", "Latency": "latency", "Size": "size", "Complexity": "complexity", "FromCallable": "callables",
         "count_graph": "complexity"}
EVALUATORS = Registry("evaluator", __name__, sorted(set(_LAZY.values())))
register_evaluator = EVALUATORS.register


def evaluator_names() -> list[str]:
    return EVALUATORS.names()


def make_evaluator(name: str, **options: Any) -> Evaluator:
    """A built-in evaluator by name (``latency``, ``size``, ``complexity``, ``callable``), or
    ``python: pkg.module:function`` for a user's function ``fn(artifact, context) -> dict``."""
    if name.startswith("python:"):
        from .callables import FromCallable

        target = name[len("python:"):].strip()
        return FromCallable(import_from(target), options.pop("name", target.partition(":")[2]), **options)
    return EVALUATORS.get(name, " (or python: module:function)")(**options)


def __getattr__(name: str):  # the evaluators load on first use: onnx and the targets are not imported before
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Evaluator", "TrialError", "register_evaluator", "make_evaluator", "evaluator_names", "trial_error",
           "Accuracy", "Latency", "Size", "Complexity", "FromCallable", "count_graph"]
