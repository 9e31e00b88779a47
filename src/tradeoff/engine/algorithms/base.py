"""Algorithm: a multi-objective optimiser behind ask/tell, and the registry that names them."""

from __future__ import annotations

import abc
import numbers
from typing import Any

import numpy as np

from ...core.options import check_options, did_you_mean, named_parameters
from ...core.registry import Registry
from ...spaces.space import Config, Space


class Algorithm(abc.ABC):
    """Ask for configs, tell their minimised objective values (NaN rows: failed trials).

    ``violations`` holds one column per constraint, 0 where satisfied. Subclasses keep their
    whole state in picklable attributes so a study can checkpoint and resume them.
    """

    name = "algorithm"
    space: Space | None = None       # set by setup; None until then
    batch_size: int | None = None   # the natural batch (a generation), None when any n works
    reference: np.ndarray | None = None  # the user's reference point, minimised, when given (set before setup)

    def setup(self, space: Space, n_objectives: int, n_constraints: int, seed: int,
              budget: int | None = None, initial: list[Config] = ()) -> None:
        """Prepare for a search; ``initial`` configs (known good seeds) are asked first."""
        self.space = space
        self.budget = budget
        self.initial = list(initial)
        self.n_objectives = n_objectives
        self.n_constraints = n_constraints
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    @abc.abstractmethod
    def ask(self, n: int) -> list[Config]:
        raise NotImplementedError

    @abc.abstractmethod
    def tell(self, configs: list[Config], values: np.ndarray, violations: np.ndarray) -> None:
        raise NotImplementedError

    def check_space(self, space: Space) -> None:
        """Raise ValueError when this algorithm, as configured, cannot search ``space`` (an option
        that needs something the space lacks), so a recipe is refused before its run starts."""

    def observe(self, configs: list[Config], values: np.ndarray, violations: np.ndarray) -> None:
        """Results of configs this algorithm did not ask for (another searcher's), as ``tell`` takes
        them. An algorithm that cannot learn from them ignores them (the default)."""


# name -> adapter module; a library is imported only when one of its algorithms is used
ALGORITHMS = Registry("algorithm", __package__, {
    "random": "random", "predictive": "predictive", "local": "local", "botorch": "botorch",
    "auto": "auto",
    "nsga2": "pymoo", "nsga3": "pymoo", "agemoea": "pymoo", "smsemoa": "pymoo",
    "optuna-nsga2": "optuna", "motpe": "optuna", "optuna-gp": "optuna",
    "ng": "nevergrad",
})
register_algorithm = ALGORITHMS.register
register = register_algorithm  # the name the adapters use


def check_batch_size(value) -> None:
    """A batch is a whole number of evaluations, at least 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"batch_size is the evaluations per round, a whole number of at least 1; got {value!r}")


def algorithm_names() -> list[str]:
    return [n for n in ALGORITHMS.names() if n != "ng"] + ["ng:<Optimizer>"]


def make_algorithm(name: str | Algorithm, **options: Any) -> Algorithm:
    """Build an algorithm from its registry name (``ng:TwoPointsDE`` for any nevergrad optimiser)."""
    if isinstance(name, Algorithm):
        return name
    if name.startswith("ng:") and len(name) > 3:
        return ALGORITHMS.get("ng")(optimizer=name[3:], **options)
    if name == "ng":
        raise ValueError("name a nevergrad optimiser: ng:<Optimizer>, e.g. ng:NGOpt")
    try:
        cls = ALGORITHMS.get(name)
    except ValueError as e:
        if str(e).startswith("algorithm "):
            names = algorithm_names()
            raise ValueError(f"algorithm {name!r} is not one of {', '.join(names)}{did_you_mean(name, names)}") from None
        raise
    _check_options(name, cls, options)
    return cls(**options)


def _check_options(name: str, cls: type, options: dict[str, Any]) -> None:
    import inspect

    params = inspect.signature(cls.__init__).parameters.values()
    if not any(p.kind is p.VAR_KEYWORD for p in params):  # an adapter that passes **options on checks them itself
        check_options(name, options, named_parameters(cls))


def fill_failed(values: np.ndarray, worst: np.ndarray | None = None, margin: float = 1.0) -> np.ndarray:
    """Replace NaN rows (failed trials) by a value worse than anything seen, for libraries that need numbers."""
    values = np.array(values, dtype=float)
    bad = ~np.all(np.isfinite(values), axis=1)
    if bad.any():
        good = values[~bad]
        if worst is None:
            worst = good.max(axis=0) if len(good) else np.ones(values.shape[1])
        span = np.abs(worst) + 1.0
        values[bad] = worst + margin * span
    return values
