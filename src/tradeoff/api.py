"""The Python API: ``tradeoff.search(space, objectives, evaluate, ...)`` or ``search(workload, objectives, targets=...)``."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from .core.options import check_positive, check_whole
from .engine.algorithms.base import Algorithm, make_algorithm
from .engine.front import Front
from .engine.objectives import parse_constraints, parse_objectives
from .engine.reference import check_reference
from .engine.study import Study, StudySpec
from .spaces.space import Config, Space
from .workloads import Workload


def make_tracker(tracking: Any, name: str = "search"):
    """None: log nothing; "default": MLflow's local store; a dict: MLflow settings; or a tracker."""
    if tracking is None or tracking is False:
        return None
    from .tracking.mlflow import MlflowTracker

    if tracking == "default" or tracking is True:
        return MlflowTracker(run_name=name)
    if isinstance(tracking, Mapping):
        opts = dict(tracking)
        opts.setdefault("run_name", name)
        return MlflowTracker(**opts)
    return tracking


def search(
    space: Space | Workload,
    objectives: Mapping[str, Any] | list,
    evaluate: Callable[[Config], Mapping[str, float]] | None = None,
    budget: int | None = 100,
    algorithm: str | Algorithm = "nsga2",
    seed: int = 0,
    constraints: Mapping[str, Any] | None = None,
    tracking: Any = "default",
    *,
    time_budget_s: float | None = None,
    batch_size: int | None = None,
    timeout_s: float | None = None,
    executor: str = "local",
    initial: list[Config] | str = (),
    reference_point: Mapping[str, float] | None = None,
    name: str = "search",
    progress: bool = False,
    resume: str | None = None,
    algorithm_options: Mapping[str, Any] | None = None,
    info: Mapping[str, Any] | None = None,
    targets: Mapping[str, Mapping[str, Any]] | None = None,
) -> Front:
    """Search ``space`` for the Pareto front of ``objectives`` as measured by ``evaluate``.

    ``evaluate(config) -> {metric: value}`` may raise: the trial is recorded as failed with the
    reason and the search goes on. ``resume=RUN_ID`` continues an interrupted search.

    ``space`` may be a ``Workload`` instead (a built-in from ``make_workload`` or a user's own):
    its evaluate is used, and a model workload is measured on ``targets`` (as in a recipe:
    ``{"cpu": {"runtime": "ort", "threads": 1}}``; objectives pick one with ``{"target": "cpu"}``).
    A workload's named ``baselines`` are evaluated first (not counted in ``budget``) and reported
    as ``front.baselines``; ``initial="baselines"`` (or ``"named"``) also seeds the algorithm with them.
    """
    baselines = dict(space.baselines) if isinstance(space, Workload) else {}
    initial = seed_configs(initial, baselines)
    if budget is None and time_budget_s is None:
        raise ValueError("give a budget (trials) and/or time_budget_s (seconds)")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget <= 0):
        raise ValueError(f"budget: a positive whole number of trials, got {budget!r}")
    if time_budget_s is not None and not time_budget_s > 0:
        raise ValueError(f"time_budget_s: a positive number of seconds, got {time_budget_s!r}")
    seed = check_whole("seed", seed, 0, "a random seed")
    if batch_size is not None:
        batch_size = check_whole("batch_size", batch_size, 1, "trials asked at once")
    if timeout_s is not None:
        timeout_s = check_positive("timeout_s", timeout_s, "the seconds one trial may take")
    parsed = parse_objectives(objectives)
    space, evaluate, info = _resolve(space, objectives, evaluate, constraints, targets, info)
    tracker = make_tracker(tracking, name)
    if resume:
        # an algorithm given as an object is the one to rebuild from the trial log when the checkpoint is
        # gone (a name is rebuilt from the options the run recorded)
        # the call's budgets are the run's from now on: the same call resumes, a larger budget searches on
        study = Study.resume(resume, space, evaluate, tracker=tracker, executor=executor, progress=progress,
                             baselines=baselines, algorithm=algorithm if isinstance(algorithm, Algorithm) else None,
                             budgets={"budget": budget, "time_budget_s": time_budget_s})
        return _warn_failures(_run(study))
    if reference_point:
        reference_point = check_reference(reference_point, [o.name for o in parsed])
    spec = StudySpec(
        objectives=parsed,
        constraints=parse_constraints(constraints),
        algorithm=algorithm if isinstance(algorithm, str) else algorithm.name,
        budget=budget,
        time_budget_s=time_budget_s,
        seed=seed,
        batch_size=batch_size,
        timeout_s=timeout_s,
        name=name,
        reference_point=dict(reference_point) if reference_point else None,
    )
    algo = algorithm if isinstance(algorithm, Algorithm) else make_algorithm(algorithm, **(algorithm_options or {}))
    study = Study(space, evaluate, spec, algorithm=algo, tracker=tracker, executor=executor,
                  progress=progress, initial=list(initial), info=dict(info or {}),
                  algorithm_options=dict(algorithm_options or {}), baselines=baselines)
    return _warn_failures(_run(study))


class SearchInterrupted(KeyboardInterrupt):
    """Ctrl-C during a search: the message says how to resume it."""


def _run(study: Study) -> Front:
    try:
        return study.run()
    except SearchInterrupted:
        raise
    except KeyboardInterrupt:
        msg = (f"search {study.run_id} interrupted after {len(study.trials)} trials; resume with "
               f"tradeoff.search(..., resume={study.run_id!r}) (same space, objectives and evaluate)")
        raise SearchInterrupted(msg) from None


def _warn_failures(front: Front) -> Front:
    """Say why trials failed (grouped, with counts), loudly when nothing worked at all."""
    report = front.failure_report()
    if report:
        head = "no trial completed and met the constraints. " if not front.feasible else ""
        warnings.warn(head + report, SearchWarning, stacklevel=3)
    return front


class SearchWarning(UserWarning):
    """A search finished but some (or all) of its trials failed or were infeasible."""


SEED_BASELINES = ("baselines", "named")


def seed_configs(initial: list[Config] | str, baselines: Mapping[str, Config]) -> list[Config]:
    """``initial`` as configs: a list as given, or ``"baselines"`` / ``"named"`` for the workload's baselines."""
    if isinstance(initial, str):
        if initial not in SEED_BASELINES:
            raise ValueError(f"initial: {initial!r} is not a list of configs or one of {', '.join(SEED_BASELINES)}")
        if not baselines:
            raise ValueError(f"initial: {initial!r} asks for the workload's baselines, and it has none")
        return list(baselines.values())
    return list(initial)


def _resolve(space, objectives, evaluate, constraints, targets, info):
    """A Space + evaluate, or a Workload (composed with its targets), to the space and evaluate to search."""
    if isinstance(space, Workload):
        from .compose import compose_workload

        if evaluate is not None:
            raise TypeError("search(workload, ...): the workload evaluates; pass no evaluate")
        wl = compose_workload(space, objectives if isinstance(objectives, Mapping) else {}, constraints, targets)
        info = {"workload": wl.name, "workload_info": wl.info, "targets": dict(targets or {}), **dict(info or {})}
        return wl.space, wl.evaluate, info
    if not isinstance(space, Space):
        hint = (" (a plain dict: wrap it as tradeoff.Space({'depth': tradeoff.Int(2, 8), "
                "'width': tradeoff.Choice([16, 32])}))" if isinstance(space, Mapping) else "")
        raise TypeError(f"space: pass a tradeoff.Space or a Workload, not a {type(space).__name__}{hint}")
    if targets:
        raise TypeError("search(..., targets=...): targets measure a model workload; pass a Workload, not a Space")
    if evaluate is None:
        raise TypeError("search(space, objectives, evaluate): evaluate(config) -> {metric: value} is required with a Space")
    return space, evaluate, info


def load_front(run: str | os.PathLike) -> Front:
    """A past search's front and every trial, from the local run store: by run id (or its first 4 or more
    characters, when they begin one run) or by the path of its run directory. A run still going, or
    stopped, gives what it has done so far."""
    from pathlib import Path

    from .core.paths import resolve_run_id, run_dir_for
    from .engine.study import load_front as _load

    path = Path(run)
    run_dir = path if (path / "study.json").exists() else run_dir_for(resolve_run_id(str(run)))
    if not (run_dir / "study.json").exists():
        raise FileNotFoundError(f"no run {str(run)!r} in the local run store {run_dir.parent}")
    return _load(run_dir)


def compare(run_ids: list[str], experiment: str | None = None, uri: str | None = None, out_dir: Any = None,
            log: bool = True):
    """Compare searches at one reference point: a table (``.rows``), overlays of their fronts and
    hypervolume curves (``.fronts_png``, ``.hypervolume_png``), logged to MLflow as a comparison run.
    Runs made with tracking off are read from their local run directories; when none was tracked the
    comparison is logged only to a named ``experiment``."""
    from .tracking.compare import compare as _compare

    return _compare(list(run_ids), experiment=experiment, uri=uri, out_dir=out_dir, log=log)
