"""An enumerated space as value indices: sample unasked configs and their features without building
every config, its key and its features each round (the predictive loop's candidate pool)."""

from __future__ import annotations

import itertools

import numpy as np

from ...predictors.encodings import grid_features


def domain(p) -> list:
    """Every value of a finite param, in a fixed order."""
    if hasattr(p, "values"):
        return list(p.values)
    if p.kind == "int":
        return list(range(p.low, p.high + 1, p.step))
    if p.kind == "mask":
        return [np.array(b, dtype=bool).reshape(p.shape) for b in itertools.product([0, 1], repeat=p.size)]
    raise ValueError(f"cannot enumerate {p.describe()}")


class Grid:
    """The cross product of the params' domains; row ``i`` is the ``i``-th config of ``itertools.product``.
    On a sparse table the configs it lacks count as asked."""

    def __init__(self, space, structured: bool = True):
        self.space = space
        self.structured = structured
        self.names = space.names
        self.domains = [domain(space[n]) for n in self.names]
        self.shape = tuple(len(d) for d in self.domains)
        self.size = int(np.prod(self.shape))
        self.lookup = [{space[n].key_part(space[n].validate(v)): i for i, v in enumerate(d)}
                       for n, d in zip(self.names, self.domains)]
        self.asked = np.zeros(self.size, dtype=bool)
        if getattr(space, "rows", None) is not None:  # a sparse table: the configs it lacks are never offered
            self.asked[:] = True
            self.asked[[r for r in map(self.row, space.rows) if r is not None]] = False

    def row(self, config) -> int | None:
        """The row of a config, None when one of its values is outside the domains."""
        at = []
        for n, lut in zip(self.names, self.lookup):
            p = self.space[n]
            i = lut.get(p.key_part(p.validate(config[n])))
            if i is None:
                return None
            at.append(i)
        return int(np.ravel_multi_index(tuple(at), self.shape))

    def mark(self, configs) -> None:
        for c in configs:
            r = self.row(c)
            if r is not None:
                self.asked[r] = True

    def sample(self, k: int, rng: np.random.Generator) -> np.ndarray:
        """Up to ``k`` unasked rows, in row order (all of them when fewer)."""
        free = np.flatnonzero(~self.asked)
        if len(free) > k:
            free = free[np.sort(rng.choice(len(free), k, replace=False))]
        return free

    def index(self, rows: np.ndarray) -> np.ndarray:
        return np.stack(np.unravel_index(np.asarray(rows, dtype=int), self.shape), axis=1).reshape(-1, len(self.names))

    def configs(self, rows: np.ndarray) -> list[dict]:
        return [{n: d[i] for n, d, i in zip(self.names, self.domains, ix)} for ix in self.index(rows)]

    def features(self, rows: np.ndarray) -> np.ndarray:
        return grid_features(self.space, self.domains, self.index(rows), self.structured)
