"""Built-in workloads by name: a space, an evaluate function, and the metrics it reports."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.options import check_options, named_parameters
from ..core.registry import Registry, import_from
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
    # named reference points of the field (fp32, int8, FORA N=2, ...): configs of ``space``, evaluated
    # like any trial, tagged as baselines, drawn on the front plot, and usable as seeds
    baselines: dict[str, Config] = field(default_factory=dict)


def evaluate_on_artifact(materialize: Callable[[Config], Any], evaluators: list) -> Callable[[Config], dict[str, float]]:
    """``evaluate(config)`` of a model workload: build its artifact once, then run each evaluator on it."""

    def evaluate(config: Config) -> dict[str, float]:
        art = materialize(config)
        out: dict[str, float] = {}
        for ev in evaluators:
            out.update(ev(art, {"config": config}))
        return out

    return evaluate


WORKLOADS = Registry("workload", __name__, ["caching", "compression", "convnets", "function", "model_family",
                                          "nasbench_graph", "ofa",
                                          "problems", "table"])
register_workload = WORKLOADS.register


def workload_names() -> list[str]:
    return WORKLOADS.names()


def make_workload(name: str, **options: Any) -> Workload:
    """A built-in workload by name, or ``python: pkg.module:factory`` for a user's own."""
    if name.startswith("python:"):
        target = name[len("python:"):].strip()
        wl = import_from(target)(**options)
        if not isinstance(wl, Workload):
            raise TypeError(f"{target} returned {type(wl).__name__}, not a tradeoff Workload")
        return wl
    factory = WORKLOADS.get(name, " (or python: module:function)")
    if not _takes_any_keyword(factory):  # a misspelt option is named with the ones allowed
        check_options(f"workload {name}", options, named_parameters(factory))
    return factory(**options)


def _takes_any_keyword(f: Callable[..., Any]) -> bool:
    import inspect

    return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(f).parameters.values())
