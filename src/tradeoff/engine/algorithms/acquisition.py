"""Batch selection by expected hypervolume improvement (EHVI) under a predictor's mean and std.

EHVI is estimated by Monte Carlo: the same standard-normal draws for every candidate (common
random numbers), exact 2-D hypervolume improvement per draw, vectorised over candidates and
draws; with 3+ objectives each draw's improvement comes from pymoo/moocore's hypervolume. A
batch is built greedily, each pick joining the front at its predicted mean (kriging believer)
so the next pick is rewarded for covering a different part of the front, and a pick is skipped
when it repeats the genes of one already taken (diversity).
"""

from __future__ import annotations

import numpy as np

from ..front import hypervolume, nondominated_mask


def hvi_2d(front: np.ndarray, points: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Exact hypervolume improvement of each point (any leading shape, last axis 2) over ``front``."""
    F = front[np.all(front < ref, axis=1)] if len(front) else front.reshape(0, 2)
    F = F[np.argsort(F[:, 0])] if len(F) else F
    # the front's staircase: on [a_k, a_{k+1}) the best f2 reached is s_k (ref above the first point)
    a = np.concatenate([[-np.inf], F[:, 0]]) if len(F) else np.array([-np.inf])
    s = np.concatenate([[ref[1]], np.minimum.accumulate(F[:, 1])]) if len(F) else np.array([ref[1]])
    b = np.concatenate([a[1:], [ref[0]]])
    p1, p2 = points[..., 0:1], points[..., 1:2]
    width = np.clip(np.minimum(b, ref[0]) - np.maximum(a, p1), 0.0, None)
    height = np.clip(np.minimum(s, ref[1]) - p2, 0.0, None)
    return np.sum(width * height, axis=-1)


def ehvi(front: np.ndarray, mu: np.ndarray, sd: np.ndarray, ref: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """Monte Carlo EHVI of each candidate (rows of ``mu``/``sd``) with draws (S, d) of N(0, 1)."""
    Z = mu[:, None, :] + sd[:, None, :] * draws[None, :, :]
    if mu.shape[1] == 2:
        return hvi_2d(front, Z, ref).mean(axis=1)
    base = hypervolume(front, ref) if len(front) else 0.0
    out = np.empty(len(mu))
    for i in range(len(mu)):
        out[i] = np.mean([(hypervolume(np.vstack([front, z]), ref) if len(front) else
                           hypervolume(z[None], ref)) - base for z in Z[i]])
    return out


def select_batch(mu: np.ndarray, sd: np.ndarray, front: np.ndarray, ref: np.ndarray, n: int,
                 rng: np.random.Generator, p_feasible: np.ndarray | None = None, genes: np.ndarray | None = None,
                 draws: int = 32) -> list[int]:
    """Greedy q-EHVI batch of ``n`` candidate indices (values already scaled and minimised)."""
    if not len(mu) or n <= 0:
        return []
    d = mu.shape[1]
    if d > 2:  # the exact HV per draw is costlier in 3+ dimensions: fewer draws
        draws = min(draws, 8)
    Zs = rng.standard_normal((draws, d))
    pf = np.ones(len(mu)) if p_feasible is None else p_feasible
    P = front[nondominated_mask(front)] if len(front) else np.zeros((0, d))
    picks: list[int] = []
    alive = np.ones(len(mu), dtype=bool)
    for _ in range(min(n, len(mu))):
        idx = np.flatnonzero(alive)
        if not len(idx):
            break
        gain = ehvi(P, mu[idx], sd[idx], ref, Zs) * pf[idx]
        if np.max(gain) > 1e-12:
            best = int(idx[int(np.argmax(gain))])
        else:  # nothing improves, even by chance: the most uncertain one
            best = int(idx[int(np.argmax(sd[idx].sum(axis=1)))])
        picks.append(best)
        alive[best] = False
        if genes is not None:  # diversity: never two candidates with the same genes in one batch
            alive &= np.any(np.abs(genes - genes[best]) > 1e-9, axis=1)
        P = np.vstack([P, mu[best]])
        P = P[nondominated_mask(P)]
    return picks


def prefilter(opt: np.ndarray, limit: int) -> np.ndarray:
    """Indices of the first non-dominated layers of ``opt`` (optimistic values), at most ``limit``."""
    remaining = np.arange(len(opt))
    out: list[int] = []
    while len(remaining) and len(out) < limit:
        mask = nondominated_mask(opt[remaining])
        out.extend(remaining[mask].tolist())
        remaining = remaining[~mask]
    return np.array(out[: max(limit, 1)], dtype=int)
