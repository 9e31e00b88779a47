"""Optuna adapters (optuna-nsga2, motpe, optuna-gp) driven through Optuna's own ask/tell.

Each search keeps an in-memory Optuna study. Params map to Optuna distributions: unordered
choices are categorical; ordered choices (bit-widths included) are an integer *index* so TPE's
and GP's numeric kernels and NSGA-II's crossover see their order (a categorical would throw it
away); a mask is one {0, 1} categorical per bit, named ``name[i]`` (slow for thousands of bits,
but every sampler handles it). Failed trials are told as FAIL, which Optuna's samplers ignore;
constraint violations are set on the trial (``Trial.set_constraint``, the form Optuna 5 reads;
``constraints_func`` is deprecated there) so samplers use constrained domination.
"""

from __future__ import annotations

import logging
import warnings
from collections import deque
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from ...spaces.params import Choice, Float, Int, Mask
from ...spaces.space import Config
from .base import Algorithm, check_batch_size, check_options, named_parameters, register
from .pymoo import default_pop_size

BIG_VIOLATION = 1e6  # stands in for an infinite violation (a missing metric): GPs need finite numbers


def _violation(x: float) -> float:
    return float(x) if np.isfinite(x) else BIG_VIOLATION


def _bits(name: str, p: Mask) -> list[str]:
    return [f"{name}[{i}]" for i in range(p.size)]


def distributions(space) -> dict[str, BaseDistribution]:
    """One Optuna distribution per param (per bit for masks)."""
    out: dict[str, BaseDistribution] = {}
    for name, p in space.params.items():
        if isinstance(p, Choice):
            out[name] = IntDistribution(0, len(p.values) - 1) if p.ordered else CategoricalDistribution(p.values)
        elif isinstance(p, Int):
            out[name] = IntDistribution(p.low, p.high, log=p.log, step=p.step)
        elif isinstance(p, Float):
            out[name] = FloatDistribution(p.low, p.high, log=p.log)
        elif isinstance(p, Mask):
            out.update({b: CategoricalDistribution((0, 1)) for b in _bits(name, p)})
        else:
            raise TypeError(f"{name}: the optuna adapters do not handle {type(p).__name__} params")
    return out


def _to_config(space, params: dict[str, Any]) -> Config:
    out: Config = {}
    for name, p in space.params.items():
        if isinstance(p, Choice):
            out[name] = p.values[params[name]] if p.ordered else params[name]
        elif isinstance(p, Mask):
            out[name] = np.array([params[b] for b in _bits(name, p)], dtype=bool).reshape(p.shape)
        else:
            out[name] = params[name]
    return out


def _to_params(space, config: Config) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, p in space.params.items():
        v = config[name]
        if isinstance(p, Choice):
            out[name] = p.index(v) if p.ordered else p.validate(v)
        elif isinstance(p, Mask):
            out.update({b: int(x) for b, x in zip(_bits(name, p), p.validate(v).ravel())})
        else:
            out[name] = p.validate(v)
    return out


class OptunaAlgorithm(Algorithm):
    """ask/tell over an in-memory Optuna study; a batch is n asks (the samplers' constant liar)."""

    default_batch = 10

    sampler_cls = ""   # the Optuna sampler the options go to (checked here, not at the first ask)
    _own_options: tuple[str, ...] = ()   # a subclass's own keywords, beside the sampler's

    def __init__(self, batch_size: int | None = None, **options: Any):
        if batch_size is not None:
            check_batch_size(batch_size)
        self.batch_size = batch_size
        self.options = options
        if options and self.sampler_cls:
            allowed = named_parameters(getattr(optuna.samplers, self.sampler_cls), skip=("seed", "constraints_func"))
            check_options(self.name, options, ["batch_size", *self._own_options, *allowed])

    def _sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        raise NotImplementedError

    def setup(self, space, n_objectives, n_constraints, seed, budget=None, initial=()):
        super().setup(space, n_objectives, n_constraints, seed, budget, initial)
        optuna.logging.set_verbosity(logging.WARNING)  # one INFO line per trial otherwise
        self.batch_size = self.batch_size or self.default_batch
        self._dists = distributions(space)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = self._sampler(seed)
        self.study = optuna.create_study(directions=["minimize"] * n_objectives, sampler=sampler)
        for c in self.initial:
            self.study.enqueue_trial(_to_params(space, c))
        self._asked: deque[optuna.trial.Trial] = deque()

    def ask(self, n):
        out = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            for _ in range(n):
                trial = self.study.ask(self._dists)
                self._asked.append(trial)
                out.append(_to_config(self.space, trial.params))
        return out

    def tell(self, configs, values, violations):
        values = np.asarray(values, dtype=float).reshape(len(configs), -1)
        violations = np.asarray(violations, dtype=float).reshape(len(configs), -1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            for f, v in zip(values, violations):
                trial = self._asked.popleft()
                if not np.all(np.isfinite(f)):
                    self.study.tell(trial, state=TrialState.FAIL)
                    continue
                for j, x in enumerate(v):
                    trial.set_constraint(f"c{j}", _violation(x))
                self.study.tell(trial, [float(x) for x in f])

    def observe(self, configs, values, violations):
        """Others' results join the study as completed trials (failed ones are left out, as Optuna's
        samplers ignore them), so the sampler models them from its next ask on."""
        values = np.asarray(values, dtype=float).reshape(len(configs), -1)
        violations = np.asarray(violations, dtype=float).reshape(len(configs), -1)
        for c, f, v in zip(configs, values, violations):
            if not np.all(np.isfinite(f)):
                continue
            attrs = {f"constraints:c{j}": _violation(x) for j, x in enumerate(v)}  # what set_constraint stores
            self.study.add_trial(optuna.trial.create_trial(
                params=_to_params(self.space, c), distributions=self._dists, values=[float(x) for x in f],
                system_attrs=attrs))


@register("optuna-nsga2")
class OptunaNSGA2(OptunaAlgorithm):
    name, sampler_cls = "optuna-nsga2", "NSGAIISampler"

    def __init__(self, population_size: int | None = None, batch_size: int | None = None, **options):
        super().__init__(batch_size, **options)
        self.population_size = population_size

    def setup(self, space, n_objectives, n_constraints, seed, budget=None, initial=()):
        self.population_size = self.population_size or default_pop_size(budget)
        self.batch_size = self.batch_size or self.population_size  # a generation at a time
        super().setup(space, n_objectives, n_constraints, seed, budget, initial)

    def _sampler(self, seed):
        return optuna.samplers.NSGAIISampler(population_size=self.population_size, seed=seed, **self.options)


@register("motpe")
class MOTPE(OptunaAlgorithm):
    name, sampler_cls = "motpe", "TPESampler"

    def _sampler(self, seed):
        return optuna.samplers.TPESampler(**{"multivariate": True, **self.options, "seed": seed})


@register("optuna-gp")
class OptunaGP(OptunaAlgorithm):
    """GP-BO with (q-)logEHVI; ``threads`` caps torch's threads while it asks (None: leave them).

    Its matrices are small, so one thread is fastest, and many threads on a busy machine
    oversubscribe it badly (Optuna's own docs advise OMP_NUM_THREADS=1).
    """

    name, sampler_cls, _own_options = "optuna-gp", "GPSampler", ("threads",)

    def __init__(self, batch_size: int | None = None, threads: int | None = 1, **options):
        super().__init__(batch_size, **options)
        self.threads = threads

    def _sampler(self, seed):
        return optuna.samplers.GPSampler(seed=seed, **self.options)

    def ask(self, n):
        if self.threads is None:
            return super().ask(n)
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            return super().ask(n)
        finally:
            torch.set_num_threads(before)
