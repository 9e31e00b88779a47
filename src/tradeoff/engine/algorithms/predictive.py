"""Predictor-in-the-loop search (our own; after LINAS), hedged so a poor predictor costs little.

Each round refits one predictor per objective on everything evaluated so far — its kind chosen
per objective by cross-validated quality (Kendall tau, top-10% recall, MAPE), on the space's
features plus structured ones for cells (bag of operations) and the space's own where it has
them (``Space.with_features``: depths and paths in a cell) — and fills the batch from three
arms:

- ``model``: the whole space (enumerated when small enough, else NSGA-II run on the
  predictors, started from the current front), ranked by expected hypervolume improvement (EHVI)
  under the predictors' mean and std, picked greedily with a believed front so the batch spreads
  out: the front plus every pick made so far in the batch, the other arms' included;
- ``local``: the same EHVI over the neighbours of the current front (one or two changed genes),
  where predictors are most trusted and NAS tables reward small steps;
- ``inner``: the inner algorithm's own proposals, untouched by the predictors, so a predictor
  that ranks badly cannot stall the search. By default Optuna's GP for one or two objectives and
  multivariate TPE for three or more (``default_inner``). It learns from every
  real result, the initial design and the other arms' picks included (``observe``), so it
  proposes from its model from the first round instead of sampling its own random start-up.

Failed trials (an exception, a NaN, a timeout) teach a classifier where candidates fail; its
chance of success weighs every pick's EHVI, and candidates below ``min_success`` are picked
only when nothing else is left, so the loop learns to stay out of a crashing region.

Batches are small by default (5): the predictors are refitted after every batch, so a batch of 5
learns twice as often as one of 10 for the same evaluations, and the loop's own second per batch
is small next to any real evaluation. With a parallel executor, set ``batch_size`` to its workers.

The arms share each batch by how often their picks reached the real front (a discounted
success rate; every arm keeps a floor share), so the loop leans on whichever works here.
"""

from __future__ import annotations

import math
import time

import numpy as np
from scipy.stats import norm

from ...predictors.encodings import as_built, structured_features
from ...predictors.models import Survival, check_predictor, lighter, make_predictor
from ...predictors.quality import cross_validated, selection_score
from .acquisition import prefilter, select_batch
from .base import Algorithm, check_batch_size, make_algorithm, register
from .design import check_design, latin_design
from .grid import Grid
from .local import History, neighbours

AUTO_PREDICTORS = ("rf", "gp", "ridge")  # also "extra-trees", "gbm", "mlp" on request: their CV costs more
ARMS = ("model", "local", "inner")


def default_inner(n_objectives: int) -> str:
    """The inner arm's algorithm when none is named. Measured with ``bench/search_efficiency.py``:
    Optuna's GP lowered the regret on the NAS-Bench-Graph tables (accuracy against latency or
    parameters, ten seeds) and on ZDT1, and raised it on DTLZ2 (three objectives), where
    multivariate TPE's proposals carry the search."""
    return "optuna-gp" if n_objectives <= 2 else "motpe"


@register("predictive")
class Predictive(Algorithm):
    name = "predictive"

    def __init__(self, batch_size: int = 5, initial_size: int | None = None,
                 predictors: str | tuple[str, ...] = "auto", kappa: float = 1.0, inner: str | None = None,
                 arms: tuple[str, ...] = ARMS, min_share: float = 0.1, local_radius: int = 2,
                 inner_evals: int = 2000, enumerate_limit: int = 200_000, pool_size: int = 4000,
                 reselect_every: int = 3, cv_folds: int = 3,
                 max_candidates: int = 300, draws: int = 32, structured: bool = True,
                 use_reference: bool = True, light_cv: bool = True, min_success: float = 0.75,
                 learn_failures: bool = True, warm_inner: bool = True, initial_design: str = "random"):
        check_batch_size(batch_size)
        check_design(initial_design)
        if not 0.0 <= min_success <= 1.0:
            raise ValueError(f"min_success is a probability, between 0 and 1; got {min_success}")
        self.batch_size = batch_size
        self.initial_size = initial_size
        self.predictors = AUTO_PREDICTORS if predictors == "auto" else \
            ((predictors,) if isinstance(predictors, str) else tuple(predictors))
        for kind in self.predictors:  # a misspelt predictor is refused with the recipe, not mid-run
            if isinstance(kind, str):
                check_predictor(kind)
        self.kappa = kappa                # optimism of the prefilter: mean - kappa * std
        if isinstance(inner, str):        # a misspelt inner algorithm is refused with the recipe, not at set-up
            try:
                make_algorithm(inner)
            except ValueError as e:
                raise ValueError(f"inner: {e}") from None
        self.inner_name = inner           # None: chosen by the number of objectives at set-up
        self.arms = tuple(a for a in arms if a in ARMS) or ("model",)
        self.min_share = min_share
        self.local_radius = local_radius
        self.inner_evals = inner_evals
        self.enumerate_limit = enumerate_limit
        self.pool_size = pool_size        # candidates predicted per round (a fresh sample of a large space)
        self.reselect_every = reselect_every
        self.cv_folds = cv_folds
        self.max_candidates = max_candidates
        self.draws = draws
        self.structured = structured
        self.use_reference = use_reference
        self.light_cv = light_cv          # cross-validate cheaper copies of the predictors (fewer trees...)
        self.min_success = min_success    # once trials fail: candidates less likely to succeed wait until last
        self.learn_failures = learn_failures  # False: failed trials are simply left out (as before)
        self.warm_inner = warm_inner      # the inner algorithm also learns from the other arms' results
        self.initial_design = initial_design  # "random", or "latin": every level of every gene in the design

    def setup(self, space, n_objectives, n_constraints, seed, budget=None, initial=()):
        super().setup(space, n_objectives, n_constraints, seed, budget, initial)
        n0 = self.initial_size or max(self.batch_size, min(20, space.n_genes + 6))
        self.n_initial = int(n0 if budget is None else min(n0, max(budget // 4, 2)))
        self._design = latin_design(space, self.n_initial, self.rng) if self.initial_design == "latin" else []
        self.history = History(space, n_constraints)
        self.asked: set[str] = set()
        self.rounds = 0
        self.chosen: list[str] = []        # predictor kind per objective (+ violation), re-chosen by CV
        self.quality_log: list[dict] = []  # per selection: the CV quality that chose each predictor
        self.arm_of: dict[str, str] = {}   # config key -> the arm that proposed it
        self.score = {a: [1.0, 2.0] for a in self.arms}  # discounted (hits + 1, tries + 2) per arm
        self.arm_log: list[dict] = []      # per round: slots per arm and the loop's own seconds
        self.inner = None
        if "inner" in self.arms:
            self.inner_kind = self.inner_name or default_inner(n_objectives)
            self.inner = make_algorithm(self.inner_kind)
            self.inner.setup(space, n_objectives, n_constraints, seed + 1, budget=budget)
        self._inner_asked: list = []
        self._inner_refused: set[str] = set()  # inner proposals the success model kept out
        self._asked_configs: list = []     # every config asked or told, in order (marks the grid's rows)
        self._grid: Grid | None = None
        self._grid_marked = 0
        self._survival: Survival | None = None  # P(a candidate evaluates at all), once a trial has failed
        self._own_width = self._own_features(space)

    def check_space(self, space):
        self._own_features(space)

    def _own_features(self, space) -> int | None:
        """How many of the features are the space's own (the last columns); a predictor that sees only
        them, on a space without them, fails here, before any trial."""
        own = space.extra_features if self.structured else None
        width = int(np.asarray(own(as_built(space, [space.sample(np.random.default_rng(0))]))).shape[1]) \
            if own is not None else None
        for kind in self.predictors:  # the names were checked in __init__; here only the view needs the space
            if isinstance(kind, str) and check_predictor(kind)[1]:
                make_predictor(kind, own_width=width)
        return width

    def __getstate__(self):  # the enumerated candidate pool is rebuilt, not checkpointed
        d = dict(self.__dict__)
        d["_grid"], d["_grid_marked"] = None, 0
        return d

    def __setstate__(self, d):  # a checkpoint from before the success model resumes without one
        self.__dict__.update({"_survival": None, "min_success": 0.75, "learn_failures": True,
                              "warm_inner": False, "_own_width": None, "initial_design": "random",
                              "_design": [], "_inner_refused": set(), **d})

    @property
    def seen(self) -> set[str]:
        return self.asked

    # -- ask -----------------------------------------------------------------------------------
    def ask(self, n):
        out: list = []
        while self.initial and len(out) < n:
            self._claim(self.initial.pop(0), out, "initial")
        good = self.history.good()
        if len(self.asked) < self.n_initial:  # the initial design: exactly n_initial configs
            want = min(n, len(out) + self.n_initial - len(self.asked))
            while self._design and len(out) < want:  # a repeat (two strata, one model) is made up at random
                self._claim(self._design.pop(0), out, "design")
            self._fill_random(out, want)
            if not self.history.Y:  # a design smaller than the batch is asked alone: nothing is known yet
                return out
        if len(out) >= n or self.history.ok().sum() < 4:
            self._fill_random(out, n)
            return out
        t0 = time.perf_counter()
        slots = self._slots(n - len(out))
        models = self._fit() if slots.get("model") or slots.get("local") else None
        if slots.get("local"):
            front = self.history.front_index()
            cands = neighbours(self.space, [self.history.G[i] for i in front], self.asked, self.rng,
                               radius=self.local_radius)
            self._take(models, cands, slots["local"], out, "local", good)
        if slots.get("inner"):
            self._from_inner(min(slots["inner"], n - len(out)), out)
        if slots.get("model"):  # last, so it also fills what the other arms could not (a repeat, no neighbour)
            cands, C = self._candidates(models)
            self._take(models, cands, n - len(out), out, "model", good, C)
        self._fill_random(out, n)
        self.rounds += 1
        self.arm_log.append({"evaluated": len(self.history.Y), "slots": slots,
                             "seconds": round(time.perf_counter() - t0, 4)})
        return out

    def _claim(self, c, out, arm) -> bool:
        k = self.space.key(c)
        if k in self.asked:
            return False
        self.asked.add(k)
        self._asked_configs.append(c)
        self.arm_of[k] = arm
        out.append(c)
        return True

    def _fill_random(self, out, n):
        tries = 0
        while len(out) < n and tries < 100 * n:
            tries += 1
            self._claim(self.space.sample(self.rng), out, "random")

    def _slots(self, n: int) -> dict[str, int]:
        """Batch slots per arm: a floor share each, the rest by discounted success rate."""
        if n <= 0:
            return {}
        rate = {a: h / t for a, (h, t) in self.score.items()}
        # each arm keeps min_share of the batch (at least one slot while min_share > 0), the floors within n
        each = min(max(1, math.ceil(self.min_share * n)), n // len(self.arms)) if self.min_share > 0 else 0
        floor = {a: each for a in self.arms}
        left = n - sum(floor.values())
        total = sum(rate.values())
        share = {a: floor[a] + left * rate[a] / total for a in self.arms}
        slots = {a: int(math.floor(s)) for a, s in share.items()}
        for a in sorted(self.arms, key=lambda a: share[a] - slots[a], reverse=True)[: n - sum(slots.values())]:
            slots[a] += 1
        return slots

    def _from_inner(self, n, out):
        if n <= 0 or self.inner is None:
            return
        asked = self.inner.ask(n)
        # once trials have failed, a proposal the success model expects to fail is not evaluated, nor
        # one a sparse table lacks (the study would evaluate its nearest row instead): the inner
        # sampler is told it failed, and the model arm fills its slot
        ps = self._p_success(self._features(asked)) if asked and self._survival is not None else np.ones(len(asked))
        for c, p in zip(asked, ps):
            self._inner_asked.append(c)
            if p < self.min_success or not self.space.exists(c):
                self._inner_refused.add(self.space.key(c))
                continue
            self._claim(c, out, "inner")  # one already asked by another arm is told to the inner one later

    # -- predictors ----------------------------------------------------------------------------
    def _features(self, configs) -> np.ndarray:
        return structured_features(self.space, configs) if self.structured else self.space.encode_many(configs)

    def _targets(self, ok):
        Y = np.array(self.history.Y)
        cols = [Y[ok, j] for j in range(self.n_objectives)]
        if self.n_constraints:
            cols.append(np.array(self.history.V)[ok])
        return cols

    def _fit(self):
        ok = self.history.ok()
        configs = [c for c, o in zip(self.history.configs, ok) if o]
        Xo = self._features(configs)
        targets = self._targets(ok)
        if not self.chosen or (self.rounds % self.reselect_every == 0):
            self.chosen, qual = [], {}
            for j, y in enumerate(targets):
                best, best_score = self.predictors[0], -np.inf
                if len(self.predictors) > 1 and np.ptp(y) > 0:
                    for kind in self.predictors:
                        p = self._make(kind, self.seed)
                        q = cross_validated(lighter(p) if self.light_cv else p, Xo, y, folds=self.cv_folds,
                                            seed=self.seed)
                        qual[f"{j}:{kind}"] = {k: round(q[k], 4) for k in ("kendall_tau", "top10_recall", "mape")}
                        if selection_score(q) > best_score:
                            best, best_score = kind, selection_score(q)
                self.chosen.append(best)
            self.quality_log.append({"evaluated": int(ok.sum()), "chosen": list(self.chosen), "quality": qual})
        failed = ~ok
        self._survival = None
        if failed.any() and self.learn_failures:
            X_all = self._features(self.history.configs)
            self._survival = Survival(seed=self.seed + self.rounds).fit(X_all, failed)
        return [self._make(kind, self.seed + self.rounds).fit(Xo, y) for kind, y in zip(self.chosen, targets)]

    def _make(self, kind, seed):
        return make_predictor(kind, seed, own_width=self._own_width)

    def _p_success(self, C) -> np.ndarray:
        return np.ones(len(C)) if self._survival is None else self._survival.predict(C)

    def _predict(self, models, C):
        outs = [m.predict(C) for m in models[: self.n_objectives]]
        mu, sd = np.stack([o[0] for o in outs], axis=1), np.stack([o[1] for o in outs], axis=1)
        if self.n_constraints:
            m, s = models[-1].predict(C)
            pf = norm.cdf((1e-9 - m) / np.maximum(s, 1e-9))
        else:
            pf = np.ones(len(C))
        return mu, sd, pf

    # -- candidates ----------------------------------------------------------------------------
    def _enumerable(self) -> bool:
        return all(math.isfinite(p.cardinality) for p in self.space.params.values()) and \
            self.space.cardinality <= self.enumerate_limit

    def _candidates(self, models) -> tuple[list, np.ndarray | None]:
        """A sample of the unasked configs of an enumerable space (with their features), else the
        inner search's archive (features computed later)."""
        if not self._enumerable():
            return self._inner_search(models), None
        if self._grid is None:
            self._grid, self._grid_marked = Grid(self.space, self.structured), 0
        self._grid.mark(self._asked_configs[self._grid_marked:])
        self._grid_marked = len(self._asked_configs)
        rows = self._grid.sample(self.pool_size, self.rng)
        return self._grid.configs(rows), self._grid.features(rows)

    def _inner_search(self, models) -> list:
        """NSGA-II on the predictors' optimistic values, its first population the evaluated front (the
        rest random), so it refines around what is known to be good; its whole archive is the pool."""
        from .pymoo import NSGA2

        inner = NSGA2(pop_size=100)
        front = [self.history.configs[i] for i in self.history.front_index()][:100]
        inner.setup(self.space, self.n_objectives, 0, int(self.rng.integers(2**31)), budget=None, initial=front)
        pool: dict[str, dict] = {}
        for _ in range(max(2, self.inner_evals // 100)):
            batch = inner.ask(100)
            if not batch:
                break
            mu, sd, _ = self._predict(models, self._features(batch))
            inner.tell(batch, mu - self.kappa * sd, np.zeros((len(batch), 0)))
            for c in batch:
                k = self.space.key(c)
                if k not in self.asked and self.space.exists(c):
                    pool[k] = c
        for _ in range(200):  # some pure exploration too
            c = self.space.sample(self.rng)
            k = self.space.key(c)
            if k not in self.asked:
                pool.setdefault(k, c)
        return list(pool.values())

    # -- selection -----------------------------------------------------------------------------
    def _take(self, models, cands, n, out, arm, good, C=None):
        if n <= 0 or not cands:
            return
        C = self._features(cands) if C is None else C
        mu, sd, pf = self._predict(models, C)
        ps = self._p_success(C)
        pf = pf * ps
        Y = np.array(self.history.Y)
        ok = self.history.ok()
        seen_pts = Y[ok]
        front_pts = Y[good] if good.any() else np.zeros((0, self.n_objectives))
        if out:  # this batch's picks by the other arms, at their predicted means: this arm spreads away from them
            front_pts = np.vstack([front_pts, self._predict(models, self._features(out))[0]])
        # scaled by everything evaluated, so the reference point lies beyond the worst seen values and
        # extending the front at its ends counts, as it does for the real hypervolume
        lo = np.minimum(seen_pts.min(axis=0), mu.min(axis=0))
        hi = seen_pts.max(axis=0)
        span = np.where(hi > lo, hi - lo, 1.0)
        z = lambda a: (a - lo) / span  # noqa: E731
        ref = z(np.asarray(self.reference, float)) if self.reference is not None and self.use_reference \
            else np.full(self.n_objectives, 1.1)
        likely = np.flatnonzero(ps >= self.min_success)  # the likely failures only when nothing else is left
        pool = likely if len(likely) else np.arange(len(mu))
        top = pool[prefilter(z(mu[pool] - self.kappa * sd[pool]), self.max_candidates)]
        if self.space.canonical is not None:  # the pool may hold other configs of models already asked
            top = self._one_per_model(cands, top)
            if not len(top):
                return
        genes = np.array([self.space.to_genes(cands[i]) for i in top])
        picks = select_batch(z(mu[top]), sd[top] / span, z(front_pts), ref, n, self.rng, pf[top], genes,
                             draws=self.draws)
        for i in picks:
            self._claim(cands[int(top[i])], out, arm)

    def _one_per_model(self, cands, idx: np.ndarray) -> np.ndarray:
        """The candidates (of ``idx``) whose model is not asked yet, one config per model."""
        keep, models = [], set()
        for i in idx:
            k = self.space.key(cands[int(i)])
            if k not in self.asked and k not in models:
                models.add(k)
                keep.append(int(i))
        return np.array(keep, dtype=int)

    # -- tell ----------------------------------------------------------------------------------
    def tell(self, configs, values, violations):
        values = np.asarray(values, float).reshape(len(configs), -1)
        viol = np.asarray(violations, float).reshape(len(configs), -1)
        for c in configs:
            self.asked.add(self.space.key(c))
        self._asked_configs.extend(configs)
        self.history.add(configs, values, viol)
        self._credit(configs)
        self._tell_inner(configs, values, viol)

    def _credit(self, configs):
        """Each arm's picks in this batch that are on the real front now: its hits."""
        front = set(np.array(self.history.keys)[self.history.front_index()].tolist())
        for a in self.score:
            self.score[a] = [0.9 * self.score[a][0] + 0.1, 0.9 * self.score[a][1] + 0.2]  # decay to the prior
        for c in configs:
            k = self.space.key(c)
            a = self.arm_of.get(k)
            if a in self.score:
                self.score[a][1] += 1
                self.score[a][0] += float(k in front)

    def _tell_inner(self, configs, values, viol):
        if self.inner is None:
            return
        if self.warm_inner:  # the initial design and the other arms' picks: real results it did not ask for
            mine = {self.space.key(c) for c in self._inner_asked}
            other = [i for i, c in enumerate(configs) if self.space.key(c) not in mine]
            if other:
                self.inner.observe([configs[i] for i in other], values[other], viol[other])
        if not self._inner_asked:
            return
        by_key = {self.space.key(c): (v, g) for c, v, g in zip(configs, values, viol)}
        known = dict(zip(self.history.keys, zip(self.history.Y, self._violations_rows())))
        done = []
        for c in self._inner_asked:
            k = self.space.key(c)
            if k in by_key or k in known:
                done.append((c, *(by_key.get(k) or known[k])))
            elif k in self._inner_refused:   # not evaluated: told as failed (the samplers leave it out)
                done.append((c, np.full(self.n_objectives, np.nan), np.zeros(max(self.n_constraints, 0))))
            else:
                break  # told in the order asked; the rest wait for their results
        if done:
            self._inner_asked = self._inner_asked[len(done):]
            self.inner.tell([d[0] for d in done], np.array([d[1] for d in done]),
                            np.array([d[2] for d in done]).reshape(len(done), -1))

    def _violations_rows(self):
        m = max(self.n_constraints, 0)
        return [np.full(m, max(v, 0.0)) / max(m, 1) if m else np.zeros(0) for v in self.history.V]
