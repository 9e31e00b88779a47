"""``auto``: the predictor loop when evaluations are expensive, a population algorithm when cheap.

The first batch is random (useful to either choice) and timed: the wall-clock seconds from
handing it out to hearing its results, per trial, unless the workload declared its cost
(``seconds_per_trial`` in its info). At or above ``threshold_s`` per trial the predictor loop
(``predictive``) pays for its own seconds per batch; below it a population algorithm
(``nsga2``) makes more of the same wall-clock. The choice and its reason are kept in
``decision`` (the study logs it and records it in the run's info); the first batch is handed
to the chosen algorithm as its initial configs, so nothing is evaluated twice. Below
``gp_inner_s`` per trial the predictor loop's inner arm is multivariate TPE rather than its
default, Optuna's GP, whose own seconds per batch would then weigh next to the evaluations.
After the first batch, the run goes on in the chosen algorithm's own batches (the predictor
loop's 5, a generation of NSGA-II) unless ``batch_size`` was given.
"""

from __future__ import annotations

import time

from .base import ALGORITHMS, Algorithm, check_batch_size, check_options, make_algorithm, named_parameters, register


@register("auto")
class Auto(Algorithm):
    name = "auto"

    def __init__(self, batch_size: int | None = None, threshold_s: float = 1.0, expensive: str = "predictive",
                 cheap: str = "nsga2", declared_seconds: float | None = None, gp_inner_s: float = 10.0,
                 **options):
        if batch_size is not None:
            check_batch_size(batch_size)
        self.requested_batch = batch_size  # None: the chosen algorithm's own batch after the first
        self.batch_size = batch_size or 10  # the first, timed batch
        self.threshold_s = threshold_s
        self.expensive, self.cheap = expensive, cheap
        self.declared_seconds = declared_seconds
        self.gp_inner_s = gp_inner_s
        self.options = options      # passed to the expensive one if it is chosen
        self.decision: dict | None = None
        if options:  # a typo is reported now, not when (and only if) the expensive algorithm is picked
            if expensive in ALGORITHMS.names():   # the list names auto's own options and the expensive one's
                check_options(f"auto (picking {expensive} or {cheap})", options,
                              named_parameters(Auto, skip=("options",)) + named_parameters(ALGORITHMS.get(expensive)))
            make_algorithm(expensive, **self._batch_option(), **options)

    def setup(self, space, n_objectives, n_constraints, seed, budget=None, initial=()):
        super().setup(space, n_objectives, n_constraints, seed, budget, initial)
        self.chosen: Algorithm | None = None
        self.first: list = []
        self._asked_at: float | None = None
        if self.declared_seconds is not None:  # chosen now, so even the first batch is the chosen one's size
            self._choose(float(self.declared_seconds), "declared by the workload")

    def ask(self, n):
        if self.chosen is not None:
            return self.chosen.ask(n)
        out = self.initial[:n]
        self.initial = self.initial[n:]
        seen = {self.space.key(c) for c in out}
        for _ in range(50 * n):  # distinct samples; a space smaller than n gives what it has
            if len(out) >= n:
                break
            c = self.space.sample(self.rng)
            if self.space.key(c) not in seen:
                seen.add(self.space.key(c))
                out.append(c)
        self.first += out
        self._asked_at = time.monotonic()
        return out

    def tell(self, configs, values, violations):
        if self.chosen is not None:
            self.chosen.tell(configs, values, violations)
            return
        per_trial = (time.monotonic() - (self._asked_at or time.monotonic())) / max(len(configs), 1)
        self._choose(per_trial, f"measured on the first {len(configs)} trials")
        if hasattr(self.chosen, "history"):  # learns from any told config; others re-ask the first batch
            self.chosen.tell(configs, values, violations)

    def _choose(self, seconds: float, how: str) -> None:
        expensive = seconds >= self.threshold_s
        pick = self.expensive if expensive else self.cheap
        why = (f"{seconds:.3g} s per trial ({how}) is {'at or above' if expensive else 'below'} "
               f"{self.threshold_s:g} s: {'a predictor loop saves evaluations' if expensive else 'a population algorithm makes more of the time'}")
        # options meant for one kind (e.g. the predictor loop's ``predictors``) are not passed to the other
        opts = {**self._batch_option(), **self.options} if pick == self.expensive else {}
        gp_inner_s = getattr(self, "gp_inner_s", 10.0)   # a checkpoint from before: the default
        if pick == "predictive" and "inner" not in opts and seconds < gp_inner_s:
            opts["inner"] = "motpe"
            why += f"; its inner arm is TPE below {gp_inner_s:g} s per trial (the GP's own seconds would weigh)"
        self.chosen = make_algorithm(pick, **opts)
        self.chosen.reference = self.reference
        # the chosen one asks the first batch again as its initial configs: the study has them cached
        initial = [] if hasattr(self.chosen, "history") else list(self.first)
        # its own stream: on auto's seed, its random draws would repeat the first batch (NSGA-II's first
        # generation then lost those as duplicates: 15 of 25)
        self.chosen.setup(self.space, self.n_objectives, self.n_constraints, self.seed + 1, budget=self.budget,
                          initial=initial + list(self.initial))
        self.decision = {"algorithm": pick, "seconds_per_trial": round(float(seconds), 6), "why": why}
        self.batch_size = getattr(self.chosen, "batch_size", None) or self.batch_size

    def _batch_option(self) -> dict:
        batch = getattr(self, "requested_batch", self.batch_size)  # a checkpoint from before: its batch
        return {"batch_size": batch} if batch else {}

    @property
    def note(self) -> str | None:
        return None if self.decision is None else f"algorithm auto picked {self.decision['algorithm']}: {self.decision['why']}"
