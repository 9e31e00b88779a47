"""A space declared in the recipe and any Python function as the evaluator."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..core.registry import import_from
from ..spaces.space import Space
from . import Workload, register_workload


@register_workload("function")
def make_function_workload(space: Mapping[str, Any], function: str,
                           metrics: Mapping[str, str] | None = None) -> Workload:
    """``function: pkg.module:fn`` gets each config (a dict) and returns its metrics."""
    mod, _, attr = function.partition(":")
    if not attr:
        raise ValueError(f"function {function!r}: write package.module:function")
    try:
        fn = import_from(function)
    except ValueError as e:
        raise ValueError(f"function: {e}") from None
    if not callable(fn):
        raise ValueError(f"function: {function!r} is a {type(fn).__name__}, not a function")
    return Workload(f"function:{attr}", Space(dict(space)), fn, metrics=dict(metrics or {}))
