"""Rebuild an algorithm's state from the trial log, by asking and telling again without evaluating.

A search is seeded and its loop deterministic, so a fresh algorithm asked for the same batch
sizes and told the logged values in the same order proposes what the interrupted one would
have proposed next. No checkpoint has to be trusted: nothing is unpickled.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..core.trial import Trial
from ..spaces.space import Config, Space
from .algorithms.base import Algorithm
from .stand_in import answer


@dataclass
class Replayed:
    batches: int                        # batches asked and told again
    told: int                           # distinct trials told
    pending: list[Config] = field(default_factory=list)  # the batch the interrupted run was evaluating
    missed: int = 0                     # logged trials the algorithm never asked for again (a library that is not deterministic)
    stand_ins: dict[str, dict] = field(default_factory=dict)  # pending rows that answer for configs a table lacks


def batch_for(batch: int | None, algorithm: Algorithm) -> int:
    """The batch to ask: the search's own, else the algorithm's (read before every ask: ``auto`` takes its
    choice's after the first), else 10."""
    return batch or algorithm.batch_size or 10


def replay(algorithm: Algorithm, space: Space, cache: dict[str, Trial], batch: int | None, budget: int | None,
           values: Callable[[list[Trial]], np.ndarray], violations: Callable[[list[Trial]], np.ndarray],
           max_idle: int = 25) -> Replayed:
    """Ask/tell ``algorithm`` (freshly set up) through the logged trials in ``cache``; stop at the first batch
    with a config not in the log, which is returned as ``pending`` for the loop to evaluate. ``batch`` None:
    the algorithm's own batch, read before every ask as the loop does."""
    seen: set[str] = set()
    baselines = {k for k, t in cache.items() if t.baseline}  # evaluated before the first ask
    batches = idle = 0
    pending: list[Config] = []
    stand_ins: dict[str, dict] = {}
    while True:
        size = batch_for(batch, algorithm)
        n = size if budget is None else min(size, budget - len(seen))
        if n <= 0 or idle >= max_idle:
            break
        asked = [space.validate(c) for c in algorithm.ask(n)]
        if not asked:
            break
        # mapped as the live loop mapped it: a config a sparse table lacks -> the nearest row not
        # evaluated when it was asked (the baselines and every batch before this one)
        configs, stand_ins = answer(space, asked, seen | baselines)
        keys = [space.key(c) for c in configs]
        if not all(k in cache for k in keys):
            pending = configs
            break
        told = [cache[k] for k in keys]
        algorithm.tell(configs, values(told), violations(told))
        idle = idle + 1 if set(keys) <= seen else 0
        seen.update(keys)
        batches += 1
    asked = set(cache) - (baselines - seen)   # a baseline is the algorithm's only when it asked for it (seeded)
    missed = len(asked - seen - {space.key(c) for c in pending})
    if missed:
        warnings.warn(f"rebuilding {algorithm.name} from the trial log reproduced {len(seen)} of {len(asked)} trials; "
                      f"it goes on without the other {missed} (they stay in the front)", stacklevel=2)
    return Replayed(batches, len(seen), pending, missed, stand_ins if pending else {})
