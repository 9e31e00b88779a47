"""Options given by name: which a callable takes, and a clear refusal of one it does not."""

from __future__ import annotations

import math
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


def did_you_mean(word: str, choices: list[str]) -> str:
    """`` (did you mean 'x'?)`` for the nearest of ``choices`` to a mistyped ``word`` (all the nearest, when
    several are as near: ``nsga`` -> 'nsga2' or 'nsga3'), else ''."""
    import difflib

    near = difflib.get_close_matches(word, choices, n=3)
    score = [difflib.SequenceMatcher(None, word, c).ratio() for c in near]
    best = sorted(c for c, r in zip(near, score) if r == score[0]) if near else []
    return f" (did you mean {' or '.join(repr(c) for c in best)}?)" if best else ""


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
