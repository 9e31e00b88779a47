"""Predictors behind one small contract: ``fit(X, y)``, ``predict(X) -> (mean, std)``.

Each wraps scikit-learn; the spread comes from the model itself (trees of a forest, a GP's
posterior) or from an ensemble of refits on bootstrap samples (ridge, boosting, MLP).
"""

from __future__ import annotations

import abc
import dataclasses
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class Predictor(abc.ABC):
    name = "predictor"

    @abc.abstractmethod
    def fit(self, X: np.ndarray, y: np.ndarray) -> Predictor:
        raise NotImplementedError

    @abc.abstractmethod
    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


@dataclass
class Ensemble(Predictor):
    """Bootstrap ensemble of any scikit-learn regressor: mean and spread of the members."""

    make: Callable[[int], Any]
    n: int = 5
    seed: int = 0
    name: str = "ensemble"
    models: list = field(default_factory=list)

    def fit(self, X, y):
        rng = np.random.default_rng(self.seed)
        X, y = np.asarray(X, float), np.asarray(y, float)
        self.models = []
        for i in range(self.n):
            idx = rng.integers(0, len(X), len(X)) if self.n > 1 else np.arange(len(X))
            self.models.append(self.make(int(rng.integers(2**31))).fit(X[idx], y[idx]))
        return self

    def predict(self, X):
        P = np.stack([m.predict(np.asarray(X, float)) for m in self.models])
        return P.mean(axis=0), P.std(axis=0)


@dataclass
class Forest(Predictor):
    """Random forest; the spread of its trees is the uncertainty (SMAC-style)."""

    n_estimators: int = 100
    seed: int = 0
    name: str = "rf"
    extra: bool = False

    def fit(self, X, y):
        from sklearn.ensemble import ExtraTreesRegressor, RandomForestRegressor

        cls = ExtraTreesRegressor if self.extra else RandomForestRegressor
        self.model = cls(n_estimators=self.n_estimators, min_samples_leaf=1, max_features=0.6, random_state=self.seed,
                         n_jobs=1).fit(np.asarray(X, float), np.asarray(y, float))
        return self

    def predict(self, X):
        # each tree's own predict re-validates X (milliseconds a tree); the fitted tree arrays do not
        X32 = np.ascontiguousarray(X, dtype=np.float32)
        P = np.stack([t.tree_.predict(X32).reshape(len(X32), -1)[:, 0] for t in self.model.estimators_])
        return P.mean(axis=0), P.std(axis=0)


@dataclass
class GP(Predictor):
    """Gaussian process (Matern 5/2 + noise) on standardised targets."""

    seed: int = 0
    name: str = "gp"
    ard: bool = False   # one length scale per feature: better fits, much slower in many dimensions
    restarts: int = 1   # extra starts of the hyperparameter optimiser

    def fit(self, X, y):
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

        X, y = np.asarray(X, float), np.asarray(y, float)
        self.mu, self.sd = y.mean(), y.std() or 1.0
        scale = np.ones(X.shape[1]) if self.ard else 1.0
        kernel = ConstantKernel(1.0, (1e-2, 1e2)) * Matern(scale, (1e-2, 1e3), nu=2.5) + \
            WhiteKernel(1e-2, (1e-6, 1e0))
        with warnings.catch_warnings():  # length scales at their bounds are expected on tiny data
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.model = GaussianProcessRegressor(kernel, normalize_y=False, n_restarts_optimizer=self.restarts,
                                                  random_state=self.seed).fit(X, (y - self.mu) / self.sd)
        return self

    def predict(self, X):
        m, s = self.model.predict(np.asarray(X, float), return_std=True)
        return m * self.sd + self.mu, s * self.sd


@dataclass
class Columns(Predictor):
    """Another predictor on the last ``width`` feature columns only: the space's own features
    (``Space.with_features``), where a cost that is a sum over a cell's parts is fitted from fewer
    samples than with every column beside them."""

    inner: Predictor
    width: int

    @property
    def name(self) -> str:
        return f"{self.inner.name}@own"

    def fit(self, X, y):
        self.inner.fit(np.asarray(X, float)[:, -self.width:], y)
        return self

    def predict(self, X):
        return self.inner.predict(np.asarray(X, float)[:, -self.width:])


@dataclass
class Warped(Predictor):
    """Another predictor fitted on warped targets (Yeo-Johnson, as HEBO does), its mean and spread
    mapped back. Where most configs crowd near the best value and a few are far worse (accuracy on
    a NAS table), a fit on the raw values spends itself on the tail; the warp spreads the crowded
    end, so the best configs are told apart."""

    inner: Predictor
    grid_size: int = 512

    @property
    def name(self) -> str:
        return f"{self.inner.name}+warp"

    def fit(self, X, y):
        from sklearn.preprocessing import PowerTransformer

        y = np.asarray(y, float)
        span = float(np.ptp(y)) or 1.0
        self.warp = PowerTransformer(method="yeo-johnson").fit(y.reshape(-1, 1))
        # the inverse, read off the forward map: the closed form has no value past some warped values
        self.grid = np.linspace(y.min() - span, y.max() + span, self.grid_size)
        self.warped_grid = self._forward(self.grid)
        self.inner.fit(X, self._forward(y))
        return self

    def _forward(self, y):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return self.warp.transform(np.asarray(y, float).reshape(-1, 1))[:, 0]

    def _inverse(self, w):
        return np.interp(w, self.warped_grid, self.grid)

    def predict(self, X):
        m, s = self.inner.predict(X)
        return self._inverse(m), (self._inverse(m + s) - self._inverse(m - s)) / 2


@dataclass
class Survival:
    """The chance that a candidate evaluates at all (no exception, NaN or timeout): a random forest
    classifier on every trial so far, the failed ones included. Each leaf's share is shrunk toward
    the overall success rate, so one failure does not condemn its whole neighbourhood."""

    seed: int = 0
    n_estimators: int = 100
    prior_weight: float = 2.0   # pseudo-trials at the overall rate added to every leaf

    def fit(self, X: np.ndarray, failed: np.ndarray) -> Survival:
        from sklearn.ensemble import RandomForestClassifier

        X, failed = np.asarray(X, float), np.asarray(failed, bool)
        self.rate = float(1.0 - failed.mean())
        self.model = None
        if 0.0 < self.rate < 1.0:
            self.model = RandomForestClassifier(n_estimators=self.n_estimators, min_samples_leaf=1, max_features=0.6,
                                                random_state=self.seed, n_jobs=1).fit(X, ~failed)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """P(success) for each row of ``X``."""
        if self.model is None:
            return np.full(len(X), self.rate)
        X32 = np.ascontiguousarray(X, dtype=np.float32)
        ok_col = list(self.model.classes_).index(True)
        shares = []
        for t in self.model.estimators_:  # per tree: the leaf's counts, shrunk toward the overall rate
            leaf = t.tree_.apply(X32)
            counts, n = t.tree_.value[leaf][:, 0, :], t.tree_.n_node_samples[leaf]
            frac = counts[:, ok_col] / np.maximum(counts.sum(axis=1), 1e-12)
            shares.append((frac * n + self.prior_weight * self.rate) / (n + self.prior_weight))
        return np.mean(shares, axis=0)


def _ridge(seed):
    from sklearn.linear_model import Ridge

    return Ridge(alpha=1.0)


def _gbm(seed):
    # the exact (not histogram) learner: on hundreds of points it fits in a fraction of a second on one
    # thread, where the histogram one spends seconds in OpenMP, many more when another process shares the cores
    from sklearn.ensemble import GradientBoostingRegressor

    return GradientBoostingRegressor(n_estimators=200, learning_rate=0.05, min_samples_leaf=3, random_state=seed)


def _mlp(seed):
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.neural_network import MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    mlp = MLPRegressor(hidden_layer_sizes=(128, 128), max_iter=2000, learning_rate_init=3e-3, alpha=1e-3, random_state=seed)
    return TransformedTargetRegressor(make_pipeline(StandardScaler(), mlp), transformer=StandardScaler())


_REGISTRY: dict[str, Callable[[int], Predictor]] = {
    "ridge": lambda seed: Ensemble(_ridge, n=5, seed=seed, name="ridge"),
    "gbm": lambda seed: Ensemble(_gbm, n=5, seed=seed, name="gbm"),
    "mlp": lambda seed: Ensemble(_mlp, n=5, seed=seed, name="mlp"),
    "rf": lambda seed: Forest(seed=seed),
    "extra-trees": lambda seed: Forest(seed=seed, extra=True, name="extra-trees"),
    "gp": lambda seed: GP(seed=seed),
    "gp-ard": lambda seed: GP(seed=seed, ard=True, name="gp-ard"),
}


def lighter(p: Predictor) -> Predictor:
    """A cheaper copy for cross-validation, where only the ranking of predictor kinds matters: fewer
    trees, ensemble members and optimiser restarts (a third of the cost, about the same ranking)."""
    if isinstance(p, Columns):
        return Columns(lighter(p.inner), p.width)
    if isinstance(p, Warped):
        return dataclasses.replace(p, inner=lighter(p.inner))
    if isinstance(p, Forest):
        return dataclasses.replace(p, n_estimators=min(p.n_estimators, 30))
    if isinstance(p, Ensemble):
        return dataclasses.replace(p, n=min(p.n, 3), models=[])
    if isinstance(p, GP):
        return dataclasses.replace(p, restarts=0)
    return p


def predictor_names() -> list[str]:
    return sorted(_REGISTRY)


def check_predictor(name: str) -> tuple[str, bool, bool]:
    """The registered kind a name asks for, whether it sees only the space's own features
    (``<name>@own``) and whether it is fitted on warped targets (``<name>+warp``); a name that is
    none of these says what is allowed."""
    head, plus, suffix = name.partition("+")
    if plus and suffix != "warp":
        raise ValueError(f"predictor {name!r}: the one suffix after '+' is 'warp' (targets warped by Yeo-Johnson)")
    base, at, view = head.partition("@")
    if base not in _REGISTRY:
        raise ValueError(f"predictor {name!r} is not one of {', '.join(predictor_names())} "
                         "(each also as <name>@own, on the space's own features, and <name>+warp, on warped targets)")
    if at and view != "own":
        raise ValueError(f"predictor {name!r}: the one view after '@' is 'own' (the space's own features)")
    return base, bool(at), bool(plus)


def make_predictor(name: str | Predictor, seed: int = 0, own_width: int | None = None) -> Predictor:
    """A predictor by name; ``<name>@own`` sees only the space's own features, the last ``own_width``
    columns; ``<name>+warp`` is fitted on Yeo-Johnson-warped targets."""
    if isinstance(name, Predictor):
        return name
    base, own, warp = check_predictor(name)
    p = _REGISTRY[base](seed)
    if own:
        if not own_width:
            raise ValueError(f"predictor {name!r} sees the space's own features, and this space has none "
                             "(Space.with_features gives them)")
        p = Columns(p, own_width)
    return Warped(p) if warp else p
