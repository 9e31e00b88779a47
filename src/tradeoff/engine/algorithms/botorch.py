"""BoTorch multi-objective Bayesian optimisation: qLogNEHVI (or qNParEGO) over discrete candidates.

A thin adapter: one SingleTaskGP per objective on the space's features (``Space.encode``:
one-hot for unordered choices, unit scale for numbers, so mixed and categorical inputs are
handled by the encoding), the acquisition maximised with ``optimize_acqf_discrete`` over the
whole space (a sparse table: its rows) when it is small enough to enumerate, else over a random sample of it plus
mutations of the front. Failed trials are left out of the fit; constraints enter as the summed
violation, modelled by its own GP and weighed in as a feasibility probability.

BoTorch compiles a fused C++ kernel for qLogNEHVI the first time it is used in an environment
(``-march=native`` through ninja: most of a minute on a small machine, and again for every new
virtualenv path). ``fused_kernel=False``, the default, keeps its pure-PyTorch path instead: the
acquisition here scores at most a few thousand discrete candidates, where the kernel's speed-up
is worth less than the compile.
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np

from .base import Algorithm, check_batch_size, register
from .grid import domain
from .local import Claims, History, neighbours


@register("botorch")
class BoTorchMOBO(Claims, Algorithm):
    name = "botorch"

    def __init__(self, batch_size: int = 10, initial_size: int | None = None, acquisition: str = "qlognehvi",
                 n_candidates: int = 1000, enumerate_limit: int = 5000, max_train: int = 200, threads: int = 1,
                 fused_kernel: bool = False, mc_samples: int = 32):
        check_batch_size(batch_size)
        if acquisition not in ("qlognehvi", "qnparego"):
            raise ValueError(f"acquisition {acquisition!r} is not one of qlognehvi, qnparego")
        self.batch_size = batch_size
        self.initial_size = initial_size
        self.acquisition = acquisition
        self.n_candidates = n_candidates
        self.enumerate_limit = enumerate_limit
        self.max_train = max_train
        self.threads = threads
        self.fused_kernel = fused_kernel
        self.mc_samples = int(mc_samples)

    def setup(self, space, n_objectives, n_constraints, seed, budget=None, initial=()):
        super().setup(space, n_objectives, n_constraints, seed, budget, initial)
        n0 = self.initial_size or max(self.batch_size, min(20, 2 * space.n_genes + 2))
        self.n_initial = int(n0 if budget is None else min(n0, max(budget // 4, 2)))
        self.history = History(space, n_constraints)
        self.asked: set[str] = set()
        self._all = None

    def __getstate__(self):
        d = dict(self.__dict__)
        d["_all"] = None
        return d

    def ask(self, n):
        out: list = []
        while self.initial and len(out) < n:
            self._claim(self.initial.pop(0), out)
        if len(self.asked) >= self.n_initial and self.history.ok().sum() >= 4 and len(out) < n:
            import torch

            before = torch.get_num_threads()
            torch.set_num_threads(self.threads)
            try:
                for c in self._bo(n - len(out)):
                    self._claim(c, out)
            finally:
                torch.set_num_threads(before)
        tries = 0
        while len(out) < n and tries < 100 * n:
            tries += 1
            self._claim(self.space.sample(self.rng), out)
        return out

    def _pool(self) -> list:
        space = self.space
        if all(math.isfinite(p.cardinality) for p in space.params.values()) and space.cardinality <= self.enumerate_limit:
            if self._all is None:
                doms = [domain(space[n]) for n in space.names]
                self._all = [c for c in (dict(zip(space.names, combo)) for combo in itertools.product(*doms))
                             if space.exists(c)]   # a sparse table: its rows, sifted once
            return [c for c in self._all if space.key(c) not in self.asked]
        pool = {}
        for _ in range(self.n_candidates):
            c = space.sample(self.rng)
            pool.setdefault(space.key(c), c)
        front = [self.history.G[i] for i in self.history.front_index()]
        for c in neighbours(space, front, self.asked, self.rng, radius=2, per_member=20):
            pool.setdefault(space.key(c), c)
        return [c for k, c in pool.items() if k not in self.asked]

    def _bo(self, n: int) -> list:
        import torch
        from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement
        from botorch.acquisition.multi_objective.parego import qLogNParEGO
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import ModelListGP, SingleTaskGP
        from botorch.models.transforms import Standardize
        from botorch.optim import optimize_acqf_discrete
        from gpytorch.mlls import SumMarginalLogLikelihood

        if not self.fused_kernel:
            from botorch.acquisition.multi_objective import logei

            if getattr(logei, "_C", None) is None:
                logei._load_attempted = True   # BoTorch's own switch: skip the JIT compile, use the torch path
        torch.manual_seed(int(self.rng.integers(2**31)))  # model fitting and QMC draws repeat by seed
        ok = self.history.ok()
        idx = np.flatnonzero(ok)[-self.max_train:]
        X = torch.tensor(np.array(self.history.X)[idx], dtype=torch.double)
        Y = -torch.tensor(np.array(self.history.Y)[idx], dtype=torch.double)  # BoTorch maximises
        cols = [Y[:, j:j + 1] for j in range(self.n_objectives)]
        if self.n_constraints:
            cols.append(torch.tensor(np.array(self.history.V)[idx], dtype=torch.double)[:, None])
        models = [SingleTaskGP(X, y, outcome_transform=Standardize(m=1)) for y in cols]
        model = ModelListGP(*models)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit_gpytorch_mll(SumMarginalLogLikelihood(model.likelihood, model))
        pool = self._pool()
        if not pool:
            return []
        C = torch.tensor(self.space.encode_many(pool), dtype=torch.double)
        constraints = [lambda Z: Z[..., -1]] if self.n_constraints else None
        from botorch.acquisition.multi_objective.objective import IdentityMCMultiOutputObjective
        from botorch.sampling.normal import SobolQMCNormalSampler

        objective = IdentityMCMultiOutputObjective(outcomes=list(range(self.n_objectives)))
        # the acquisition's cost is samples x candidates x batch: 32 quasi-random samples (BoTorch's default
        # is 128) rank a discrete pool about as well, at a quarter of the cost
        sampler = SobolQMCNormalSampler(sample_shape=torch.Size([self.mc_samples]), seed=int(self.rng.integers(2**31)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if self.acquisition == "qnparego":
                acq = qLogNParEGO(model, X_baseline=X, objective=objective, constraints=constraints, prune_baseline=True,
                                  sampler=sampler)
            else:
                ref = Y.min(dim=0).values - 0.1 * (Y.max(dim=0).values - Y.min(dim=0).values)
                if self.reference is not None:
                    ref = -torch.tensor(np.asarray(self.reference, float), dtype=torch.double)
                acq = qLogNoisyExpectedHypervolumeImprovement(model, ref_point=ref.tolist(), X_baseline=X,
                                                              objective=objective, constraints=constraints,
                                                              prune_baseline=True, cache_root=False, sampler=sampler)
            picks, _ = optimize_acqf_discrete(acq, q=min(n, len(pool)), choices=C, max_batch_size=512, unique=True)
        chosen = []
        rows = {tuple(np.round(r, 9)): i for i, r in enumerate(C.numpy())}
        for r in picks.numpy():
            i = rows.get(tuple(np.round(r, 9)))
            if i is not None:
                chosen.append(pool[i])
        return chosen

    def tell(self, configs, values, violations):
        self.history.add(configs, values, violations)
