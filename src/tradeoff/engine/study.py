"""Study: the search loop — ask, evaluate, tell, log, checkpoint — and its resume.

A run directory holds everything needed to continue after Ctrl-C or ``kill -9``:
``study.json`` (what is searched), ``trials.jsonl`` (every finished trial, appended as it
finishes) and ``state.pkl`` (the algorithm after its last tell). On resume the algorithm is
restored and asks again; configs whose key is already in ``trials.jsonl`` are not evaluated.
"""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import cloudpickle
import numpy as np

from ..core.paths import run_dir_for, tradeoff_home  # noqa: F401  (re-exported)
from ..spaces.space import Config, Space
from .algorithms.base import Algorithm, make_algorithm
from .executors import Executor, make_executor
from .front import Front
from .objectives import Constraint, Objective, minimised, violations
from .progress import Progress
from ..core.trial import COMPLETE, FAILED, Trial, TrialError  # noqa: F401  (TrialError re-exported)

MAX_IDLE_BATCHES = 25  # consecutive batches with nothing new: the space (or algorithm) is exhausted


def check_metrics(out: Any, objectives: list[Objective]) -> tuple[dict[str, float], str | None]:
    """Metrics as floats, or the reason they can't be used."""
    if not isinstance(out, Mapping):
        return {}, f"evaluator returned {type(out).__name__}, not a mapping of metrics"
    metrics: dict[str, float] = {}
    for k, v in out.items():
        try:
            metrics[str(k)] = float(v)
        except (TypeError, ValueError):
            continue  # non-numeric extras are ignored
    for o in objectives:
        if o.name not in metrics:
            return metrics, f"evaluator returned no {o.name!r} (got {', '.join(metrics) or 'nothing'})"
        if not math.isfinite(metrics[o.name]):
            return metrics, f"{o.name} is {metrics[o.name]}"
    return metrics, None


@dataclass
class StudySpec:
    """What a study searches, as stored in ``study.json`` (enough to show its front later)."""

    objectives: list[Objective]
    constraints: list[Constraint] = field(default_factory=list)
    algorithm: str = "nsga2"
    budget: int | None = 100
    time_budget_s: float | None = None
    seed: int = 0
    batch_size: int | None = None
    timeout_s: float | None = None
    name: str = "search"
    reference_point: dict[str, float] | None = None

    def to_json(self) -> dict:
        d = self.__dict__.copy()
        d["objectives"] = [o.__dict__ for o in self.objectives]
        d["constraints"] = [c.__dict__ for c in self.constraints]
        return d

    @staticmethod
    def from_json(d: dict) -> "StudySpec":
        d = dict(d)
        d["objectives"] = [Objective(**o) for o in d["objectives"]]
        d["constraints"] = [Constraint(**c) for c in d.get("constraints", [])]
        return StudySpec(**{k: v for k, v in d.items() if k in StudySpec.__dataclass_fields__})


def load_trials(run_dir: Path) -> list[Trial]:
    """Trials from ``trials.jsonl``; a line cut short by a crash is ignored."""
    path = Path(run_dir) / "trials.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(Trial.from_json(line))
        except (json.JSONDecodeError, TypeError):
            continue
    return out


def load_front(run_dir: Path) -> Front:
    spec = StudySpec.from_json(json.loads((Path(run_dir) / "study.json").read_text())["spec"])
    return Front(spec.objectives, load_trials(run_dir), spec.constraints, spec.reference_point)


class Study:
    """Owns one search: the loop, the trial log, the checkpoint, the tracker."""

    def __init__(
        self,
        space: Space,
        evaluate: Callable[[Config], Mapping[str, float]],
        spec: StudySpec,
        algorithm: Algorithm | None = None,
        tracker: Any = None,
        executor: Executor | str = "local",
        progress: bool | Progress = True,
        initial: list[Config] = (),
        run_id: str | None = None,
        info: dict | None = None,
    ):
        self.space, self.evaluate, self.spec = space, evaluate, spec
        self.tracker = tracker
        self.executor = make_executor(executor) if isinstance(executor, str) else executor
        self.progress = progress if isinstance(progress, Progress) else Progress(enabled=bool(progress))
        self.info = info or {}
        self.trials: list[Trial] = []
        self.cache: dict[str, Trial] = {}
        self.elapsed_s = 0.0
        self.batches = 0
        self._told = 0
        self.resumed = False
        if algorithm is None:
            algorithm = make_algorithm(spec.algorithm)
        if not hasattr(algorithm, "space"):  # not set up yet (a resumed one is)
            if getattr(algorithm, "declared_seconds", 0) is None:  # auto: a workload may declare its cost
                declared = self.info.get("seconds_per_trial") or (self.info.get("workload_info") or {}).get(
                    "seconds_per_trial")
                algorithm.declared_seconds = float(declared) if declared else None
            if spec.reference_point:
                algorithm.reference = np.array([o.sign * float(spec.reference_point[o.name]) for o in spec.objectives])
            algorithm.setup(space, len(spec.objectives), len(spec.constraints), spec.seed,
                            budget=spec.budget, initial=[space.validate(c) for c in initial])
        self.algorithm = algorithm
        if run_id is None:
            run_id = tracker.start(self._describe()) if tracker is not None else uuid.uuid4().hex[:12]
        self.run_id = run_id
        self.run_dir = run_dir_for(run_id)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if not (self.run_dir / "study.json").exists():
            self._write_json("study.json", {"run_id": run_id, "spec": spec.to_json(), "space": space.describe(),
                                            "info": self.info})
            self._checkpoint()

    # -- resume --------------------------------------------------------------------------------
    @classmethod
    def resume(cls, run_id: str, space: Space, evaluate, tracker=None, executor="local", progress=True) -> "Study":
        """Continue a study from its run directory: nothing that finished is evaluated again."""
        run_dir = run_dir_for(run_id)
        if not (run_dir / "state.pkl").exists():
            raise FileNotFoundError(f"no checkpoint for run {run_id!r} under {run_dir.parent}")
        meta = json.loads((run_dir / "study.json").read_text())
        spec = StudySpec.from_json(meta["spec"])
        state = pickle.loads((run_dir / "state.pkl").read_bytes())
        study = cls(space, evaluate, spec, algorithm=state["algorithm"], tracker=tracker, executor=executor,
                    progress=progress, run_id=run_id, info=meta.get("info"))
        study.elapsed_s, study.batches, study.resumed = state["elapsed_s"], state["batches"], True
        study._told = state["n_trials"]
        if tracker is not None:
            tracker.reopen(run_id)
        for t in load_trials(run_dir):
            study.trials.append(t)
            study.cache[t.key] = t
        return study

    # -- the loop ------------------------------------------------------------------------------
    def run(self) -> Front:
        spec = self.spec
        batch = spec.batch_size or self.algorithm.batch_size or 10
        t0 = time.monotonic() - self.elapsed_s
        idle = 0
        status = "FINISHED"
        self.progress.start(spec.budget, len(self.trials), self.front())
        try:
            while not self._done(t0):
                # sized from the trials at the last checkpoint, so a resumed run asks exactly what
                # the interrupted one asked (its finished trials are then taken from the cache)
                n = batch if spec.budget is None else min(batch, spec.budget - self._told)
                configs = [self.space.validate(c) for c in self.algorithm.ask(n)]
                if not configs:
                    raise RuntimeError(f"{spec.algorithm} asked for nothing while a batch was open")
                new = self._evaluate_new(configs, t0)
                told = [self.cache[self.space.key(c)] for c in configs]
                self.algorithm.tell(configs, self._values(told), self._violations(told))
                self._record_choice()
                self.batches += 1
                self._told = len(self.trials)
                self.elapsed_s = time.monotonic() - t0
                self._checkpoint()
                idle = 0 if new else idle + 1
                if idle >= MAX_IDLE_BATCHES:
                    self.progress.note(f"stopping: {idle} batches in a row proposed only evaluated configs")
                    break
        except KeyboardInterrupt:
            status = "KILLED"
            self.progress.note(f"interrupted; resume with: tradeoff run --resume {self.run_id}")
            raise
        except BaseException:
            status = "FAILED"
            raise
        finally:
            self.elapsed_s = time.monotonic() - t0
            self.progress.stop()
            front = self.front()
            if self.tracker is not None:
                self.tracker.log_front(front, self.run_dir)
                self.tracker.finish(status)
            if status == "FINISHED":
                self._write_json("front.json", json.loads(front.to_json()))
        return front

    def _record_choice(self) -> None:
        """An algorithm that chooses another (``auto``) says which and why: logged, and kept in the run's info."""
        decision = getattr(self.algorithm, "decision", None)
        if decision and self.info.get("algorithm_choice") != decision:
            self.info["algorithm_choice"] = decision
            line = f"algorithm auto picked {decision['algorithm']}: {decision['why']}"
            logging.getLogger("tradeoff").info(line)
            self.progress.note(line)
            meta = json.loads((self.run_dir / "study.json").read_text())
            meta["info"] = self.info
            self._write_json("study.json", meta)

    def front(self) -> Front:
        return Front(self.spec.objectives, list(self.trials), self.spec.constraints, self.spec.reference_point)

    def _done(self, t0: float) -> bool:
        if self.spec.budget is not None and len(self.trials) >= self.spec.budget:
            return True
        return self.spec.time_budget_s is not None and time.monotonic() - t0 >= self.spec.time_budget_s

    def _evaluate_new(self, configs: list[Config], t0: float) -> int:
        todo: dict[str, Config] = {}
        for c in configs:
            k = self.space.key(c)
            if k not in self.cache and k not in todo:
                todo[k] = c
        for key, config, out, reason, dur in self.executor.map(self.evaluate, list(todo.items()), self.spec.timeout_s):
            self._record(key, config, out, reason, dur)
            self.progress.update(len(self.trials), self.front(), time.monotonic() - t0)
        return len(todo)

    def _record(self, key, config, out, reason, duration) -> Trial:
        metrics, bad = ({}, reason) if reason else check_metrics(out, self.spec.objectives)
        state = FAILED if bad else COMPLETE
        feasible = state == COMPLETE and all(
            c.metric in metrics and c.satisfied(metrics[c.metric]) for c in self.spec.constraints)
        trial = Trial(number=len(self.trials), key=key, config=self.space.to_json(config), state=state,
                      metrics=metrics, reason=bad, feasible=feasible, duration_s=round(duration, 6),
                      batch=self.batches)
        self.trials.append(trial)
        self.cache[key] = trial
        with open(self.run_dir / "trials.jsonl", "a") as f:
            f.write(trial.to_json() + "\n")
            f.flush()
            os.fsync(f.fileno())
        if self.tracker is not None:
            self.tracker.log_trial(trial)
        return trial

    def _values(self, trials: list[Trial]) -> np.ndarray:
        rows = [minimised(self.spec.objectives, t.metrics) if t.ok else np.full(len(self.spec.objectives), np.nan)
                for t in trials]
        return np.array(rows, dtype=float)

    def _violations(self, trials: list[Trial]) -> np.ndarray:
        if not self.spec.constraints:
            return np.zeros((len(trials), 0))
        return np.array([violations(self.spec.constraints, t.metrics) if t.ok
                         else np.full(len(self.spec.constraints), np.inf) for t in trials])

    # -- files ---------------------------------------------------------------------------------
    def _write_json(self, name: str, data: Any) -> None:
        tmp = self.run_dir / (name + ".tmp")
        tmp.write_text(json.dumps(data, indent=2, default=str))
        os.replace(tmp, self.run_dir / name)

    def _checkpoint(self) -> None:
        state = {"algorithm": self.algorithm, "batches": self.batches, "elapsed_s": self.elapsed_s,
                 "n_trials": self._told}
        tmp = self.run_dir / "state.pkl.tmp"
        tmp.write_bytes(cloudpickle.dumps(state))  # pymoo keeps local closures
        os.replace(tmp, self.run_dir / "state.pkl")
        if self.tracker is not None:
            self.tracker.log_checkpoint(self.run_dir)

    def _describe(self) -> dict:
        return {"spec": self.spec.to_json(), "space": self.space.describe(), **self.info}
