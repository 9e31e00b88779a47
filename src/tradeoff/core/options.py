"""Options given by name: which a callable takes, and a clear refusal of one it does not."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def named_parameters(f: Any, skip: tuple[str, ...] = ()) -> list[str]:
    """The keyword parameters ``f`` takes by name: a class's ``__init__``, and its bases' for as long
    as each passes ``**kwargs`` on (as pymoo's algorithms do)."""
    import inspect

    chain = [c.__init__ for c in inspect.getmro(f) if "__init__" in vars(c)] if inspect.isclass(f) else [f]
    names: list[str] = []
    for g in chain:
        try:
            params = inspect.signature(g).parameters.values()
        except (TypeError, ValueError):
            continue
        names += [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
                  and p.name not in ("self", *skip) and p.name not in names]
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return names


def nearest(word: str, choices: Sequence[str], cutoff: float = 0.6, prefixes: bool = False) -> list[str]:
    """The choices a mistyped ``word`` most likely meant, closest by spelling (every one of them when several
    are as near: ``nsga`` -> nsga2, nsga3). With ``prefixes``, a choice it begins or that begins it comes
    first (``acc`` -> accuracy)."""
    import difflib

    low = word.lower()
    pool = [c for c in choices if c.lower().startswith(low) or low.startswith(c.lower())] if prefixes else []
    ratio = {c: difflib.SequenceMatcher(None, low, c.lower()).ratio() for c in (pool or choices)}
    fit = {c: r for c, r in ratio.items() if pool or r >= cutoff}
    best = max(fit.values(), default=None)
    return sorted(c for c, r in fit.items() if r == best)


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` for what a mistyped ``word`` most likely meant (see ``nearest``), else ''."""
    near = nearest(word, choices)
    return f" (did you mean {' or '.join(map(repr, near))}?)" if near else ""


def check_options(name: str, options: dict[str, Any], allowed: list[str]) -> None:
    """An unknown option names the ones that are allowed (and the nearest, for a typo)."""
    allowed = list(dict.fromkeys(allowed))
    for key in options:
        if key not in allowed:
            raise ValueError(f"{name} has no option {key!r}{did_you_mean(key, allowed)}; "
                             f"its options: {', '.join(allowed) or 'none'}")


def check_whole(name: str, value: Any, least: int, what: str) -> int:
    """``value`` as an int when it is a whole number of at least ``least``; else a ValueError that says so."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value != int(value) or value < least:
        raise ValueError(f"{name}: {value!r} is not allowed; {what}, a whole number of at least {least}")
    return int(value)


def check_positive(name: str, value: Any, what: str) -> float:
    """``value`` as a float when it is a number above 0; else a ValueError that says so."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not value > 0:
        raise ValueError(f"{name}: {value!r} is not allowed; {what}, a number above 0")
    return float(value)
