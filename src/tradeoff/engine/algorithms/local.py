"""Local search around the front: mutate front members by one gene, then two (strong on NAS tables).

After White et al., "Local search is state of the art for NAS benchmarks" (2020), made
multi-objective: the members of the current Pareto front are visited in turn and their
unevaluated neighbours (one changed gene first, two when those are used up) are evaluated; a
random sample fills in when the whole neighbourhood of the front has been seen. ``History`` and
``neighbours`` are shared with the predictor loop.
"""

from __future__ import annotations

import numpy as np

from ..front import nondominated_mask
from .base import Algorithm, check_batch_size, register


class History:
    """Everything evaluated: features, genes, minimised values, summed violation, keys."""

    def __init__(self, space, n_constraints: int):
        self.space, self.n_constraints = space, n_constraints
        self.X: list[np.ndarray] = []
        self.G: list[np.ndarray] = []
        self.Y: list[np.ndarray] = []
        self.V: list[float] = []
        self.keys: list[str] = []
        self.configs: list[dict] = []
        self.seen: set[str] = set()

    def add(self, configs, values, violations) -> None:
        values = np.asarray(values, float).reshape(len(configs), -1)
        viol = np.asarray(violations, float).reshape(len(configs), -1)
        for c, v, g in zip(configs, values, viol):
            k = self.space.key(c)
            self.seen.add(k)
            self.keys.append(k)
            self.configs.append(c)
            self.X.append(self.space.encode(c))
            self.G.append(self.space.to_genes(c))
            self.Y.append(v)
            self.V.append(float(np.sum(np.where(np.isfinite(g), g, 1e6))) if len(g) else 0.0)

    def ok(self) -> np.ndarray:
        if not self.Y:
            return np.zeros(0, dtype=bool)
        return np.all(np.isfinite(np.array(self.Y)), axis=1)

    def good(self) -> np.ndarray:
        """Evaluated, finite and feasible."""
        return self.ok() & (np.array(self.V) <= 0) if self.V else np.zeros(0, dtype=bool)

    def front_index(self) -> np.ndarray:
        """Rows on the feasible front (the least-violating rows when nothing is feasible yet)."""
        good = self.good()
        if not good.any():
            ok = self.ok()
            if not ok.any():
                return np.zeros(0, dtype=int)
            V = np.array(self.V)
            return np.flatnonzero(ok & (V <= V[ok].min()))
        idx = np.flatnonzero(good)
        return idx[nondominated_mask(np.array(self.Y)[idx])]


def mutate(space, genes: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``genes`` with ``k`` of them changed: another level for discrete genes, a step for real ones."""
    kinds = space.gene_kinds
    lo, hi = space.gene_bounds
    g = np.array(genes, float)
    movable = [i for i in range(len(g)) if hi[i] > lo[i]]
    if not movable:
        return g
    for i in rng.choice(movable, size=min(k, len(movable)), replace=False):
        if kinds[i] == "real":
            g[i] = float(np.clip(g[i] + rng.normal(0, 0.15) * (hi[i] - lo[i]), lo[i], hi[i]))
        elif kinds[i] == "int" and hi[i] - lo[i] > 2 and rng.random() < 0.7:  # ordered: mostly a neighbour level
            g[i] = float(np.clip(g[i] + rng.choice([-1, 1]), lo[i], hi[i]))
        else:
            others = [v for v in range(int(lo[i]), int(hi[i]) + 1) if v != int(round(g[i]))]
            g[i] = float(rng.choice(others))
    return g


def one_gene_neighbours(space, genes: np.ndarray, limit: int = 2000) -> list[np.ndarray] | None:
    """Every config one discrete gene away, or None when a gene is real or there are too many."""
    kinds = space.gene_kinds
    lo, hi = space.gene_bounds
    if any(k == "real" for k in kinds) or float(np.sum(hi - lo)) > limit:
        return None
    out = []
    for i in range(len(genes)):
        for v in range(int(lo[i]), int(hi[i]) + 1):
            if v != int(round(genes[i])):
                g = np.array(genes, float)
                g[i] = v
                out.append(g)
    return out


def neighbours(space, front_genes: list[np.ndarray], seen: set[str], rng: np.random.Generator,
               radius: int = 2, per_member: int = 60) -> list[dict]:
    """Unevaluated configs within ``radius`` changed genes of the front members (on a sparse table,
    those it holds)."""
    pool: dict[str, dict] = {}
    for g in front_genes:
        full = one_gene_neighbours(space, g)
        cands = full if full is not None else [mutate(space, g, 1, rng) for _ in range(per_member // 2)]
        for r in range(2, radius + 1):
            cands = cands + [mutate(space, g, r, rng) for _ in range(per_member // 2)]
        for h in cands:
            c = space.from_genes(h)
            k = space.key(c)
            if k not in seen and space.exists(c):
                pool.setdefault(k, c)
    return list(pool.values())


class Claims:
    """Each config asked once: ``asked`` holds the keys handed out so far."""

    asked: set[str]

    def _claim(self, c, out) -> bool:
        k = self.space.key(c)
        if k in self.asked:
            return False
        self.asked.add(k)
        out.append(c)
        return True


@register("local")
class LocalSearch(Claims, Algorithm):
    name = "local"

    def __init__(self, batch_size: int = 10, initial_size: int = 10):
        check_batch_size(batch_size)
        self.batch_size = batch_size
        self.initial_size = initial_size

    def setup(self, space, n_objectives, n_constraints, seed, budget=None, initial=()):
        super().setup(space, n_objectives, n_constraints, seed, budget, initial)
        self.history = History(space, n_constraints)
        self.asked: set[str] = set()

    def ask(self, n):
        out: list = []
        while self.initial and len(out) < n:
            self._claim(self.initial.pop(0), out)
        front = self.history.front_index() if len(self.asked) >= self.initial_size else []
        if len(front):
            order = front[self.rng.permutation(len(front))]
            j = stalled = 0
            while len(out) < n and stalled < len(order):  # the front's members in turn, a neighbour each
                c = self._neighbour(self.history.G[int(order[j % len(order)])])
                j += 1
                stalled = stalled + 1 if c is None else 0
                if c is not None:
                    self._claim(c, out)
        tries = 0
        while len(out) < n and tries < 50 * n:
            tries += 1
            self._claim(self.space.sample(self.rng), out)
        return out

    def _neighbour(self, genes):
        """An unevaluated neighbour: one changed gene while any is left, else two."""
        for radius in (1, 2):
            cands = neighbours(self.space, [genes], self.asked, self.rng, radius=radius, per_member=20)
            if cands:
                return cands[int(self.rng.integers(len(cands)))]
        return None

    def tell(self, configs, values, violations):
        self.history.add(configs, values, violations)
