"""Built-in workloads by name: a space, an evaluate function, and the metrics it reports."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from ..spaces.space import Config, Space


@dataclass
class Workload:
    """What a recipe searches over: its space, how a config is measured, what it reports."""

    name: str
    space: Space
    evaluate: Callable[[Config], Mapping[str, float]]
    metrics: dict[str, str] = field(default_factory=dict)       # metric -> its natural direction
    default_objectives: dict[str, str] = field(default_factory=dict)
    true_front: Callable[[list[str]], np.ndarray] | None = None  # minimised exact front, for regret
    info: dict[str, Any] = field(default_factory=dict)
    # model workloads: build the deployable artifact for a config, and judge its quality on it;
    # cost metrics (latency on the recipe's targets, size, MACs) are added by tradeoff.compose
    materialize: Callable[[Config], Any] | None = None
    evaluators: list = field(default_factory=list)


_REGISTRY: dict[str, Callable[..., Workload]] = {}


def register_workload(*names: str):
    def deco(fn):
        for n in names:
            _REGISTRY[n] = fn
        return fn

    return deco


def workload_names() -> list[str]:
    _load()
    return sorted(_REGISTRY)


def make_workload(name: str, **options: Any) -> Workload:
    """A built-in workload by name, or ``python: pkg.module:factory`` for a user's own."""
    _load()
    if name.startswith("python:"):
        target = name[len("python:"):].strip()
        mod, _, attr = target.partition(":")
        if not attr:
            raise ValueError(f"workload {name!r}: write python: package.module:function")
        fn = getattr(importlib.import_module(mod), attr)
        wl = fn(**options)
        if not isinstance(wl, Workload):
            raise TypeError(f"{target} returned {type(wl).__name__}, not a tradeoff Workload")
        return wl
    if name not in _REGISTRY:
        raise ValueError(f"workload {name!r} is not one of {', '.join(workload_names())} (or python: module:function)")
    return _REGISTRY[name](**options)


def _load() -> None:
    from . import convnets, function, nasbench_graph, problems, table  # noqa: F401  (they register)
