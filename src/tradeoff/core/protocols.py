"""The extension points as Protocols: what a lower layer asks of an object a higher one hands it.

The base classes (``spaces.params.Param``, ``engine.algorithms.base.Algorithm``,
``engine.executors.Executor``, ``hardware.base.Target``, ``evaluators.Evaluator``,
``predictors.models.Predictor``, ``predictors.latency.LatencyPredictor``) are ABCs whose abstract
methods state the same contracts for code that subclasses; these Protocols are for code that only
needs the shape (any callable can be an evaluator, any object with these methods a tracker).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

Config = dict[str, Any]


@runtime_checkable
class Evaluator(Protocol):
    """``evaluator(artifact, context) -> {metric: value}``; raises ``TrialError`` for a bad candidate.

    ``directions`` names the metrics it reports that can be objectives, each with its natural
    direction ("minimize" or "maximize"). ``context`` carries the config and trial number.
    """

    name: str
    directions: Mapping[str, str]

    def __call__(self, artifact: Any, context: Mapping[str, Any] | None = None) -> dict[str, float]: ...


@runtime_checkable
class BuildableSpace(Protocol):
    """A space whose configs are models: ``build(config)`` returns the deployable ``Artifact``.

    Latency predictors calibrate on one of these without knowing which workload it came from.
    """

    def sample(self, rng: np.random.Generator) -> Config: ...

    def key(self, config: Config) -> str: ...

    def build(self, config: Config) -> Any: ...


@runtime_checkable
class Target(Protocol):
    """A place to run and time a model: ``measure(artifact) -> LatencyStats`` (median, spread, repeats, device).

    ``describe()`` holds everything that changes a figure (device, runtime settings, timing
    policy); it is part of every measurement's cache key.
    """

    kind: str
    name: str

    def measure(self, artifact: Any) -> Any: ...

    def describe(self) -> dict[str, Any]: ...


@runtime_checkable
class Predictor(Protocol):
    """``fit(X, y)`` then ``predict(X) -> (mean, std)``: a cheap stand-in for an expensive objective."""

    def fit(self, X: np.ndarray, y: np.ndarray) -> Predictor: ...

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


@runtime_checkable
class LatencyPredictor(Protocol):
    """``fit`` on (artifact, measured ms) pairs, ``predict(artifact) -> ms``; ``quality`` holds its held-out scores."""

    name: str
    quality: dict[str, float] | None

    def fit(self, measured: Any) -> LatencyPredictor: ...

    def predict(self, artifact: Any) -> float: ...


@runtime_checkable
class Algorithm(Protocol):
    """A multi-objective optimiser behind ask/tell; values are minimised, NaN rows are failed trials."""

    name: str

    def setup(self, space: Any, n_objectives: int, n_constraints: int, seed: int,
              budget: int | None = None, initial: list[Config] = ()) -> None: ...

    def ask(self, n: int) -> list[Config]: ...

    def tell(self, configs: list[Config], values: np.ndarray, violations: np.ndarray) -> None: ...


@runtime_checkable
class Executor(Protocol):
    """Runs ``fn(config)`` for each (key, config), yielding (key, config, metrics, failure reason, seconds)."""

    name: str

    def map(self, fn: Any, items: list[tuple[str, Config]], timeout: float | None) -> Iterator[tuple]: ...


@runtime_checkable
class Tracker(Protocol):
    """Where a study logs: one parent run per search, one child per trial, the front and the checkpoint.

    ``start`` returns the run id that names the study's run directory; ``reopen`` continues a
    run on resume; ``finish`` ends it with FINISHED, KILLED or FAILED. Optional, used when
    present: ``uri`` (printed in the resume command), ``experiment`` and
    ``shared_reference(objectives)`` (a reference point shared by the experiment's runs), and
    ``note_end(reason)`` (why a run ended).
    """

    def start(self, info: Mapping[str, Any]) -> str: ...

    def reopen(self, run_id: str) -> None: ...

    def log_trial(self, trial: Any) -> None: ...

    def log_checkpoint(self, run_dir: Path) -> None: ...

    def log_front(self, front: Any, run_dir: Path) -> None: ...

    def finish(self, status: str) -> None: ...
