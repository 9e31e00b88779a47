"""A space declared in the recipe and any Python function as the evaluator."""

from __future__ import annotations

import importlib
from typing import Any, Mapping

from ..spaces.space import Space
from . import Workload, register_workload


@register_workload("function")
def make_function_workload(space: Mapping[str, Any], function: str,
                           metrics: Mapping[str, str] | None = None) -> Workload:
    """``function: pkg.module:fn`` gets each config (a dict) and returns its metrics."""
    mod, _, attr = function.partition(":")
    if not attr:
        raise ValueError(f"function {function!r}: write package.module:function")
    fn = getattr(importlib.import_module(mod), attr)
    return Workload(f"function:{attr}", Space(dict(space)), fn, metrics=dict(metrics or {}))
