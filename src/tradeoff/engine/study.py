"""Study: the search loop — ask, evaluate, tell, log, checkpoint — and its resume.

A run directory holds everything needed to continue after Ctrl-C or ``kill -9``:
``study.json`` (what is searched), ``trials.jsonl`` (every finished trial, appended as it
finishes) and ``state.pkl`` (the algorithm after its last tell). On resume the algorithm is
restored and asks again; configs whose key is already in ``trials.jsonl`` are not evaluated.
Only a local ``state.pkl`` is ever unpickled: when it is missing or damaged (or the run came
from a store), the algorithm is rebuilt by replaying the trial log (``replay.py``).

Named baselines (a workload's fp32, int8, ...) are evaluated first, each a trial tagged with its
name. They are reference points, not search: they do not count toward ``budget`` (trials), while
``time_budget_s`` counts all wall time. A config the algorithm asks for that a baseline already
evaluated is taken from the cache.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import uuid
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..core.options import check_positive, check_whole
from ..core.paths import run_dir_for, tradeoff_home  # noqa: F401  (re-exported)
from ..core.protocols import Tracker
from ..core.run_lock import RunLock
from ..core.trial import COMPLETE, FAILED, Trial, TrialError  # noqa: F401  (TrialError re-exported)
from ..spaces.space import Config, Space
from .algorithms.base import Algorithm, make_algorithm
from .checkpoint import load_local_state, read_study_json, save_local_state, write_study_json
from .executors import Executor, make_executor
from .front import Front
from .objectives import (
    MISSING_METRIC_TRIALS,
    Constraint,
    ConstraintError,
    MetricNameError,
    Objective,
    minimised,
    missing_constraint_metrics,
    missing_objective_metric,
    violations,
)
from .progress import Progress
from .replay import batch_for, replay
from .stand_in import answer
from .trial_log import TrialLog, next_number, read_trials

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
    def from_json(d: dict) -> StudySpec:
        d = dict(d)
        d["objectives"] = [Objective(**o) for o in d["objectives"]]
        d["constraints"] = [Constraint(**c) for c in d.get("constraints", [])]
        return StudySpec(**{k: v for k, v in d.items() if k in StudySpec.__dataclass_fields__})


def load_trials(run_dir: Path) -> list[Trial]:
    """Trials from ``trials.jsonl``; a line cut short by a crash, or garbled, is skipped."""
    return read_trials(run_dir)


def load_front(run_dir: Path) -> Front:
    meta = read_study_json(Path(run_dir))
    spec = StudySpec.from_json(meta["spec"])
    return Front(spec.objectives, load_trials(run_dir), spec.constraints, spec.reference_point,
                 reference_source=(meta.get("info") or {}).get("reference_source"), run_id=Path(run_dir).name)


class Study:
    """Owns one search: the loop, the trial log, the checkpoint, the tracker."""

    def __init__(
        self,
        space: Space,
        evaluate: Callable[[Config], Mapping[str, float]],
        spec: StudySpec,
        algorithm: Algorithm | None = None,
        tracker: Tracker | None = None,
        executor: Executor | str = "local",
        progress: bool | Progress = True,
        initial: list[Config] = (),
        run_id: str | None = None,
        info: dict | None = None,
        algorithm_options: dict | None = None,
        baselines: Mapping[str, Config] | None = None,
    ):
        self.space, self.evaluate, self.spec = space, evaluate, spec
        self.tracker = tracker
        self.executor = make_executor(executor) if isinstance(executor, str) else executor
        self.progress = progress if isinstance(progress, Progress) else Progress(enabled=bool(progress))
        self.info = info or {}
        self.baselines = {str(k): space.validate(v) for k, v in (baselines or {}).items()}
        self.trials: list[Trial] = []
        self.cache: dict[str, Trial] = {}
        self.elapsed_s = 0.0
        self.batches = 0
        self._told = 0
        self._next = 0              # the next trial's number: one past the log's highest
        self._names_checked = False  # whether the first trials have shown the objectives' metrics exist
        self._n_searched = 0        # trials that count against the budget (baselines do not)
        self._pending: list[Config] = []   # a batch asked before an interruption, to evaluate before asking again
        self._stand_ins: dict[str, dict] = {}  # a sparse table's row key -> the lacking config it answers for
        self.resumed = False
        self.stop_reason: str | None = None
        if algorithm is None:
            algorithm = make_algorithm(spec.algorithm)
        if algorithm.space is None:  # not set up yet (a resumed one is)
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
            self._adopt_reference()
        self.run_id = run_id
        self.run_dir = run_dir_for(run_id)
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._lock = RunLock(self.run_dir).acquire()
        except BaseException as e:
            if tracker is not None and not isinstance(e, RuntimeError):  # no orphan RUNNING parent
                _end_tracker(tracker, "FAILED", f"run directory {self.run_dir}: {e}")
            if isinstance(e, OSError):
                raise OSError(e.errno, f"cannot use the run directory {self.run_dir} ({e.strerror}); "
                                       "set TRADEOFF_HOME to a writable directory") from e
            raise
        self.log = TrialLog(self.run_dir)
        if not (self.run_dir / "study.json").exists():
            write_study_json(self.run_dir, {"run_id": run_id, "spec": spec.to_json(), "space": space.describe(),
                                            "info": self.info, "algorithm_options": dict(algorithm_options or {}),
                                            "initial": [space.to_json(space.validate(c)) for c in initial]})
            self._checkpoint()

    # -- resume --------------------------------------------------------------------------------
    @classmethod
    def resume(cls, run_id: str, space: Space, evaluate, tracker: Tracker | None = None, executor="local", progress=True,
               algorithm: Algorithm | None = None, baselines: Mapping[str, Config] | None = None,
               budgets: Mapping[str, Any] | None = None) -> Study:
        """Continue a study from its run directory: nothing that finished is evaluated again.

        The algorithm comes from the local ``state.pkl``; when that is missing or damaged it is
        rebuilt from the trial log (``algorithm``, if given, is the fresh one to rebuild). ``budgets``
        (``budget`` and/or ``time_budget_s``) replace the run's own, so a finished search can search on."""
        run_dir = run_dir_for(run_id)
        meta = read_study_json(run_dir)
        spec = StudySpec.from_json(meta["spec"])
        state = load_local_state(run_dir, {"space": space})
        algo = state["algorithm"] if state else (algorithm or make_algorithm(spec.algorithm,
                                                                             **meta.get("algorithm_options", {})))
        study = cls(space, evaluate, spec, algorithm=algo, tracker=tracker, executor=executor, progress=progress,
                    run_id=run_id, info=meta.get("info"), baselines=baselines,
                    initial=[space.from_json(c) for c in meta.get("initial", [])] if not state else ())
        study.resumed = True
        for t in load_trials(run_dir):
            study._add(t, key=study._model_key(t))
        study._next = next_number(study.trials)
        if state:
            study.elapsed_s, study.batches, study._told = state["elapsed_s"], state["batches"], state["n_trials"]
        else:
            r = replay(algo, space, study.cache, spec.batch_size, spec.budget, study._values, study._violations)
            study.batches, study._told, study._pending = r.batches, r.told, r.pending
            study._stand_ins.update(r.stand_ins)
        if budgets:  # after the replay above, which re-asks what the run asked under its own budget
            try:
                study._rebudget(dict(budgets))
            except ValueError:
                study.close()   # the run stays free to resume with a budget that fits
                raise
        if tracker is not None:
            tracker.reopen(run_id)
            # steps already in the store that the log lacks (an older checkpoint resumed elsewhere) are numbered past
            study._next = max(study._next, getattr(tracker, "next_number", 0))
            if not study.spec.reference_point:
                # the experiment's reference, fixed meanwhile (by this run's own first part, often): its hypervolume
                # is scored there, as a new run's would be, and the curve it logged before is not logged again at
                # another point. Only what is reported: the algorithm keeps the reference it started with
                study._adopt_reference()
                if study.spec.reference_point:
                    meta = read_study_json(run_dir)
                    meta.update(spec=study.spec.to_json(), info=study.info)
                    write_study_json(run_dir, meta)
        return study

    def _rebudget(self, budgets: dict[str, Any]) -> None:
        """New budgets for a resumed run, checked against what it has done, and kept in ``study.json``."""
        unknown = sorted(set(budgets) - {"budget", "time_budget_s"})
        if unknown:
            raise ValueError(f"{', '.join(unknown)}: a resumed run changes only budget and time_budget_s")
        new = {"budget": self.spec.budget, "time_budget_s": self.spec.time_budget_s, **budgets}
        done = self._searched()
        if new["budget"] is not None:
            new["budget"] = check_whole("budget", new["budget"], 1, "trials in all")
            if new["budget"] < done:
                raise ValueError(f"budget: {new['budget']} is below the {done} trials this run has done; "
                                 f"give {done} or more (trials in all)")
        if new["time_budget_s"] is not None:
            new["time_budget_s"] = check_positive("time_budget_s", new["time_budget_s"], "seconds in all")
        if new["budget"] is None and new["time_budget_s"] is None:
            raise ValueError("budget, time_budget_s: give a budget (trials) and/or time_budget_s (seconds)")
        changed = {k: (getattr(self.spec, k), v) for k, v in new.items() if v != getattr(self.spec, k)}
        if not changed:
            return
        self.spec = replace(self.spec, **new)
        meta = read_study_json(self.run_dir)
        meta["spec"] = self.spec.to_json()
        write_study_json(self.run_dir, meta)
        line = "; ".join(f"{k} {a} -> {b}" for k, (a, b) in changed.items())
        logging.getLogger("tradeoff").info(line)
        self.progress.note(f"{line} (done so far: {done} trials)")

    # -- the loop ------------------------------------------------------------------------------
    def run(self) -> Front:
        spec = self.spec
        t0 = time.monotonic() - self.elapsed_s
        idle = 0
        status = "FINISHED"
        self._mark("RUNNING")
        self.progress.start(spec.budget, self._searched(), self.front())
        try:
            self._evaluate_baselines(t0)
            while not self._done(t0):
                if self._exhausted():
                    self.stop_reason = f"space exhausted after {len(self.cache)} distinct configs"
                    self.progress.note(self.stop_reason)
                    break
                # sized from the trials at the last checkpoint, so a resumed run asks exactly what
                # the interrupted one asked (its finished trials are then taken from the cache)
                batch = batch_for(spec.batch_size, self.algorithm)
                n = batch if spec.budget is None else min(batch, spec.budget - self._told)
                configs, self._pending = self._pending or self._ask(n), []
                if not configs:  # e.g. a population that cannot breed anything new in a tiny space
                    self.stop_reason = (f"{spec.algorithm} proposed nothing new after "
                                        f"{len(self.cache)} distinct configs")
                    self.progress.note(f"stopping: {self.stop_reason}")
                    break
                self._record_choice()  # a choice made on asking (a declared cost) is said before the batch runs
                new = self._evaluate_new(configs, t0)
                told = [self.cache[self.space.key(c)] for c in configs]
                self.algorithm.tell(configs, self._values(told), self._violations(told))
                self._record_choice()
                self.batches += 1
                self._told = self._searched()
                self.elapsed_s = time.monotonic() - t0
                self._checkpoint()
                idle = 0 if new else idle + 1
                if idle >= MAX_IDLE_BATCHES:
                    self.stop_reason = f"{idle} batches in a row proposed only evaluated configs"
                    self.progress.note(f"stopping: {self.stop_reason}")
                    break
        except KeyboardInterrupt as e:
            status, reason = "KILLED", "interrupted"
            self.progress.note(f"interrupted; resume with: {self.resume_command()}")
            e.add_note(f"resume with: {self.resume_command()}")
            raise
        except BaseException as e:
            status, reason = "FAILED", _describe_error(e)
            if not isinstance(e, MetricNameError):  # a misnamed metric is fixed in the recipe, not resumed
                e.add_note(f"resume with: {self.resume_command()}")
            raise
        finally:
            self.elapsed_s = time.monotonic() - t0
            self.progress.stop()
            front = self.front()
            try:
                self._mark(status, None if status == "FINISHED" else reason)
                if self.tracker is not None:
                    self.tracker.log_front(front, self.run_dir)
                    _end_tracker(self.tracker, status, None if status == "FINISHED" else reason)
                if status == "FINISHED":
                    self._write_json("front.json", json.loads(front.to_json()))
            except Exception as e:  # noqa: BLE001
                if status == "FINISHED":
                    raise
                # the search's own error is the one to see; this one is only reported
                warnings.warn(f"could not record the {status.lower()} run ({_describe_error(e)})", stacklevel=2)
                if self.tracker is not None:
                    _end_tracker(self.tracker, status, reason, quiet=True)
            finally:
                self.close()
        return front

    def close(self) -> None:
        """Let go of the run: the trial log, the run directory's lock, the executor's workers."""
        self.log.close()
        self._lock.release()
        close = getattr(self.executor, "close", None)
        if close is not None:
            close()

    def resume_command(self) -> str:
        uri = getattr(self.tracker, "uri", None)
        return f"tradeoff run --resume {self.run_id}" + (f" --uri {uri}" if uri else "")

    def _adopt_reference(self) -> None:
        """Given a reference point, say so; else take the experiment's shared one (see engine.reference)."""
        if self.spec.reference_point:
            self.info.setdefault("reference_source", "given")
            return
        shared = getattr(self.tracker, "shared_reference", None)
        point = shared(self.spec.objectives) if shared is not None else None
        if point:
            self.spec.reference_point = point
            self.info["reference_source"] = f"experiment {getattr(self.tracker, 'experiment', '')}".strip()
    def _record_choice(self) -> None:
        """An algorithm that chooses another (``auto``) says which and why: logged, and kept in the run's info."""
        decision = getattr(self.algorithm, "decision", None)
        if decision and self.info.get("algorithm_choice") != decision:
            self.info["algorithm_choice"] = decision
            line = f"algorithm auto picked {decision['algorithm']}: {decision['why']}"
            logging.getLogger("tradeoff").info(line)
            self.progress.note(line)
            meta = read_study_json(self.run_dir)
            meta["info"] = self.info
            write_study_json(self.run_dir, meta)

    def _mark(self, status: str, reason: str | None = None) -> None:
        """How the run stands, in ``study.json``: RUNNING, then FINISHED, KILLED or FAILED (with why), and the
        command that resumes it (``tradeoff show`` reads both; a ``kill -9`` leaves RUNNING)."""
        meta = read_study_json(self.run_dir)
        meta.update(status=status, reason=reason, resume_command=self.resume_command())
        write_study_json(self.run_dir, meta)

    def front(self) -> Front:
        return Front(self.spec.objectives, list(self.trials), self.spec.constraints, self.spec.reference_point,
                     reference_source=self.info.get("reference_source"),
                     run_id=self.run_id, stop_reason=self.stop_reason)

    def _exhausted(self) -> bool:
        """Every config of a finite space has been evaluated (a table's rows when it knows them)."""
        size = getattr(self.space, "n_configs", self.space.cardinality)
        return math.isfinite(size) and len(self.cache) >= size

    def _ask(self, n: int) -> list[Config]:
        configs, stand_ins = answer(self.space, [self.space.validate(c) for c in self.algorithm.ask(n)], self.cache)
        for key, asked in stand_ins.items():
            self._stand_ins.setdefault(key, asked)
        return configs

    def _searched(self) -> int:
        return self._n_searched

    def _add(self, trial: Trial, key: str | None = None) -> None:
        """A trial joins the study: its list, the cache of evaluated configs (under ``key``, by default
        its own), the count against the budget."""
        self.trials.append(trial)
        self.cache[key or trial.key] = trial
        self._n_searched += not trial.baseline

    def _model_key(self, trial: Trial) -> str:
        """The key this space gives a logged trial's config. It differs from the logged key when the
        log predates the space's canonical rule (configs of one model had keys of their own then): the
        trial then answers for its model, so a resumed search does not evaluate that model again."""
        if self.space.canonical is None:
            return trial.key
        try:
            return self.space.key(self.space.from_json(trial.config))
        except (ValueError, KeyError, TypeError):  # a config this space no longer holds keeps its key
            return trial.key

    def _evaluate_baselines(self, t0: float) -> None:
        """Each named baseline once, as a trial tagged with its name; baselines that are one config are one
        trial, tagged with their names joined by '/'. A resumed study skips the configs done."""
        names: dict[str, list[str]] = {}
        configs: dict[str, Config] = {}
        for name, c in self.baselines.items():
            k = self.space.key(c)
            names.setdefault(k, []).append(name)
            configs.setdefault(k, c)
        done = {self._model_key(t) for t in self.trials if t.baseline}
        todo = [(k, c) for k, c in configs.items() if k not in done]
        for key, config, out, reason, dur in self.executor.map(self.evaluate, todo, self.spec.timeout_s):
            self._record(key, config, out, reason, dur, baseline="/".join(names[key]))
        if todo:
            self.progress.note("baselines: " + ", ".join(
                f"{t.baseline} {'ok' if t.ok else 'failed: ' + str(t.reason)}" for t in self.trials if t.baseline))
            self.elapsed_s = time.monotonic() - t0
            self._checkpoint()

    def _done(self, t0: float) -> bool:
        if self.spec.budget is not None and self._searched() >= self.spec.budget:
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
            self.progress.update(self._searched(), self.front(), time.monotonic() - t0)
        return len(todo)

    def _record(self, key, config, out, reason, duration, baseline: str | None = None) -> Trial:
        metrics, bad = ({}, reason) if reason else check_metrics(out, self.spec.objectives)
        state = FAILED if bad else COMPLETE
        feasible = state == COMPLETE and all(
            c.metric in metrics and c.satisfied(metrics[c.metric]) for c in self.spec.constraints)
        stands_in_for = None if baseline else self._stand_ins.pop(key, None)
        if stands_in_for is not None and not any(t.stands_in_for for t in self.trials):
            self.progress.note(f"the table lacks a config {self.spec.algorithm} asked for; its nearest row "
                               f"was evaluated instead (trial {self._next}, `stands_in_for`)")
        trial = Trial(number=self._next, key=key, config=self.space.to_json(config), state=state,
                      metrics=metrics, reason=bad, feasible=feasible, duration_s=round(duration, 6),
                      batch=self.batches, baseline=baseline, stands_in_for=stands_in_for)
        self.log.append(trial)  # the record first: a kill now leaves a child for resume to back-fill
        self._next += 1
        self._add(trial)
        if self.tracker is not None:  # the log goes up before the trial's metrics: no point in MLflow outruns it
            self.tracker.log_checkpoint(self.run_dir)
            self.tracker.log_trial(trial)
        if state == COMPLETE and self.spec.constraints:  # recorded first: nothing is lost
            missing = missing_constraint_metrics(self.spec.constraints, metrics)
            if missing:
                raise ConstraintError(missing)
        if not self._names_checked and len(self.trials) >= MISSING_METRIC_TRIALS:  # once, after the first few
            self._names_checked = True
            missing = missing_objective_metric(self.spec.objectives, [t.metrics for t in self.trials])
            if missing:
                raise MetricNameError(missing)
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
        self.log.sync()
        save_local_state(self.run_dir, {"algorithm": self.algorithm, "batches": self.batches,
                                        "elapsed_s": self.elapsed_s, "n_trials": self._told},
                         shared={"space": self.space})
        if self.tracker is not None:
            self.tracker.log_checkpoint(self.run_dir)

    def _describe(self) -> dict:
        return {"spec": self.spec.to_json(), "space": self.space.describe(), **self.info}


def _describe_error(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    return f"{type(e).__name__}: {msg[0] if msg else ''}".rstrip(": ")[:500]


def _end_tracker(tracker: Any, status: str, reason: str | None, quiet: bool = False) -> None:
    """End the tracker's run with its status, and the reason when it did not finish."""
    try:
        if reason and hasattr(tracker, "note_end"):
            tracker.note_end(status, reason)
        tracker.finish(status)
    except Exception:  # noqa: BLE001
        if not quiet:
            raise
