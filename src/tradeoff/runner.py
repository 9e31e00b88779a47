"""Run a validated recipe as a study, or resume one from its run directory."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any

import yaml

from .api import make_tracker
from .engine.algorithms.base import make_algorithm
from .engine.front import Front
from .engine.objectives import parse_constraints, parse_objectives
from .engine.study import Study, StudySpec, run_dir_for
from .recipe import Recipe, RecipeError, build_workload, load_recipe, resolved_dict
from .tracking.run_files import write_run_files


def _tracker(recipe: Recipe):
    cfg = recipe.tracking_cfg()
    if cfg is None:
        return None
    return make_tracker({"uri": cfg.uri, "experiment": cfg.experiment or recipe.name, "trials": cfg.trials,
                         "checkpoint_every_s": cfg.checkpoint_every_s}, recipe.name)


def _executor(recipe: Recipe):
    from .engine.executors import make_executor

    s = recipe.search
    opts = {"threads": {"workers": s.workers}, "processes": {"workers": s.workers, "memory_mb": s.memory_mb},
            "ray": {"workers": s.workers, "memory_mb": s.memory_mb, "address": s.address}}
    return make_executor(s.executor, **opts.get(s.executor, {}))


def run_recipe(recipe: Recipe, text: str = "", path: str | Path | None = None, progress: bool = True) -> tuple[Front, str]:
    """Build the workload, algorithm and tracker a recipe names, and search."""
    wl = build_workload(recipe)
    s = recipe.search
    spec = StudySpec(
        objectives=parse_objectives(recipe.objective_directions()),
        constraints=parse_constraints(recipe.constraints),
        algorithm=s.algorithm, budget=s.budget, time_budget_s=s.time_budget_s, seed=s.seed,
        batch_size=s.batch_size, timeout_s=s.timeout_s, name=recipe.name,
        reference_point=recipe.reference_point,
    )
    try:
        algo = make_algorithm(s.algorithm, **s.options)
    except (TypeError, ValueError) as e:
        raise RecipeError(f"search.options: {e}") from None
    resolved = resolved_dict(recipe)
    info = {"recipe_path": str(Path(path).resolve()) if path else None, "recipe_text": text, "resolved": resolved,
            "workload": wl.name, "workload_info": wl.info}
    initial = list(wl.baselines.values()) if isinstance(s.initial, str) else list(s.initial)
    study = Study(wl.space, wl.evaluate, spec, algorithm=algo, tracker=_tracker(recipe), executor=_executor(recipe),
                  progress=progress, initial=initial, info=info, algorithm_options=s.options,
                  baselines=wl.baselines)
    (study.run_dir / "recipe.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
    announce(study)
    return _run(study), study.run_id


def _run(study: Study) -> Front:
    """The search; a run with tracking off still leaves its tables and pictures in its run directory."""
    try:
        return study.run()
    finally:
        if study.tracker is None:
            try:
                write_run_files(study.front(), study.run_dir, title=study.spec.name)
            except Exception as e:  # noqa: BLE001 - the search's own result or error is the one to see
                warnings.warn(f"could not write the run's tables and plots ({type(e).__name__}: {e})", stacklevel=2)


def announce(study: Study) -> None:
    """The run id and how to resume, before the first trial, so a ``kill -9`` cannot lose them."""
    print(f"run id: {study.run_id} (resume with: {study.resume_command()})", file=sys.stderr, flush=True)


RESUME_SETTABLE = {"search.budget": "budget", "search.time_budget_s": "time_budget_s"}


def resume_budgets(overrides: list[str] | None) -> dict[str, Any]:
    """``--set`` with ``--resume``: a new budget and/or time budget, and nothing else of the recipe."""
    from .recipe import parse_overrides

    budgets = {}
    for key, value in parse_overrides(overrides or []):
        if key not in RESUME_SETTABLE:
            raise RecipeError(f"--set {key}: with --resume only {' and '.join(RESUME_SETTABLE)} may change "
                              f"(a resumed run keeps the rest of its recipe)")
        budgets[RESUME_SETTABLE[key]] = value
    return budgets


def resume_run(run_id: str, progress: bool = True, uri: str | None = None,
               budgets: dict[str, Any] | None = None) -> tuple[Front, str]:
    """Continue an interrupted run from its checkpoint; finished trials are not evaluated again. ``budgets``
    (``budget``, ``time_budget_s``) replace the run's own: a finished run searches on."""
    run_dir = run_dir_for(run_id)
    if not (run_dir / "study.json").exists():
        try:
            from .tracking.mlflow import download_checkpoint

            download_checkpoint(run_id, run_dir, uri)
        except Exception as e:  # noqa: BLE001 - report what is missing, not a traceback
            raise RecipeError(f"run {run_id!r}: no local checkpoint under {run_dir} and none in MLflow ({e})") from None
    info = json.loads((run_dir / "study.json").read_text()).get("info", {})
    resolved = info.get("resolved")
    if not resolved:
        raise RecipeError(f"run {run_id!r} was started from the Python API; resume it with search(..., resume=...)")
    recipe, _ = load_recipe(resolved)
    if uri:  # the store named on the command line is the one the run lives in
        recipe.tracking = recipe.tracking_cfg().model_copy(update={"uri": uri}) if recipe.tracking_cfg() else None
    if info.get("recipe_path"):  # its modules are found beside the recipe, as when it started
        recipe._base_dir = Path(info["recipe_path"]).resolve().parent
    wl = build_workload(recipe)
    try:
        study = Study.resume(run_id, wl.space, wl.evaluate, tracker=_tracker(recipe), executor=_executor(recipe),
                             progress=progress, algorithm=make_algorithm(recipe.search.algorithm, **recipe.search.options),
                             baselines=wl.baselines, budgets=budgets)
    except ValueError as e:
        if budgets and str(e).startswith(tuple(budgets)):
            raise RecipeError(f"--set search.{e}") from None
        raise
    return _run(study), run_id
