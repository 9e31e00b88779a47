"""MlflowTracker: one parent run per search, every trial on it, the front and its plots.

Everything goes through ``MlflowClient`` (no fluent ``mlflow.start_run`` state), so a tracker
never touches the user's active run. How trials are logged is the ``trials`` setting:

- ``steps`` (the default): each trial's metrics land on the parent at ``step`` = its number, as
  ``trial.<metric>``, a few hundred trials per ``log_batch`` from a writer thread; the front's
  members and the baselines each get a child run at the end. About 1 ms of the store per trial.
- ``children``: one child run per trial (create, ``log_batch``, terminate: three store calls,
  ~40 ms each trial on a local SQLite store), for searches whose trials take seconds or more.
- ``none``: the parent only.

Metric timestamps are derived from the parent's start and the step, so logging a trial or a
curve again (on resume) repeats an identical point, which the store keeps once.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import logging
import math
import os
import platform
import queue
import re
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from ..core.trial import Trial
from ..engine.front import Front
from ..engine.study import load_trials, run_dir_for
from .curves import curves, grouping_tags, summary_metrics
from .store import open_client

LONG_VALUE = 250            # a config value longer than this is summarised in params, kept whole in config.json
PARAM_LIMIT = 6000          # MLflow's limits on one param / tag value and on one log_batch
TAG_LIMIT = 8000
BATCH_PARAMS_TAGS = 100
BATCH_METRICS = 1000
TRIAL_MODES = ("steps", "children", "none")
CHECKPOINT_FILES = ("trials.jsonl", "study.json")  # data only: a resume rebuilds the algorithm from the log
UPLOAD_SHARE = 0.05  # checkpoint uploads may take at most this share of a search's wall-clock
# import name -> distributions that may provide it (first one installed wins)
VERSIONED = {
    "tradeoff": ("tradeoff",), "numpy": ("numpy",), "torch": ("torch",), "pymoo": ("pymoo",),
    "optuna": ("optuna",), "nevergrad": ("nevergrad",), "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
    "tvm": ("apache-tvm", "tvm"), "mlflow": ("mlflow",),
}


def quiet_mlflow() -> None:
    """Keep MLflow's and Alembic's INFO lines (store creation, migrations) off the user's terminal."""
    for name in ("mlflow.store", "mlflow.tracking", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


def default_tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else ``mlflow.db`` in the working directory."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    return uri if uri else f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def local_artifact_root(uri: str) -> str | None:
    """Where a local SQLite store keeps artifacts: ``mlruns/`` beside the database file."""
    if not uri.startswith("sqlite:///"):
        return None  # a server or a file store decides for itself
    db = unquote(uri[len("sqlite:///"):].split("?", 1)[0])
    if not db or db == ":memory:":
        return None
    return (Path(os.path.abspath(db)).parent / "mlruns").as_uri()


class MlflowTracker:
    """Logs a Study to MLflow: called by the Study at start, per trial, per batch and at the end."""

    def __init__(self, uri: str | None = None, experiment: str = "tradeoff", run_name: str = "search",
                 log_trials: bool = True, checkpoint_every_s: float = 30.0, trials: str = "steps"):
        quiet_mlflow()
        if trials not in TRIAL_MODES:
            raise ValueError(f"tracking trials {trials!r} is not one of {', '.join(TRIAL_MODES)}")
        self.trials = trials if log_trials else "none"
        self.uri = uri or default_tracking_uri()
        self.experiment = experiment
        self.run_name = run_name
        self.log_trials = self.trials != "none"
        self.client = open_client(self.uri)
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self._source = _source_tags()
        self.trial_seconds = 0.0    # time spent logging trials, to keep an eye on its cost
        self.trials_logged = 0
        self.checkpoint_every_s = checkpoint_every_s
        self._last_checkpoint = -math.inf   # when the last upload ended (monotonic)
        self._upload_s = 0.0                 # how long it took
        self._study_uploaded = False
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        self.write_errors: list[str] = []
        self._t0 = time.time()
        self._wall: dict[int, float] = {}    # trial number -> seconds since this session's start, when it finished
        self._start_ms = int(time.time() * 1000)  # the parent's start: metric timestamps count from it
        self.next_number = 0                 # one past the highest trial step already in the store (set on reopen)

    # -- the parent run ------------------------------------------------------------------------
    def start(self, info: Mapping[str, Any]) -> str:
        self.experiment_id = self._experiment_id()
        tags = {**self._source, "tradeoff.kind": "study", "tradeoff.trials": self.trials, **_version_tags(),
                **_machine_tags()}
        space = dict(info.get("space") or {})
        tags["space"] = _clip(json.dumps(space), TAG_LIMIT)
        if info.get("recipe_path"):
            tags["recipe_path"] = str(info["recipe_path"])
        tags.update(grouping_tags(info, info.get("spec") or {}))
        self._t0 = time.time()
        run = self.client.create_run(self.experiment_id, tags=tags, run_name=self.run_name)
        self.run_id = run.info.run_id
        self._start_ms = run.info.start_time
        params = flatten(info.get("spec") or {})
        skip = {"spec", "space", "recipe_path", "recipe_text", "resolved"}
        for k, v in flatten({k: v for k, v in info.items() if k not in skip}).items():
            params.setdefault(k, v)
        self._batch(self.run_id, params={k: _clip(_text(v), PARAM_LIMIT) for k, v in params.items()},
                    tags={"tradeoff.run_dir": str(run_dir_for(self.run_id))})
        self.client.log_dict(self.run_id, space, "space.json")
        text = info.get("recipe_text")
        if text is None and info.get("recipe_path") and Path(info["recipe_path"]).is_file():
            text = Path(info["recipe_path"]).read_text()
        if text is not None:
            self.client.log_text(self.run_id, str(text), "recipe.yaml")
        if info.get("resolved") is not None:
            self.client.log_text(self.run_id, _yaml(info["resolved"]), "resolved.yaml")
        return self.run_id

    def shared_reference(self, objectives) -> dict[str, float] | None:
        """The experiment's reference point for these objectives, fixed by its first run (None before)."""
        from .reference import read_shared_reference

        return read_shared_reference(self.client, self.experiment_id, objectives)

    def reopen(self, run_id: str) -> None:
        """Resume logging under ``run_id``; children of trials the local log lacks (logged after the
        checkpoint that was resumed, e.g. before a ``kill -9``) are deleted, since they run again."""
        run = self.client.get_run(run_id)
        self.run_id, self.experiment_id = run_id, run.info.experiment_id
        self._start_ms = run.info.start_time
        if self.trials != "none":  # a run keeps the way it logged trials when it started (older runs: children)
            self.trials = run.data.tags.get("tradeoff.trials", "children")
        self.client.update_run(run_id, status="RUNNING")
        from .reconcile import reconcile

        self.reconciled = reconcile(self, load_trials(run_dir_for(run_id)))

    def children(self) -> list:
        """This search's trial runs, oldest first."""
        out, token = [], None
        while True:
            page = self.client.search_runs([self.experiment_id], f"tags.mlflow.parentRunId = '{self.run_id}'",
                                           max_results=1000, order_by=["attributes.start_time ASC"], page_token=token)
            out.extend(page)
            token = page.token
            if not token:
                return out

    def note_end(self, status: str, reason: str) -> None:
        """Say on the parent why it ended as it did (a failure's reason, an interruption)."""
        if self.run_id is not None:
            self.client.set_tag(self.run_id, "tradeoff.end", _clip(f"{status}: {reason}", TAG_LIMIT))

    def finish(self, status: str) -> None:
        self.flush()
        if self.run_id is not None:
            self.client.set_terminated(self.run_id, status)

    # -- per trial / per batch -----------------------------------------------------------------
    def log_trial(self, trial: Trial) -> None:
        """Queue the trial's child run; a writer thread logs it, so the search never waits on the store."""
        if self.run_id is None:
            return
        self._wall[trial.number] = time.time() - self._t0
        if self.log_trials:
            self._writer().put(trial)

    def flush(self) -> None:
        """Wait until every queued trial is logged (called before the end, a resume and a comparison)."""
        if self._queue is not None:
            self._queue.put(None)
            self._thread.join()
            self._queue = self._thread = None
        if self.write_errors:
            import warnings

            warnings.warn(f"MLflow: {len(self.write_errors)} trial(s) were not logged: {self.write_errors[0]}",
                          stacklevel=2)
            self.write_errors = []

    def _writer(self) -> queue.Queue:
        if self._queue is None:
            self._queue = queue.Queue()
            self._thread = threading.Thread(target=self._write_trials, args=(self._queue,), daemon=True,
                                            name="tradeoff-mlflow-trials")
            self._thread.start()
        return self._queue

    def _write_trials(self, q: queue.Queue) -> None:
        """Log what is queued: in ``steps`` mode everything waiting at once, in as few calls as MLflow allows."""
        done = False
        while not done:
            batch = [q.get()]
            while batch[-1] is not None and len(batch) < BATCH_METRICS:
                try:
                    batch.append(q.get_nowait())
                except queue.Empty:
                    break
            if batch[-1] is None:
                done = True
                batch.pop()
            if not batch:
                continue
            try:
                if self.trials == "children":
                    for trial in batch:
                        self._log_trial_now(trial)
                else:
                    self._log_trial_steps(batch)
            except Exception as e:  # noqa: BLE001 - a store hiccup must not stop the search
                self.write_errors.append(f"trials {batch[0].number}-{batch[-1].number}: {type(e).__name__}: {e}")

    def _log_trial_steps(self, trials: list[Trial]) -> None:
        """Trials as metrics on the parent, step = trial number, in ``log_batch`` calls of up to 1,000 points."""
        t0 = time.perf_counter()
        ms = [m for t in trials for m in trial_metrics(t, self._start_ms)]
        for i in range(0, len(ms), BATCH_METRICS):
            self.client.log_batch(self.run_id, metrics=ms[i:i + BATCH_METRICS])
        self.trial_seconds += time.perf_counter() - t0
        self.trials_logged += len(trials)

    def _log_trial_now(self, trial: Trial, front: bool | None = None) -> None:
        """One trial as a child run (every trial in ``children`` mode; the front and baselines in ``steps``)."""
        t0 = time.perf_counter()
        now = int(time.time() * 1000)
        tags = {**self._source, "mlflow.parentRunId": self.run_id, "tradeoff.kind": "trial",
                "trial": str(trial.number), "key": trial.key, "batch": str(trial.batch), "state": trial.state,
                "feasible": str(bool(trial.feasible)).lower()}
        if front is not None:
            tags["front"] = str(front).lower()
        if trial.reason:
            tags["reason"] = _clip(trial.reason, TAG_LIMIT)
        if getattr(trial, "baseline", None):
            tags["baseline"] = trial.baseline
        if getattr(trial, "stands_in_for", None):
            tags["stands_in_for"] = _clip(json.dumps(trial.stands_in_for, sort_keys=True), TAG_LIMIT)
        run = self.client.create_run(self.experiment_id, start_time=now - int(trial.duration_s * 1000), tags=tags,
                                     run_name=f"baseline-{trial.baseline}" if getattr(trial, "baseline", None)
                                     else f"trial-{trial.number}")
        child = run.info.run_id
        params, long = config_params(trial.config)
        metrics = {**trial.metrics, "duration_s": trial.duration_s}
        self._batch(child, params=params, metrics=metrics, timestamp=now)
        if long:
            self.client.log_text(child, json.dumps(trial.config, indent=1), "config.json")
        self._end(child, "FINISHED" if trial.ok else "FAILED", now)
        if front is None:  # a trial's own logging (the front's children at the end are counted apart)
            self.trial_seconds += time.perf_counter() - t0
            self.trials_logged += 1

    def log_checkpoint(self, run_dir: Path, force: bool = False) -> None:
        """Upload the run's log, so the search can resume on another machine without re-running trials.

        Called after every trial. It uploads whenever the last upload's cost is at most ``UPLOAD_SHARE`` of the
        time since (so after every trial of a search whose trials take seconds, and rarely when they take
        milliseconds, where re-running them costs nothing), at least every ``checkpoint_every_s``, and at the
        end. ``study.json`` (what is searched) goes up once per start or resume, ``trials.jsonl`` each time.
        """
        if self.run_id is None:
            return
        now = time.monotonic()
        wait = min(self.checkpoint_every_s, self._upload_s * (1 - UPLOAD_SHARE) / UPLOAD_SHARE)
        if not force and now - self._last_checkpoint < wait:
            return
        for name in CHECKPOINT_FILES:
            path = Path(run_dir) / name
            if path.exists() and (name != "study.json" or not self._study_uploaded or force):
                self.client.log_artifact(self.run_id, str(path), "checkpoint")
                self._study_uploaded |= name == "study.json"
        self._last_checkpoint = time.monotonic()
        self._upload_s = self._last_checkpoint - now

    # -- the end -------------------------------------------------------------------------------
    def log_front(self, front: Front, run_dir: Path) -> None:
        """Write the front's tables and plots into the run directory, then log them on the parent."""
        if self.run_id is None:
            return
        self.flush()
        from .run_files import write_run_files

        for path in write_run_files(front, run_dir, title=self.run_name):
            self.client.log_artifact(self.run_id, str(path))
        self.log_checkpoint(run_dir, force=True)  # trials.jsonl now holds the trials after the last checkpoint too
        if self.trials == "steps":
            from .reconcile import sync_front_children

            sync_front_children(self, front)
        n = len(front.trials)
        infeasible = sum(1 for t in front.trials if t.ok and not t.feasible)
        metrics = {"hypervolume": front.hypervolume(), "front_size": len(front.members), "n_trials": n,
                   "n_failed": len(front.failed), "n_infeasible": infeasible}
        tags = {"mlflow.note.content": front.summary(),
                "reference_point": _clip(json.dumps(front.reference()), TAG_LIMIT)}
        tags.update(self._shared_reference_tags(front, metrics))
        metrics.update(summary_metrics(front, time.time() - self._t0))
        rows = curves(front, self._wall)
        if rows:  # the curve's last point is the final hypervolume, at the same step
            metrics.pop("hypervolume")
            self._log_steps(rows)
        self._batch(self.run_id, metrics=metrics, tags=tags, step=n)

    def _log_steps(self, rows) -> None:
        """Step-wise curves (step = trials done) in as few log_batch calls as MLflow allows."""
        # distinct timestamps keep each point; derived from the step, so a resumed run repeats, not duplicates, them
        ms = [Metric(_key(k), v, self._start_ms + step, step) for k, v, step in rows]
        for i in range(0, len(ms), BATCH_METRICS):
            self.client.log_batch(self.run_id, metrics=ms[i:i + BATCH_METRICS])

    def _shared_reference_tags(self, front: Front, metrics: dict) -> dict[str, str]:
        """Fix the experiment's reference with the first run's; add this run's own hypervolume beside it."""
        from .reference import record_shared_reference

        ref = front.reference()
        if record_shared_reference(self.client, self.experiment_id, front.objectives, ref, self.run_id):
            source = front.reference_source or "fixed by this run (nadir +10%)"
        else:
            source = front.reference_source or "this run only"
        tags = {"reference_source": source}
        if front.reference_point is not None and front.members:
            metrics["hypervolume_own"] = front.hypervolume(front.own_reference())
            tags["reference_outside"] = str(front.outside_reference())
        return tags

    # -- helpers -------------------------------------------------------------------------------
    def _experiment_id(self) -> str:
        exp = self.client.get_experiment_by_name(self.experiment)
        if exp is None:
            try:  # the UI opens a model-training experiment on its runs table and charts (not the GenAI overview)
                return self.client.create_experiment(self.experiment, artifact_location=local_artifact_root(self.uri),
                                                     tags={"mlflow.experimentKind": "custom_model_development"})
            except MlflowException:  # created meanwhile by another process
                exp = self.client.get_experiment_by_name(self.experiment)
                if exp is None:
                    raise
        if exp.lifecycle_stage == "deleted":
            self.client.restore_experiment(exp.experiment_id)
        return exp.experiment_id

    def _end(self, run_id: str, status: str, end_time: int) -> None:
        """Terminate a child run with its status and end time."""
        self.client.set_terminated(run_id, status, end_time=end_time)

    def _batch(self, run_id: str, params: Mapping[str, str] = (), metrics: Mapping[str, float] = (),
               tags: Mapping[str, str] = (), timestamp: int | None = None, step: int = 0) -> None:
        """One log_batch when it fits MLflow's limits (the usual case), else several."""
        ts = timestamp or int(time.time() * 1000)
        ps = [Param(k, v) for k, v in {_key(k): str(v) for k, v in reversed(dict(params).items())}.items()]
        ms = [Metric(k, v, ts, step) for k, v in {_key(k): float(v) for k, v in dict(metrics).items()}.items()]
        ts_ = [RunTag(k, str(v)) for k, v in dict(tags).items()]
        while ps or ms or ts_:
            p, ps = ps[:BATCH_PARAMS_TAGS], ps[BATCH_PARAMS_TAGS:]
            t, ts_ = ts_[:BATCH_PARAMS_TAGS - len(p)], ts_[BATCH_PARAMS_TAGS - len(p):]
            m, ms = ms[:BATCH_METRICS - len(p) - len(t)], ms[BATCH_METRICS - len(p) - len(t):]
            self.client.log_batch(run_id, metrics=m, params=p, tags=t)


# -- reading back -------------------------------------------------------------------------------
def read_run(run_id: str, uri: str | None = None) -> dict:
    """A parent run as plain data, for ``tradeoff show`` when the local run directory is gone."""
    client = open_client(uri or default_tracking_uri())
    run = client.get_run(run_id)
    exp = client.get_experiment(run.info.experiment_id)
    return {
        "run_id": run_id,
        "experiment": exp.name if exp else run.info.experiment_id,
        "name": run.info.run_name,
        "status": run.info.status,
        "params": dict(run.data.params),
        "metrics": dict(run.data.metrics),
        "tags": {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")},
        "artifacts": list_artifacts(client, run_id),
    }


def list_artifacts(client: MlflowClient, run_id: str, path: str | None = None) -> list[str]:
    out = []
    for f in client.list_artifacts(run_id, path):
        out.extend(list_artifacts(client, run_id, f.path) if f.is_dir else [f.path])
    return out


def download_checkpoint(run_id: str, dest_dir: str | Path, uri: str | None = None) -> Path:
    """Fetch a run's ``checkpoint/`` into ``dest_dir`` (its run directory), to resume it elsewhere."""
    client = open_client(uri or default_tracking_uri())
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        try:
            local = Path(client.download_artifacts(run_id, "checkpoint", tmp))
        except (MlflowException, OSError) as e:
            raise FileNotFoundError(f"run {run_id!r} has no checkpoint in {client.tracking_uri}: {e}") from None
        if not (local / "study.json").exists():
            raise FileNotFoundError(f"run {run_id!r} has no checkpoint/study.json in {client.tracking_uri}")
        for name in CHECKPOINT_FILES:  # never a pickle: whatever else is there is left behind
            if (local / name).exists():
                os.replace(local / name, dest / name)
    return dest


# -- what gets logged ---------------------------------------------------------------------------
def trial_metrics(trial: Trial, start_ms: int) -> list[Metric]:
    """A trial as points at step = its number: ``trial.<metric>``, duration, failed, feasible (its choices are in
    ``trials.csv`` and the front's children: each point costs the store ~0.2 ms)."""
    ts, step = start_ms + trial.number, trial.number
    values: dict[str, float] = {f"trial.{k}": v for k, v in trial.metrics.items()}
    values["trial.duration_s"] = trial.duration_s
    values["trial.failed"] = 0.0 if trial.ok else 1.0
    values["trial.feasible"] = 1.0 if trial.feasible else 0.0
    return [Metric(_key(k), float(v), ts, step) for k, v in values.items()]  # metrics are floats (check_metrics)


def config_params(config: Mapping[str, Any]) -> tuple[dict[str, str], bool]:
    """A trial's choices as params; a long value (a mask's bits) becomes its length, density and hash."""
    params: dict[str, str] = {}
    long = False
    for name, value in config.items():
        text = _text(value)
        if len(text) <= LONG_VALUE:
            params[name] = text
            continue
        long = True
        params[f"{name}.len"] = str(len(text))
        if set(text) <= {"0", "1"}:
            params[f"{name}.density"] = f"{text.count('1') / len(text):.4f}"
        params[f"{name}.sha1"] = hashlib.sha1(text.encode()).hexdigest()[:12]
    return params, long


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys; objectives and constraints (lists of records) by their name."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if k == "objectives" and isinstance(v, list) and all(isinstance(o, Mapping) and "name" in o for o in v):
            out.update({f"{key}.{o['name']}": o.get("direction", "minimize") for o in v})
        elif k == "constraints" and isinstance(v, list) and all(isinstance(c, Mapping) and "metric" in c for c in v):
            out.update({f"{key}.{c['metric']}": f"{c['op']} {c['bound']:g}" for c in v})
        elif isinstance(v, Mapping):
            out.update(flatten(v, key + ".") if v else {key: "{}"})
        else:
            out[key] = v
    return out


def _version_tags() -> dict[str, str]:
    """Installed versions from package metadata (nothing is imported for them)."""
    out = {}
    for name, dists in VERSIONED.items():
        for dist in dists:
            try:
                out[f"version.{name}"] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
    if "version.tradeoff" not in out:  # run from a source tree
        from ..core.version import __version__

        out["version.tradeoff"] = __version__
    out["version.python"] = platform.python_version()
    return out


def _machine_tags() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    return {"machine.platform": platform.platform(), "machine.cpu": cpu, "machine.cores": str(os.cpu_count()),
            "machine.cores_usable": str(usable), "machine.hostname": socket.gethostname()}


def _source_tags() -> dict[str, str]:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return {"mlflow.user": user, "mlflow.source.name": os.path.basename(sys.argv[0] or "python") or "python",
            "mlflow.source.type": "LOCAL"}


def _text(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, default=str)


def _clip(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 3] + "..."


def _key(k: str) -> str:
    """A name MLflow accepts (letters, digits, _ - . space : /), never a path outside the run."""
    k = re.sub(r"[^\w.\- :/]", "_", str(k)).strip("/") or "_"
    return k.replace("..", "__")


def _yaml(data: Any) -> str:
    import yaml

    if isinstance(data, str):
        return data
    return yaml.safe_dump(json.loads(json.dumps(data, default=str)), sort_keys=False)
