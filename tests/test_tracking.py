"""MLflow tracking of real searches, read back through MlflowClient: a SQLite store and a real server."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

import tradeoff
from tradeoff import Float, Mask, Space, TrialError
from tradeoff.engine.study import load_trials, run_dir_for
from tradeoff.tracking.mlflow import (
    MlflowTracker,
    config_params,
    default_tracking_uri,
    download_checkpoint,
    flatten,
    list_artifacts,
    read_run,
)
from tradeoff.tracking.plots import plot_front, plot_hypervolume

BUDGET = 24
SPACE = Space({"x": Float(0.0, 1.0), "y": Float(0.0, 1.0)})
OBJECTIVES = {"f1": "minimize", "f2": "minimize"}
CONSTRAINTS = {"f2": "<= 1.0"}
PARENT_ARTIFACTS = {"front.csv", "front.json", "trials.csv", "front.png", "hypervolume.png", "space.json",
                    "checkpoint/trials.jsonl", "checkpoint/study.json"}


def evaluate(config):
    x, y = config["x"], config["y"]
    if x > 0.85:
        raise TrialError("x is beyond the model's range")
    if y < 0.1:
        raise RuntimeError("simulated crash")
    if y > 0.9:
        return {"f1": math.nan, "f2": 0.0}  # recorded as failed: "f1 is nan"
    return {"f1": x, "f2": 1.0 - math.sqrt(x) + y, "extra": x * y}


def search(tracking, budget=BUDGET, evaluate=evaluate, **kw):
    return tradeoff.search(SPACE, OBJECTIVES, evaluate, budget=budget, algorithm="random", seed=3,
                           constraints=CONSTRAINTS, tracking=tracking, name="tiny", batch_size=8, **kw)


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("TRADEOFF_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path / "home"


def children(client: MlflowClient, run_id: str) -> dict[str, object]:
    exp = client.get_run(run_id).info.experiment_id
    runs = client.search_runs([exp], f"tags.mlflow.parentRunId = '{run_id}'", max_results=1000)
    names = [r.info.run_name for r in runs]
    assert len(names) == len(set(names)), "one child run per trial"
    return {r.info.run_name: r for r in runs}


def check_steps(client: MlflowClient, run_id: str, front, orphans: frozenset = frozenset()) -> None:
    """steps mode: each trial's metrics at step = its number on the parent; children = the front's members."""
    def history(key):
        return {m.step: m.value for m in client.get_metric_history(run_id, key)}

    duration, failed, f1 = history("trial.duration_s"), history("trial.failed"), history("trial.f1")
    assert set(duration) == {t.number for t in front.trials} | orphans
    for t in front.trials:
        assert duration[t.number] == pytest.approx(t.duration_s)
        assert failed[t.number] == (0.0 if t.ok else 1.0)
        if t.ok:
            assert f1[t.number] == pytest.approx(t.metrics["f1"])
    kids = children(client, run_id)
    assert sorted(int(r.data.tags["trial"]) for r in kids.values()) == sorted(t.number for t in front.members)
    for t in front.members:
        run = kids[f"trial-{t.number}"]
        assert run.data.tags["front"] == "true" and run.info.status == "FINISHED"
        assert {k: run.data.metrics[k] for k in t.metrics} == pytest.approx(t.metrics)
    reasons = pd.read_csv(Path(client.download_artifacts(run_id, "trials.csv")))["reason"].dropna().tolist()
    assert "x is beyond the model's range" in reasons and "f1 is nan" in reasons
    # one hypervolume a step, at the run's reference: a resumed run's curve is not logged twice at two points
    hv = sorted(client.get_metric_history(run_id, "hypervolume"), key=lambda m: m.step)
    assert [m.step for m in hv] == list(range(1, len(front.trials) + 1))
    assert [m.value for m in hv] == pytest.approx(list(front.hypervolume_curve()))


def check_logged(client: MlflowClient, run_id: str, front, tmp_path: Path, mode: str = "children",
                 orphans: frozenset = frozenset()) -> None:
    """The parent, the trials (per ``mode``) and the artifacts, as a user would find them in MLflow."""
    parent = client.get_run(run_id)
    assert parent.info.status == "FINISHED" and parent.info.run_name == "tiny"
    p, tags, m = parent.data.params, parent.data.tags, parent.data.metrics
    assert p["seed"] == "3" and p["algorithm"] == "random" and p["budget"] == str(BUDGET)
    assert p["objectives.f1"] == "minimize" and p["constraints.f2"] == "<= 1"
    assert json.loads(tags["space"]) == SPACE.describe()
    assert tags["version.tradeoff"] and tags["version.mlflow"] and tags["machine.hostname"]
    assert m["n_trials"] == BUDGET and m["n_failed"] == len(front.failed) > 0
    assert m["front_size"] == len(front.members) > 0
    assert m["hypervolume"] == pytest.approx(front.hypervolume())

    assert parent.data.tags["tradeoff.trials"] == mode
    if mode == "steps":
        check_steps(client, run_id, front, orphans)
        kids = {}
    else:
        kids = children(client, run_id)
        assert len(kids) == BUDGET
    for t in front.trials if kids else []:
        run = kids[f"trial-{t.number}"]
        assert {k: float(v) for k, v in run.data.params.items()} == pytest.approx(t.config)
        assert run.data.tags["state"] == t.state and run.data.tags["key"] == t.key
        assert run.data.tags["feasible"] == str(t.feasible).lower()
        assert run.data.metrics["duration_s"] == pytest.approx(t.duration_s)
        if t.ok:
            assert run.info.status == "FINISHED" and "reason" not in run.data.tags
            assert {k: run.data.metrics[k] for k in t.metrics} == pytest.approx(t.metrics)
        else:
            assert run.info.status == "FAILED" and run.data.tags["reason"] == t.reason
    reasons = {kids[f"trial-{t.number}"].data.tags["reason"] for t in front.failed} if kids else {
        "x is beyond the model's range", "RuntimeError", "f1 is nan"}
    assert "x is beyond the model's range" in reasons and any(r.startswith("RuntimeError") for r in reasons)
    assert "f1 is nan" in reasons

    assert PARENT_ARTIFACTS <= set(list_artifacts(client, run_id))
    local = Path(client.download_artifacts(run_id, "", str(tmp_path / "downloaded")))
    table = pd.read_csv(local / "front.csv")
    assert table["trial"].tolist() == [t.number for t in front.members]
    assert table[["f1", "f2"]].to_numpy().ravel().tolist() == pytest.approx(
        [t.metrics[n] for t in front.members for n in ("f1", "f2")])
    assert json.loads((local / "front.json").read_text())["hypervolume"] == pytest.approx(front.hypervolume())
    assert len(pd.read_csv(local / "trials.csv")) == BUDGET
    for png in ("front.png", "hypervolume.png"):
        assert (local / png).read_bytes()[:4] == b"\x89PNG"
    assert len(load_trials(local / "checkpoint")) == BUDGET
    # the local run directory holds the same files
    assert all((run_dir_for(run_id) / f).exists() for f in ("front.csv", "trials.csv", "front.png", "hypervolume.png"))


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[str, Path]:
    """One SQLite store for the tests that don't need their own (creating one takes seconds)."""
    root = tmp_path_factory.mktemp("store")
    return f"sqlite:///{root / 'mlflow.db'}", root


@pytest.mark.parametrize("mode", ["steps", "children"])
def test_search_logged_to_sqlite_store(tmp_path, store, mode):
    uri, root = store
    tracker = MlflowTracker(uri=uri, experiment="t", run_name="tiny", trials=mode)
    front = search(tracker)
    assert len(front.trials) == BUDGET and any(not t.feasible for t in front.complete)
    client = MlflowClient(uri)
    check_logged(client, tracker.run_id, front, tmp_path, mode)
    assert client.get_experiment_by_name("t").artifact_location == (root / "mlruns").as_uri()
    assert (root / "mlruns" / tracker.run_id / "artifacts" / "front.csv").exists()

    info = read_run(tracker.run_id, uri)
    assert info["experiment"] == "t" and info["status"] == "FINISHED" and info["params"]["seed"] == "3"
    assert info["metrics"]["n_trials"] == BUDGET and PARENT_ARTIFACTS <= set(info["artifacts"])
    ms = 1000 * tracker.trial_seconds / tracker.trials_logged
    print(f"\nlogging cost: {ms:.1f} ms per trial (sqlite)")


def test_default_store_and_long_values(tmp_path, monkeypatch):
    """tracking="default": mlflow.db + mlruns/ in the working directory; a mask's bits go to config.json."""
    monkeypatch.chdir(tmp_path)
    assert default_tracking_uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"
    space = Space({"mask": Mask(300, p=0.3), "x": Float(0.0, 1.0)})

    def cost(config):
        bits = config["mask"]
        return {"kept": float(bits.mean()), "err": float(config["x"] + (1 - bits.mean()) ** 2)}

    front = tradeoff.search(space, {"kept": "minimize", "err": "minimize"}, cost, budget=4, algorithm="random",
                            tracking={"trials": "children"}, name="masks", info={"recipe_text": "name: masks\n",
                                                                    "resolved": {"search": {"budget": 4}}})
    assert (tmp_path / "mlflow.db").exists()
    client = MlflowClient(default_tracking_uri())
    exp = client.get_experiment_by_name("tradeoff")
    assert exp.artifact_location == (tmp_path / "mlruns").as_uri()
    parent = client.search_runs([exp.experiment_id], "tags.`tradeoff.kind` = 'study'")[0]
    assert parent.data.params["budget"] == "4" and parent.data.tags["mlflow.runName"] == "masks"
    assert {"recipe.yaml", "resolved.yaml"} <= set(list_artifacts(client, parent.info.run_id))
    resolved = client.download_artifacts(parent.info.run_id, "resolved.yaml", str(tmp_path))
    assert Path(resolved).read_text() == "search:\n  budget: 4\n"
    kids = children(client, parent.info.run_id)
    for t in front.trials:
        run = kids[f"trial-{t.number}"]
        bits = t.config["mask"]
        assert run.data.params["mask.len"] == "300" and "mask" not in run.data.params
        assert float(run.data.params["mask.density"]) == pytest.approx(bits.count("1") / 300, abs=1e-4)
        path = client.download_artifacts(run.info.run_id, "config.json", str(tmp_path / f"c{t.number}"))
        assert json.loads(Path(path).read_text())["mask"] == bits


def test_a_stand_in_for_a_config_the_table_lacks_is_marked_in_mlflow(tmp_path, store):
    """A sparse table answers a config it lacks with its nearest row: the child run's tag and trials.csv
    name the config asked for; the other trials carry no mark."""
    from tradeoff.workloads.table import table_workload

    uri, _ = store
    rows = pd.DataFrame([{"a": a, "b": b, "acc": a + 0.5 * b, "cost": a * a + b}
                         for a in range(4) for b in range(4) if (a, b) != (3, 3)])
    wl = table_workload(rows, params=["a", "b"], metrics=["acc", "cost"],
                        directions={"acc": "maximize", "cost": "minimize"})
    tracker = MlflowTracker(uri=uri, experiment="sparse", run_name="sparse", trials="children")
    front = tradeoff.search(wl.space, {"acc": "maximize", "cost": "minimize"}, wl.evaluate, budget=6,
                            algorithm="motpe", seed=0, tracking=tracker, initial=[{"a": 3, "b": 3}])
    marked = [t for t in front.trials if t.stands_in_for]
    assert len(marked) == 1 and marked[0].stands_in_for == {"a": 3, "b": 3}
    client = MlflowClient(uri)
    kids = children(client, tracker.run_id)
    tags = {t.number: kids[f"trial-{t.number}"].data.tags for t in front.trials}
    assert json.loads(tags[marked[0].number]["stands_in_for"]) == {"a": 3, "b": 3}
    assert sum("stands_in_for" in t for t in tags.values()) == 1
    table = pd.read_csv(Path(client.download_artifacts(tracker.run_id, "trials.csv", str(tmp_path))))
    assert table["stands_in_for"].notna().sum() == 1
    assert json.loads(table.set_index("trial").loc[marked[0].number, "stands_in_for"]) == {"a": 3, "b": 3}


@pytest.mark.parametrize("mode", ["steps", "children"])
def test_interrupted_search_resumes_from_the_store(tmp_path, store, mode):
    """KILLED on Ctrl-C; resumed on 'another machine' from checkpoint/ only, every trial logged once."""
    uri = store[0]
    calls = []

    def interrupting(config):
        calls.append(1)
        if len(calls) == 13:
            raise KeyboardInterrupt
        return evaluate(config)

    tracker = MlflowTracker(uri=uri, experiment=f"resumed-{mode}", run_name="tiny", trials=mode)
    with pytest.raises(KeyboardInterrupt):
        search(tracker, evaluate=interrupting)
    run_id = tracker.run_id
    client = MlflowClient(uri)
    assert client.get_run(run_id).info.status == "KILLED"
    if mode == "children":
        assert len(children(client, run_id)) == 12
    else:
        assert len(client.get_metric_history(run_id, "trial.duration_s")) == 12
    assert client.get_run(run_id).data.metrics["n_trials"] == 12

    # another machine: no run directory, only the store; the last trial's line was lost (kill -9)
    shutil.rmtree(run_dir_for(run_id))
    dest = download_checkpoint(run_id, run_dir_for(run_id), uri)
    assert {p.name for p in dest.iterdir()} == {"trials.jsonl", "study.json"}  # never a pickle
    lines = (dest / "trials.jsonl").read_text().splitlines()
    (dest / "trials.jsonl").write_text("\n".join(lines[:-1]) + "\n")

    # the resuming side does not name the mode: the run keeps the one it started with
    front = search(MlflowTracker(uri=uri, experiment=f"resumed-{mode}", run_name="tiny"), resume=run_id)
    assert len(front.trials) == BUDGET
    if mode == "steps":  # trial 11 reached MLflow but not the checkpoint: it stays there, and is numbered past
        assert sorted(t.number for t in front.trials) == [*range(11), *range(12, BUDGET + 1)]
    check_logged(client, run_id, front, tmp_path, mode, frozenset({11}) if mode == "steps" else frozenset())


def test_config_params_and_flatten():
    params, long = config_params({"bits": "01" * 200, "w": [1, 2], "name": "a"})
    assert long and params["bits.len"] == "400" and params["bits.density"] == "0.5000"
    assert len(params["bits.sha1"]) == 12 and params["w"] == "[1, 2]" and params["name"] == "a"
    assert config_params({"x": 0.5}) == ({"x": "0.5"}, False)
    flat = flatten({"objectives": [{"name": "acc", "direction": "maximize"}],
                    "constraints": [{"metric": "lat", "op": "<=", "bound": 5.0}],
                    "reference_point": {"acc": 0.1}, "seed": 0, "empty": {}})
    assert flat == {"objectives.acc": "maximize", "constraints.lat": "<= 5", "reference_point.acc": 0.1,
                    "seed": 0, "empty": "{}"}


def test_plots_of_empty_and_three_objective_fronts(tmp_path):
    from tradeoff import Constraint, Front, Objective, Trial

    empty = Front([Objective("a"), Objective("b")], [Trial(0, "k", {}, state="failed", reason="boom")])
    trials = [Trial(i, f"k{i}", {}, metrics={"a": i % 5, "b": 5 - i % 5 + i / 10, "c": i / 3}, feasible=i % 4 > 0)
              for i in range(20)]
    three = Front([Objective("a"), Objective("b", "maximize"), Objective("c")], trials, [Constraint("a", "<=", 3)])
    for name, front in (("empty", empty), ("three", three)):
        for plot in (plot_front, plot_hypervolume):
            path = plot(front, tmp_path / f"{name}-{plot.__name__}.png")
            assert path.read_bytes()[:4] == b"\x89PNG"
    assert tradeoff.plot_front is plot_front and tradeoff.plot_hypervolume is plot_hypervolume  # the API's names


# -- a real MLflow server ---------------------------------------------------------------------------
SERVER_TEST = "test_search_logged_to_a_real_server"


class Server:
    """``mlflow server`` on a free local port, in its own process group."""

    def __init__(self, root: Path):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
        env.pop("MLFLOW_TRACKING_URI", None)
        self.url, self.log_path = f"http://127.0.0.1:{port}", root / "server.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{root / 'srv.db'}",
             "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
             "--workers", "1"],
            cwd=root, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def ready(self, timeout: float = 120.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
                    if r.status == 200:
                        return self.url
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def server_process(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("server"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module", autouse=True)
def start_server_early(request):
    """The server takes seconds to start: launch it while the other tests run, if its test is selected."""
    if any(item.name == SERVER_TEST for item in request.session.items):
        request.getfixturevalue("server_process")


@pytest.fixture
def mlflow_server(server_process) -> str:
    return server_process.ready()


@pytest.mark.slow
def test_search_logged_to_a_real_server(mlflow_server, tmp_path):
    front = search({"uri": mlflow_server, "experiment": "t"})
    client = MlflowClient(mlflow_server)
    run_id = client.search_runs([client.get_experiment_by_name("t").experiment_id],
                                "tags.`tradeoff.kind` = 'study'")[0].info.run_id
    check_logged(client, run_id, front, tmp_path, "steps")
    info = read_run(run_id, mlflow_server)
    assert info["status"] == "FINISHED" and PARENT_ARTIFACTS <= set(info["artifacts"])
    dest = download_checkpoint(run_id, tmp_path / "elsewhere", mlflow_server)
    assert len(load_trials(dest)) == BUDGET
