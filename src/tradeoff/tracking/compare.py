"""Compare searches: one table, an overlay of their fronts and of their hypervolume curves.

A run made with tracking off is read from its local run directory. Every run is scored at one
reference point: the experiment's shared one for these objectives
(see ``engine.reference``), else the runs' common given one, else the nadir of all their
feasible trials +10%. The plots and the table are logged to MLflow as a comparison run.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from ..core.pareto import derive_reference
from ..engine.checkpoint import read_study_json
from ..engine.front import Front
from ..engine.reference import point_text
from ..engine.study import load_front, run_dir_for
from .mlflow import _source_tags, default_tracking_uri, local_artifact_root, quiet_mlflow
from .reference import read_shared_reference
from .store import open_client, sqlite_path


@dataclass
class Comparison:
    """The compared runs as table rows, the reference they were scored at and the files written."""

    rows: list[dict[str, Any]]
    reference: dict[str, float]
    reference_source: str
    fronts_png: Path
    hypervolume_png: Path
    table_csv: Path
    run_id: str | None = None          # the comparison run in MLflow, when logged
    experiment: str | None = None
    fronts: dict[str, Front] = field(default_factory=dict, repr=False)


def _front_of(client: MlflowClient | None, run_id: str, scratch: Path) -> Front:
    """A run's trials: from its local run directory, else from its checkpoint in MLflow."""
    local = run_dir_for(run_id)
    if (local / "study.json").exists():
        return load_front(local)
    dest = scratch / run_id
    try:
        got = Path(client.download_artifacts(run_id, "checkpoint", str(dest)))
    except (MlflowException, OSError) as e:
        raise FileNotFoundError(f"run {run_id!r}: no local run directory and no checkpoint in MLflow ({e})") from None
    front = load_front(got)
    front.run_id = run_id
    return front


@dataclass
class _Source:
    """What the table says of one compared run besides its front: from MLflow, or from its local run
    directory when it ran with tracking off (then no experiment and no wall-clock time)."""

    algorithm: str
    seed: str
    time_s: float = math.nan
    experiment_id: str | None = None

    def label(self, rid: str) -> str:
        return f"{self.algorithm} seed={self.seed} ({rid[:8]})"


def _source(client: MlflowClient | None, rid: str, uri: str) -> _Source:
    try:
        if client is None:  # no store there: every run is a local one
            raise MlflowException(f"no MLflow store at {uri}")
        run = client.get_run(rid)
    except MlflowException:
        local = run_dir_for(rid)
        if not (local / "study.json").exists():
            raise FileNotFoundError(
                f"run_ids: no run {rid!r} in the MLflow store {uri} nor in the local run store {local.parent}"
                if client is not None else
                f"run_ids: no run {rid!r} in the local run store {local.parent}, and no MLflow store at {uri}") from None
        spec = read_study_json(local).get("spec") or {}
        return _Source(str(spec.get("algorithm", "?")), str(spec.get("seed", "?")))
    p, end = run.data.params, run.info.end_time or run.info.start_time
    return _Source(p.get("algorithm", run.info.run_name or "?"), p.get("seed", "?"),
                   round((end - run.info.start_time) / 1000, 1) if end else math.nan, run.info.experiment_id)


def experiment_runs(experiment: str, uri: str | None = None, last: int = 10) -> list[str]:
    """The ``last`` searches logged to ``experiment`` (its study runs, not its trials or comparisons), oldest first."""
    quiet_mlflow()
    uri = uri or default_tracking_uri()
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        raise FileNotFoundError(f"experiment: no MLflow store at {uri}")
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        names = sorted(e.name for e in client.search_experiments())
        raise FileNotFoundError(f"experiment: no experiment {experiment!r} in {uri} (it has: {', '.join(names)})")
    runs = client.search_runs([exp.experiment_id], "tags.`tradeoff.kind` = 'study'", max_results=last,
                              order_by=["attributes.start_time DESC"])
    if not runs:
        raise FileNotFoundError(f"experiment: no search logged to {experiment!r} in {uri}")
    return [r.info.run_id for r in reversed(runs)]


def compare(run_ids: Sequence[str], experiment: str | None = None, uri: str | None = None,
            out_dir: str | Path | None = None, log: bool = True) -> Comparison:
    """Compare searches by run id: a side-by-side table and overlays, logged as a comparison run.

    A run made with tracking off is read from its local run directory; the comparison is logged to
    ``experiment``, else to the first tracked run's experiment, else (every run untracked) not at all.
    """
    if len(run_ids) < 1:
        raise ValueError("run_ids: give at least one run id")
    quiet_mlflow()
    uri = uri or default_tracking_uri()
    db = sqlite_path(uri)
    client = MlflowClient(uri) if db is None or db.exists() else None  # opening a missing store would make one
    runs, fronts = {}, {}
    with tempfile.TemporaryDirectory() as scratch:
        for rid in run_ids:
            runs[rid] = _source(client, rid, uri)
            fronts[rid] = _front_of(client, rid, Path(scratch))
    first = fronts[run_ids[0]]
    key = sorted((o.name, o.direction) for o in first.objectives)
    for rid, f in fronts.items():
        if sorted((o.name, o.direction) for o in f.objectives) != key:
            raise ValueError(f"run_ids: run {rid} searched other objectives ({', '.join(f.names)}); "
                             f"compare runs of the same objectives ({', '.join(first.names)})")
    exp_id = next((r.experiment_id for r in runs.values() if r.experiment_id is not None), None)
    if experiment is not None:
        client = client or open_client(uri)
        exp = client.get_experiment_by_name(experiment)
        exp_id = exp.experiment_id if exp is not None else client.create_experiment(
            experiment, artifact_location=local_artifact_root(uri))
    exp_name = client.get_experiment(exp_id).name if exp_id is not None else None
    reference, source = _reference(client, exp_id, exp_name, list(fronts.values()))

    rows, labels = [], {}
    for rid in run_ids:
        f, run = fronts[rid], runs[rid]
        labels[rid] = run.label(rid)
        row: dict[str, Any] = {"run": rid, "algorithm": run.algorithm, "seed": run.seed,
                               "hypervolume": f.hypervolume(reference), "front": len(f.members)}
        row.update({f"best {n}": v for n, v in f.best().items()})
        row.update({"trials": len(f.trials), "failed": len(f.failed), "time_s": run.time_s})
        rows.append(row)

    out = Path(out_dir) if out_dir is not None else Path.cwd() / "comparisons" / "-".join(r[:8] for r in run_ids)
    out.mkdir(parents=True, exist_ok=True)
    fronts_png = plot_fronts(fronts, labels, out / "compare_fronts.png", reference, source)
    hv_png = plot_curves(fronts, labels, out / "compare_hypervolume.png", reference, source)
    import pandas as pd

    table = out / "compare.csv"
    pd.DataFrame(rows).to_csv(table, index=False)
    result = Comparison(rows, reference, source, fronts_png, hv_png, table, experiment=exp_name, fronts=fronts)
    if log and exp_id is not None:
        result.run_id = _log(client, exp_id, run_ids, result)
    return result


def _reference(client, exp_id: str | None, exp_name: str | None,
               fronts: list[Front]) -> tuple[dict[str, float], str]:
    objectives = fronts[0].objectives
    shared = read_shared_reference(client, exp_id, objectives) if exp_id is not None else None
    if shared:
        return shared, f"experiment {exp_name}"
    given = [f.reference_point for f in fronts]
    if given[0] and all(g == given[0] for g in given):
        return dict(given[0]), "given to every run"
    pts = np.vstack([f.values(f.feasible) for f in fronts if f.feasible] or [np.zeros((0, len(objectives)))])
    if len(pts) == 0:
        return {o.name: math.nan for o in objectives}, "none: no feasible trial"
    ref = derive_reference(pts)
    return {o.name: float(o.sign * r) for o, r in zip(objectives, ref)}, "nadir of the compared runs +10%"


def _log(client: MlflowClient, exp_id: str, run_ids: Sequence[str], c: Comparison) -> str:
    tags = {**_source_tags(), "tradeoff.kind": "comparison", "compared_runs": ",".join(run_ids),
            "reference_point": json.dumps(c.reference), "reference_source": c.reference_source,
            "mlflow.note.content": "comparison of " + ", ".join(f"{r['algorithm']} seed={r['seed']}" for r in c.rows)}
    run = client.create_run(exp_id, tags=tags, run_name="compare " + " ".join(r[:8] for r in run_ids))
    rid = run.info.run_id
    for p in (c.fronts_png, c.hypervolume_png, c.table_csv):
        client.log_artifact(rid, str(p))
    client.set_terminated(rid, "FINISHED")
    return rid


# -- plots --------------------------------------------------------------------------------------
def _colours(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def plot_fronts(fronts: dict[str, Front], labels: dict[str, str], path: Path, reference: dict[str, float],
                source: str) -> Path:
    """Each run's front on the first two objectives (a staircase, one colour per run), the reference marked."""
    names = next(iter(fronts.values())).names
    fig = Figure(figsize=(7.5, 5.5), layout="constrained")
    ax = fig.add_subplot()
    for (rid, f), colour in zip(fronts.items(), _colours(len(fronts))):
        members = f.members
        if not members:
            continue
        x = np.array([t.metrics[names[0]] for t in members])
        y = np.array([t.metrics[names[1]] for t in members]) if len(names) > 1 else np.zeros(len(x))
        order = np.argsort(x)
        ax.step(x[order], y[order], where="post", color=colour, lw=1.5, alpha=0.8)
        ax.scatter(x, y, color=colour, s=22, label=f"{labels[rid]}: {len(members)} on the front", zorder=3)
    dirs = {o.name: o.direction for o in next(iter(fronts.values())).objectives}
    ax.set_xlabel(f"{names[0]} ({dirs[names[0]]})")
    ax.set_ylabel(f"{names[1]} ({dirs[names[1]]})" if len(names) > 1 else "")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    extra = f" (first two of {len(names)} objectives)" if len(names) > 2 else ""
    fig.suptitle(f"Pareto fronts{extra}\nhypervolumes at reference {point_text(reference)} ({source})", fontsize=10)
    return _save(fig, path)


def plot_curves(fronts: dict[str, Front], labels: dict[str, str], path: Path, reference: dict[str, float],
                source: str) -> Path:
    """Hypervolume at the shared reference against trials done, one line per run."""
    fig = Figure(figsize=(7.5, 4.8), layout="constrained")
    ax = fig.add_subplot()
    for (rid, f), colour in zip(fronts.items(), _colours(len(fronts))):
        curve = f.hypervolume_curve(reference)
        ax.step(np.arange(1, len(curve) + 1), curve, where="post", color=colour, lw=1.6,
                label=f"{labels[rid]}: {curve[-1] if len(curve) else 0:.4g}")
    ax.set_xlabel("trials")
    ax.set_ylabel("hypervolume")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(f"Hypervolume at reference {point_text(reference)} ({source})", fontsize=10)
    return _save(fig, path)


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=110)
    return Path(path)
