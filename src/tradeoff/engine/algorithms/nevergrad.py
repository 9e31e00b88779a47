"""nevergrad adapter (``ng:<Optimizer>``, e.g. ng:TwoPointsDE, ng:NGOpt) over nevergrad's ask/tell.

Params map to an ``ng.p.Dict``: ordered choices to TransitionChoice (neighbours are near),
unordered to Choice, ints to integer-cast Scalar/Log (a stepped int as its step index), reals to
Scalar/Log, a mask to one Choice([0, 1]) with ``repetitions`` (what the discrete optimisers
mutate bit by bit). Several objectives are told as a vector: nevergrad then minimises minus
the hypervolume against a reference we set from the first feasible values (its own auto-bound
would take failed trials' filler values as the reference). Failed and infeasible trials are
told as points beyond the reference, graded by violation, so they never enter nevergrad's
Pareto archive, with a positive ``constraint_violation`` so they never become its best.
"""

from __future__ import annotations

import warnings
from collections import deque
from typing import Any

import nevergrad as ng
import numpy as np

from ...spaces.params import Choice, Float, Int, Mask
from ...spaces.space import Config
from ..front import derive_reference
from .base import Algorithm, check_batch_size, check_options, fill_failed, named_parameters, register

MAX_VIOLATION = 1e3  # an infinite violation (a missing metric) is graded as this much


def parametrization(space, seed: int) -> ng.p.Dict:
    """The space as a seeded nevergrad Dict of params."""
    items: dict[str, Any] = {}
    for name, p in space.params.items():
        if isinstance(p, Choice):
            items[name] = ng.p.TransitionChoice(p.values) if p.ordered else ng.p.Choice(p.values)
        elif isinstance(p, Int):
            n = (p.high - p.low) // p.step
            if n == 0:
                items[name] = p.low  # a constant
            elif p.log:
                items[name] = ng.p.Log(lower=p.low, upper=p.high).set_integer_casting()
            else:
                items[name] = ng.p.Scalar(lower=0, upper=n).set_integer_casting()  # the step index
        elif isinstance(p, Float):
            items[name] = (ng.p.Log if p.log else ng.p.Scalar)(lower=p.low, upper=p.high)
        elif isinstance(p, Mask):
            items[name] = ng.p.Choice([0, 1], repetitions=p.size)
        else:
            raise TypeError(f"{name}: the nevergrad adapter does not handle {type(p).__name__} params")
    param = ng.p.Dict(**items)
    param.random_state = np.random.RandomState(seed % 2**32)
    return param


def _to_config(space, value: dict[str, Any]) -> Config:
    out: Config = {}
    for name, p in space.params.items():
        v = value[name]
        if isinstance(p, Int):
            out[name] = p._snap(float(v)) if p.log else p._snap(p.low + float(v) * p.step)
        elif isinstance(p, Float):
            out[name] = float(min(max(float(v), p.low), p.high))
        elif isinstance(p, Mask):
            out[name] = np.array(v, dtype=bool).reshape(p.shape)
        else:
            out[name] = v
    return out


def _to_value(space, config: Config) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, p in space.params.items():
        v = p.validate(config[name])
        if isinstance(p, Int) and not p.log and p.high > p.low:
            v = (v - p.low) // p.step
        elif isinstance(p, Mask):
            v = tuple(int(b) for b in v.ravel())
        out[name] = v
    return out


@register("ng")
class Nevergrad(Algorithm):
    """Any optimiser from nevergrad's registry, ``num_workers`` candidates per batch."""

    name = "ng"

    def __init__(self, optimizer: str = "NGOpt", batch_size: int = 10, **options: Any):
        check_batch_size(batch_size)
        if optimizer not in ng.optimizers.registry:
            raise ValueError(f"nevergrad has no optimizer {optimizer!r} (see ng.optimizers.registry)")
        self.optimizer = optimizer
        self.name = f"ng:{optimizer}"
        if options:
            allowed = named_parameters(ng.optimizers.registry[optimizer], skip=("parametrization", "budget", "num_workers"))
            check_options(self.name, options, ["batch_size", *allowed])
        self.batch_size = batch_size
        self.options = options

    def setup(self, space, n_objectives, n_constraints, seed, budget=None, initial=()):
        super().setup(space, n_objectives, n_constraints, seed, budget, initial)
        param = parametrization(space, seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.opt = ng.optimizers.registry[self.optimizer](param, budget=budget or 1000,
                                                               num_workers=self.batch_size, **self.options)
        self._asked: deque = deque()
        self._reference: np.ndarray | None = None   # nevergrad's upper bounds (multi-objective)
        self._worst: np.ndarray | None = None       # worst (finite) values told so far
        self._waiting: list = []                    # failed before any reference was known

    def ask(self, n):
        out = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(n):
                if self.initial:  # asked as given (a Log param's exp(log(v)) may differ from v)
                    config = self.initial.pop(0)
                    cand = self.opt.parametrization.spawn_child(new_value=_to_value(self.space, config))
                else:
                    cand = self.opt.ask()
                    config = _to_config(self.space, cand.value)
                self._asked.append(cand)
                out.append(config)
        return out

    def tell(self, configs, values, violations):
        values = np.asarray(values, dtype=float).reshape(len(configs), -1)
        viol = np.asarray(violations, dtype=float).reshape(len(configs), -1)
        viol = np.where(np.isfinite(viol), viol, MAX_VIOLATION).sum(axis=1)
        ok = np.all(np.isfinite(values), axis=1)
        cands = [self._asked.popleft() for _ in configs]
        if ok.any():
            w = values[ok].max(axis=0)
            self._worst = w if self._worst is None else np.maximum(self._worst, w)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if self._reference is None and self.n_objectives > 1:
                if not ok.any():  # nothing to scale a reference by yet: tell these later
                    self._waiting.extend(zip(cands, values, viol))
                    return
                feasible = ok & (viol <= 0)
                self._reference = derive_reference(values[feasible] if feasible.any() else values[ok])
                self.opt.tell(ng.p.MultiobjectiveReference(), self._reference)
            todo = self._waiting + list(zip(cands, values, viol))
            self._waiting = []
            for cand, f, v in todo:
                self._tell_one(cand, f, v)

    def _tell_one(self, cand, f: np.ndarray, v: float) -> None:
        """Tell one result; failed and infeasible ones lie beyond the reference (failed furthest)."""
        base = self._reference if self._reference is not None else self._worst
        if base is None:  # one objective and every trial so far failed
            base = np.zeros(self.n_objectives)
        if not np.all(np.isfinite(f)):
            loss, v = fill_failed(f[None, :], base, margin=2.0)[0], max(v, 1.0)
        elif v > 0:
            loss = np.maximum(f, base) + (np.abs(base) + 1.0) * v / (1.0 + v)
        else:
            loss = f
        try:
            self.opt.tell(cand, list(loss) if self.n_objectives > 1 else float(loss[0]),
                          constraint_violation=[v] if v > 0 else None)
        except ng.errors.TellNotAskedNotSupportedError:
            pass  # an initial config (never asked of nevergrad) this optimizer cannot learn from
