"""pymoo adapters (nsga2, nsga3, agemoea, smsemoa) driven through pymoo's own ask/tell.

Each param's genes get the operator that fits them: SBX + polynomial mutation for reals and
ordered integers (rounded), uniform crossover + random reset for unordered choices, k-point
crossover + bit-flip for mask bits (as ECAD does for caching schedules). Failed trials are
told as infeasible (one extra constraint column) so they never displace a working candidate.
Offspring are new when they build a model not yet asked for (``Space.key``): genes the model does
not use, or genes that decode to the same config, do not make a new one.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from pymoo.core.crossover import Crossover
from pymoo.core.duplicate import DuplicateElimination
from pymoo.core.mutation import Mutation
from pymoo.core.problem import Problem
from pymoo.core.sampling import Sampling
from pymoo.core.termination import NoTermination
from pymoo.operators.crossover.pntx import PointCrossover
from pymoo.operators.crossover.sbx import cross_sbx
from pymoo.operators.mutation.pm import mut_pm

from .base import Algorithm, check_options, fill_failed, named_parameters, register

# set by the adapter, or meaningless in ask/tell: not user options
OWN_OPERATORS = ("sampling", "crossover", "mutation", "eliminate_duplicates", "termination", "seed", "verbose", "output",
                 "display", "callback", "evaluator", "save_history")


class _SpaceProblem(Problem):
    def __init__(self, space, n_obj: int, n_constr: int):
        xl, xu = space.gene_bounds
        super().__init__(n_var=space.n_genes, n_obj=n_obj, n_ieq_constr=n_constr + 1, xl=xl, xu=xu)
        kinds = np.array(space.gene_kinds)
        self.num = np.flatnonzero((kinds == "real") | (kinds == "int"))
        self.ints = np.flatnonzero(kinds == "int")
        self.cat = np.flatnonzero(kinds == "cat")
        self.bin = np.flatnonzero(kinds == "bin")

    def _evaluate(self, x, out, *args, **kwargs):  # pragma: no cover - ask/tell only
        raise RuntimeError("this problem is evaluated by the tradeoff study, not by pymoo")


class _SpaceSampling(Sampling):
    def __init__(self, space, initial):
        super().__init__()
        self.space, self.initial = space, list(initial)

    def _do(self, problem, n_samples, random_state=None, **kwargs):
        rows = [self.space.to_genes(c) for c in self.initial[:n_samples]]
        rows += [self.space.to_genes(self.space.sample(random_state)) for _ in range(n_samples - len(rows))]
        return np.array(rows, dtype=float)


class _SpaceCrossover(Crossover):
    def __init__(self, prob: float = 0.9, eta: float = 15.0, n_points: int = 4):
        super().__init__(2, 2, prob=prob)
        self.eta, self.n_points = eta, n_points

    def _do(self, problem, X, random_state=None, **kwargs):
        X = np.asarray(X, dtype=float)
        Y = X.copy()
        p = problem
        if len(p.num):
            m = X.shape[1]
            Y[:, :, p.num] = cross_sbx(X[:, :, p.num], p.xl[p.num], p.xu[p.num], np.full((m, 1), self.eta),
                                       np.full((m, 1), 0.5), np.full((m, 1), 0.5), random_state=random_state)
            Y[:, :, p.ints] = np.rint(Y[:, :, p.ints])
        if len(p.cat):
            swap = random_state.random((X.shape[1], len(p.cat))) < 0.5
            a, b = X[0][:, p.cat], X[1][:, p.cat]
            Y[0][:, p.cat] = np.where(swap, b, a)
            Y[1][:, p.cat] = np.where(swap, a, b)
        if len(p.bin) > 1:
            n_points = min(self.n_points, len(p.bin) - 1)
            Y[:, :, p.bin] = PointCrossover(n_points)._do(None, X[:, :, p.bin].astype(bool),
                                                         random_state=random_state).astype(float)
        return Y


class _SpaceMutation(Mutation):
    def __init__(self, eta: float = 20.0):
        super().__init__()
        self.eta = eta

    def _do(self, problem, X, random_state=None, **kwargs):
        p = problem
        X = np.asarray(X, dtype=float).copy()
        n = len(X)
        per_param = 1.0 / max(p.n_var - len(p.bin) + (1 if len(p.bin) else 0), 1)
        if len(p.num):
            X[:, p.num] = mut_pm(X[:, p.num], p.xl[p.num], p.xu[p.num], np.full(n, self.eta),
                                 np.full(n, per_param), at_least_once=False, random_state=random_state)
            X[:, p.ints] = np.rint(X[:, p.ints])
        if len(p.cat):
            reset = random_state.random((n, len(p.cat))) < per_param
            draws = random_state.integers(p.xl[p.cat], p.xu[p.cat] + 1, size=(n, len(p.cat)))
            X[:, p.cat] = np.where(reset, draws, X[:, p.cat])
        if len(p.bin):
            flip = random_state.random((n, len(p.bin))) < 1.0 / len(p.bin)
            X[:, p.bin] = np.where(flip, 1.0 - X[:, p.bin], X[:, p.bin])
        return X


class _ModelDuplicates(DuplicateElimination):
    """Duplicates by the model a config builds: among the offspring themselves and every config asked
    so far, or against another population. pymoo then breeds again (up to its own limit) to fill the
    generation with new models; by genes alone, a space whose configs share models (a supernet's
    unused slots, a table's isomorphic cells) can breed nothing but models already evaluated."""

    def __init__(self, space):
        super().__init__()
        self.space = space
        self.asked: set[str] = set()

    def key(self, ind) -> str:
        return self.space.key(self.space.from_genes(np.asarray(ind.X, dtype=float)))

    def _do(self, pop, other, is_duplicate):
        seen = self.asked if other is None else {self.key(o) for o in other}
        bred: set[str] = set()  # among the offspring themselves (pymoo calls this on every mating try)
        for i, ind in enumerate(pop):
            k = self.key(ind)
            if k in seen or k in bred:
                is_duplicate[i] = True
            elif other is None:
                bred.add(k)
        return is_duplicate


def _comp_by_cv_then_random(pop, P, random_state=None, **kwargs):
    """NSGA-III's tournament (fewer violations win, else a coin flip) with every tie drawn from the
    seeded random state: pymoo 0.6.2 draws ties between equally infeasible ones unseeded."""
    S = np.empty(len(P), dtype=int)
    for i, (a, b) in enumerate(P):
        ca, cb = float(np.sum(pop[a].CV)), float(np.sum(pop[b].CV))
        if (ca > 0 or cb > 0) and ca != cb:
            S[i] = a if ca < cb else b
        else:
            S[i] = random_state.choice([a, b])
    return S[:, None]


def default_pop_size(budget: int | None) -> int:
    """Enough generations to matter within the budget: budget/8, between 10 and 100."""
    return 20 if not budget else int(min(100, max(10, budget // 8)))


class PymooAlgorithm(Algorithm):
    """ask/tell over a pymoo algorithm, one generation at a time, handed out in pieces."""

    def __init__(self, pop_size: int | None = None, **options):
        self.pop_size = pop_size
        self.options = options

    def _make(self, problem, pop_size, sampling, crossover, mutation):
        raise NotImplementedError

    def setup(self, space, n_objectives, n_constraints, seed, budget=None, initial=()):
        super().setup(space, n_objectives, n_constraints, seed, budget, initial)
        self.problem = _SpaceProblem(space, n_objectives, n_constraints)
        pop = self.pop_size or default_pop_size(budget)
        self.batch_size = pop
        self._duplicates = _ModelDuplicates(space)
        self.algo = self._make(self.problem, pop, _SpaceSampling(space, initial), _SpaceCrossover(), _SpaceMutation())
        self.algo.setup(self.problem, termination=NoTermination(), seed=seed, verbose=False)
        # genes -> config for the initial configs, which must be asked exactly (exp(log(v)) != v)
        self._initial = {space.to_genes(c).tobytes(): c for c in initial}
        self._pop = None
        self._queue: deque[int] = deque()
        self._asked: deque[int] = deque()
        self._F: dict[int, np.ndarray] = {}
        self._G: dict[int, np.ndarray] = {}
        self._worst: np.ndarray | None = None

    def __setstate__(self, d):  # a checkpoint from before duplicates by model keeps pymoo's own elimination
        self.__dict__.update({"_duplicates": None, **d})

    def ask(self, n):
        if not self._queue:
            if self._pop is not None:  # the current generation is not fully told yet
                return []
            self._pop = self.algo.ask()
            if self._pop is None or len(self._pop) == 0:  # pymoo found no new offspring (a tiny space)
                self._pop = None
                return []
            self._queue.extend(range(len(self._pop)))
            if self._duplicates is not None:
                self._duplicates.asked.update(self._duplicates.key(ind) for ind in self._pop)
        out = []
        while self._queue and len(out) < n:
            i = self._queue.popleft()
            self._asked.append(i)
            x = np.asarray(self._pop[i].X, dtype=float)
            out.append(self._initial.get(x.tobytes()) or self.space.from_genes(x))
        return out

    def tell(self, configs, values, violations):
        values = np.asarray(values, dtype=float)
        ok = np.all(np.isfinite(values), axis=1)
        if ok.any():
            w = values[ok].max(axis=0)
            self._worst = w if self._worst is None else np.maximum(self._worst, w)
        filled = fill_failed(values, self._worst)
        for row, f, v, good in zip(range(len(values)), filled, np.asarray(violations, dtype=float).reshape(len(values), -1), ok):
            i = self._asked.popleft()
            self._F[i] = f
            g = np.where(np.isfinite(v), v, 1e6)
            self._G[i] = np.append(g, 0.0 if good else 1.0)
        if not self._queue and not self._asked and self._pop is not None:
            order = range(len(self._pop))
            self._pop.set("F", np.array([self._F[i] for i in order]), "G", np.array([self._G[i] for i in order]))
            self.algo.tell(infills=self._pop)
            self._pop, self._F, self._G = None, {}, {}


class _Named(PymooAlgorithm):
    """One pymoo class by import path; ``_extra`` adds what that algorithm needs beyond the common parts."""

    cls_path = ""

    def __init__(self, pop_size: int | None = None, **options):
        super().__init__(pop_size, **options)
        if options:  # pymoo swallows unknown keywords; say so here instead
            import importlib

            mod, _, cls = self.cls_path.rpartition(".")
            allowed = named_parameters(getattr(importlib.import_module(mod), cls), skip=OWN_OPERATORS)
            check_options(self.name, options, ["pop_size", *(a for a in allowed if a != "pop_size")])

    def _extra(self, problem, pop_size) -> dict:
        return {}

    def _make(self, problem, pop_size, sampling, crossover, mutation):
        import importlib

        mod, _, cls = self.cls_path.rpartition(".")
        opts = {"pop_size": pop_size, **self._extra(problem, pop_size), **self.options}
        return getattr(importlib.import_module(mod), cls)(sampling=sampling, crossover=crossover, mutation=mutation,
                                                          eliminate_duplicates=self._duplicates, **opts)


@register("nsga2")
class NSGA2(_Named):
    name, cls_path = "nsga2", "pymoo.algorithms.moo.nsga2.NSGA2"


@register("nsga3")
class NSGA3(_Named):
    name, cls_path = "nsga3", "pymoo.algorithms.moo.nsga3.NSGA3"

    def _extra(self, problem, pop_size):
        from pymoo.operators.selection.tournament import TournamentSelection
        from pymoo.util.ref_dirs import get_reference_directions

        m = problem.n_obj
        parts = {1: 1, 2: max(pop_size - 1, 1), 3: 12 if pop_size >= 91 else 6}.get(m, 4)
        dirs = get_reference_directions("das-dennis", m, n_partitions=parts)
        return {"ref_dirs": dirs, "pop_size": max(pop_size, len(dirs)),
                "selection": TournamentSelection(func_comp=_comp_by_cv_then_random)}


@register("agemoea")
class AGEMOEA(_Named):
    name, cls_path = "agemoea", "pymoo.algorithms.moo.age.AGEMOEA"


@register("smsemoa")
class SMSEMOA(_Named):
    name, cls_path = "smsemoa", "pymoo.algorithms.moo.sms.SMSEMOA"

    def _extra(self, problem, pop_size):
        # SMS-EMOA is steady-state by design; a few offspring per step keeps batches useful
        return {"n_offsprings": max(2, pop_size // 4)}
