"""Initial designs: the configs a model-based search measures before it has a model."""

from __future__ import annotations

import numpy as np

DESIGNS = ("latin", "random")


def latin_design(space, n: int, rng: np.random.Generator) -> list[dict]:
    """``n`` configs from a Latin hypercube over the space's genes. A gene with at most ``n`` levels
    shows every level (each about ``n / levels`` times), where ``n`` random draws leave some unseen
    (9 levels in 11 draws: about one missing per gene); a real gene, or one with more levels than
    ``n``, is cut into ``n`` equal strata and each is used once. The genes are paired at random. A
    config that is not in a sparse space is replaced by its nearest row."""
    if n <= 0:
        return []
    lo, hi = space.gene_bounds
    genes = np.empty((n, space.n_genes))
    for j, kind in enumerate(space.gene_kinds):
        strata = (rng.permutation(n) + rng.random(n)) / n       # one point in each of n strata of [0, 1)
        levels = int(hi[j] - lo[j]) + 1
        if kind == "real":
            genes[:, j] = lo[j] + strata * (hi[j] - lo[j])
        elif levels <= n:
            genes[:, j] = lo[j] + rng.permutation(np.resize(rng.permutation(levels), n))
        else:
            genes[:, j] = lo[j] + np.floor(strata * levels)
    return [space.nearest_row(space.from_genes(g)) for g in genes]


def check_design(name: str) -> None:
    if name not in DESIGNS:
        raise ValueError(f"initial_design {name!r} is not one of {', '.join(DESIGNS)}")
