"""Predictor-in-the-loop search (our own; after LINAS, with the predictor's quality put to use).

Each round: refit one predictor per objective on everything evaluated so far — the kind
(forest, GP, ridge, ...) chosen per objective by cross-validated Kendall tau, so a predictor
that ranks badly is never trusted — then search the predictors instead of the real thing:
every config when the space is small enough to enumerate, else NSGA-II on the predictions
(thousands of predicted evaluations). The next batch is picked greedily by optimistic
hypervolume improvement (mean - kappa * std) over the real front, each pick joining the front
at its predicted mean so a batch spreads along the front instead of piling on one point.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from scipy.stats import norm

from ...predictors.models import make_predictor
from ...predictors.quality import cross_validated
from ..front import hypervolume, nondominated_mask
from .base import Algorithm, register


@register("predictive")
class Predictive(Algorithm):
    name = "predictive"

    def __init__(self, batch_size: int = 10, initial_size: int | None = None,
                 predictors: tuple[str, ...] = ("rf", "gp", "ridge"), kappa: float = 1.0,
                 inner_evals: int = 5000, enumerate_limit: int = 200_000, reselect_every: int = 3,
                 max_candidates: int = 600, use_reference: bool = True):
        self.batch_size = batch_size
        self.initial_size = initial_size
        self.predictors = tuple(predictors)
        self.kappa = kappa
        self.inner_evals = inner_evals
        self.enumerate_limit = enumerate_limit
        self.reselect_every = reselect_every
        self.max_candidates = max_candidates
        self.use_reference = use_reference

    def setup(self, space, n_objectives, n_constraints, seed, budget=None, initial=()):
        super().setup(space, n_objectives, n_constraints, seed, budget, initial)
        n0 = self.initial_size or max(2 * self.batch_size, min(30, 4 * space.n_features // 3 + 10))
        self.n_initial = int(n0 if budget is None else min(n0, max(budget // 3, 2)))
        self.X: list[np.ndarray] = []
        self.Y: list[np.ndarray] = []
        self.V: list[float] = []
        self.seen: set[str] = set()
        self.rounds = 0
        self.chosen: list[str] = []       # predictor kind per objective (+ violation), re-chosen by CV
        self.quality_log: list[dict] = []  # per round: the CV quality that chose each predictor
        self._enum = None

    def __getstate__(self):  # the enumerated candidate pool is rebuilt, not checkpointed
        d = dict(self.__dict__)
        d["_enum"] = None
        return d

    # -- ask -----------------------------------------------------------------------------------
    def ask(self, n):
        out: list = []
        while self.initial and len(out) < n:
            c = self.initial.pop(0)
            if self._claim(c):
                out.append(c)
        n_done = len(self.seen)
        if n_done < self.n_initial or len(self.Y) < 4:
            tries = 0
            while len(out) < n and tries < 100 * n:
                tries += 1
                c = self.space.sample(self.rng)
                if self._claim(c):
                    out.append(c)
            return out
        if len(out) < n:
            out += self._model_based(n - len(out))
        return out

    def _claim(self, c) -> bool:
        k = self.space.key(c)
        if k in self.seen:
            return False
        self.seen.add(k)
        return True

    def _model_based(self, n: int) -> list:
        X = np.array(self.X)
        Y = np.array(self.Y)
        ok = np.all(np.isfinite(Y), axis=1)
        if ok.sum() < 4:
            return [c for c in (self.space.sample(self.rng) for _ in range(4 * n)) if self._claim(c)][:n]
        models = self._fit(X, Y, ok)
        cands, C = self._candidates(models, Y[ok])
        if not cands:
            return [c for c in (self.space.sample(self.rng) for _ in range(4 * n)) if self._claim(c)][:n]
        mu, sd = self._predict(models, C)
        picks = self._select(mu, sd, Y[ok & self._feasible_rows()], n, self._p_feasible(models, C), Y[ok])
        out = []
        for i in picks:
            if self._claim(cands[i]):
                out.append(cands[i])
        self.rounds += 1
        return out

    # -- predictors ----------------------------------------------------------------------------
    def _targets(self, Y, ok):
        cols = [Y[ok, j] for j in range(self.n_objectives)]
        if self.n_constraints:
            cols.append(np.array(self.V)[ok])
        return cols

    def _fit(self, X, Y, ok):
        targets = self._targets(Y, ok)
        Xo = X[ok]
        if not self.chosen or (self.rounds % self.reselect_every == 0):
            self.chosen, qual = [], {}
            for j, y in enumerate(targets):
                best, best_tau = self.predictors[0], -2.0
                if len(self.predictors) > 1 and np.ptp(y) > 0:
                    for kind in self.predictors:
                        q = cross_validated(make_predictor(kind, self.seed), Xo, y, folds=5, seed=self.seed)
                        qual[f"{j}:{kind}"] = q["kendall_tau"]
                        if q["kendall_tau"] > best_tau:
                            best, best_tau = kind, q["kendall_tau"]
                self.chosen.append(best)
            self.quality_log.append({"evaluated": int(ok.sum()), "chosen": list(self.chosen), "kendall_tau": qual})
        return [make_predictor(kind, self.seed + self.rounds).fit(Xo, y) for kind, y in zip(self.chosen, targets)]

    def _predict(self, models, C):
        outs = [m.predict(C) for m in models[: self.n_objectives]]
        return np.stack([o[0] for o in outs], axis=1), np.stack([o[1] for o in outs], axis=1)

    def _p_feasible(self, models, C):
        if not self.n_constraints:
            return np.ones(len(C))
        m, s = models[-1].predict(C)
        return norm.cdf((1e-9 - m) / np.maximum(s, 1e-9))

    def _feasible_rows(self):
        return np.array([v <= 0 for v in self.V]) if self.n_constraints else np.ones(len(self.V), dtype=bool)

    # -- candidates ----------------------------------------------------------------------------
    def _enumerable(self) -> bool:
        return all(math.isfinite(p.cardinality) for p in self.space.params.values()) and \
            self.space.cardinality <= self.enumerate_limit

    def _candidates(self, models, Y_ok):
        if self._enumerable():
            if self._enum is None:
                names = self.space.names
                domains = [self._values(self.space[n]) for n in names]
                configs = [dict(zip(names, combo)) for combo in itertools.product(*domains)]
                self._enum = (configs, self.space.encode_many(configs), [self.space.key(c) for c in configs])
            configs, C, keys = self._enum
            keep = np.array([k not in self.seen for k in keys])
            pool = [c for c, k in zip(configs, keep) if k]
            return pool, C[keep]
        return self._inner_search(models)

    @staticmethod
    def _values(p):
        if hasattr(p, "values"):
            return list(p.values)
        if p.kind == "int":
            return list(range(p.low, p.high + 1, p.step))
        if p.kind == "mask":
            return [np.array(b, dtype=bool).reshape(p.shape) for b in itertools.product([0, 1], repeat=p.size)]
        raise ValueError(f"cannot enumerate {p.describe()}")

    def _inner_search(self, models):
        """NSGA-II on the predictors' optimistic values; its whole archive is the candidate pool."""
        from .pymoo import NSGA2

        inner = NSGA2(pop_size=100)
        inner.setup(self.space, self.n_objectives, 0, int(self.rng.integers(2**31)), budget=None)
        pool: dict[str, dict] = {}
        gens = max(2, self.inner_evals // 100)
        for _ in range(gens):
            batch = inner.ask(100)
            if not batch:
                break
            C = self.space.encode_many(batch)
            mu, sd = self._predict(models, C)
            inner.tell(batch, mu - self.kappa * sd, np.zeros((len(batch), 0)))
            for c in batch:
                k = self.space.key(c)
                if k not in self.seen:
                    pool[k] = c
        for _ in range(200):  # some pure exploration too
            c = self.space.sample(self.rng)
            k = self.space.key(c)
            if k not in self.seen:
                pool.setdefault(k, c)
        cands = list(pool.values())
        return cands, self.space.encode_many(cands)

    # -- selection -----------------------------------------------------------------------------
    def _select(self, mu, sd, front_pts, n, p_feas, seen_pts):
        # scaled by everything evaluated (not just the front), so the reference point lies beyond the
        # worst seen values and extending the front at its ends counts, as it does for the real HV
        lo = np.nanmin(np.vstack([seen_pts, mu]), axis=0)
        hi = np.nanmax(seen_pts, axis=0)
        span = np.where(hi > lo, hi - lo, 1.0)
        z = lambda a: (a - lo) / span  # noqa: E731
        # the user's reference point, when given, bounds the hypervolume aimed at (the one they
        # measure); the scale stays that of everything seen, so uncertainty keeps its weight
        ref = z(np.asarray(self.reference, float)) if self.reference is not None and self.use_reference \
            else np.full(mu.shape[1], 1.1)
        P = z(front_pts[nondominated_mask(front_pts)]) if len(front_pts) else np.zeros((0, mu.shape[1]))
        opt = z(mu - self.kappa * sd)
        mean = z(mu)
        # keep the most promising candidates: the first non-dominated layers of the optimistic values
        order = self._layers(opt, self.max_candidates)
        picks: list[int] = []
        base = hypervolume(P, ref) if len(P) else 0.0
        for _ in range(n):
            best, gain = None, 0.0
            for i in order:
                if i in picks:
                    continue
                g = (hypervolume(np.vstack([P, opt[i]]), ref) - base) * p_feas[i]
                if g > gain:
                    best, gain = i, g
            if best is None:  # nothing improves even optimistically: explore the most uncertain
                rest = [i for i in order if i not in picks]
                if not rest:
                    break
                best = max(rest, key=lambda i: float(np.sum(sd[i] / span)))
            picks.append(best)
            P = np.vstack([P, mean[best]])
            P = P[nondominated_mask(P)]
            base = hypervolume(P, ref)
        return picks

    @staticmethod
    def _layers(F, limit):
        remaining = np.arange(len(F))
        out: list[int] = []
        while len(remaining) and len(out) < limit:
            mask = nondominated_mask(F[remaining])
            layer = remaining[mask]
            out.extend(layer.tolist())
            remaining = remaining[~mask]
        return out[: max(limit, 1)]

    # -- tell ----------------------------------------------------------------------------------
    def tell(self, configs, values, violations):
        values = np.asarray(values, float)
        viol = np.asarray(violations, float).reshape(len(values), -1)
        for c, v, g in zip(configs, values, viol):
            self.seen.add(self.space.key(c))
            self.X.append(self.space.encode(c))
            self.Y.append(v)
            self.V.append(float(np.sum(np.where(np.isfinite(g), g, 1e6))) if len(g) else 0.0)
