"""Tracking stays out of the way: no MLflow INFO lines, checkpoint uploads on a schedule, trials logged off the loop."""

from __future__ import annotations

import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

import tradeoff
from tradeoff import Float, Space
from tradeoff.tracking.mlflow import MlflowTracker

SPACE = Space({"x": Float(0.0, 1.0)})


def ev(c):
    return {"f1": c["x"], "f2": 1 - c["x"]}


@pytest.mark.slow
def test_a_new_store_prints_no_mlflow_info_lines(tmp_path):
    code = ("import tradeoff as to\n"
            "to.search(to.Space({'x': to.Float(0, 1)}), {'f': 'minimize'}, lambda c: {'f': c['x']}, budget=2,\n"
            f"          algorithm='random', tracking={{'uri': 'sqlite:///{tmp_path}/fresh.db'}})\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "fresh.db").exists()
    assert "INFO" not in out.stderr and "Creating initial MLflow database tables" not in out.stderr


@pytest.mark.slow
def test_checkpoint_of_a_quick_search_is_uploaded_now_and_then_and_at_the_end(tmp_path):
    uri = f"sqlite:///{tmp_path}/s.db"
    tracker = MlflowTracker(uri=uri, experiment="sched", checkpoint_every_s=3600)
    uploads = []
    real = tracker.client.log_artifact

    def counting(run_id, local_path, artifact_path=None):
        if artifact_path == "checkpoint":
            uploads.append(local_path)
        return real(run_id, local_path, artifact_path)

    tracker.client.log_artifact = counting
    front = tradeoff.search(SPACE, {"f1": "minimize", "f2": "minimize"}, ev, budget=40, batch_size=4,
                            algorithm="random", tracking=tracker)
    # what is searched goes up when the run starts and at the end; the log, for trials this quick, only now and
    # then (each upload would cost more than the trials since the last one), and whole at the end
    assert len([u for u in uploads if u.endswith("study.json")]) == 2
    assert 1 <= len([u for u in uploads if u.endswith("trials.jsonl")]) < 20
    client = MlflowClient(uri)
    local = client.download_artifacts(front.run_id, "checkpoint/trials.jsonl", str(tmp_path / "dl"))
    assert len(open(local).read().splitlines()) == 40
    kids = client.search_runs([client.get_experiment_by_name("sched").experiment_id],
                              f"tags.mlflow.parentRunId = '{front.run_id}'", max_results=100)
    assert len(kids) == 40 and not tracker.write_errors


def test_new_stores_start_from_a_migrated_template(tmp_path, monkeypatch):
    """The first store is made by MLflow and kept; the next is a copy, with MLflow's own Default experiment."""
    from tradeoff.tracking import store

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    first = store.open_client(f"sqlite:///{tmp_path}/a.db")
    templates = list((tmp_path / "cache" / "tradeoff" / "mlflow-templates").glob("mlflow-*.db"))
    assert len(templates) == 1 and store._valid(templates[0])
    assert first.get_experiment("0").artifact_location.endswith("mlruns/0")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    second = store.open_client(f"sqlite:///{tmp_path}/b.db")
    assert second.get_experiment("0").artifact_location == str(tmp_path / "elsewhere" / "mlruns" / "0")
    exp = second.create_experiment("t")
    run = second.create_run(exp)
    second.log_metric(run.info.run_id, "m", 1.5)
    assert second.get_run(run.info.run_id).data.metrics == {"m": 1.5}
    assert first.get_experiment_by_name("t") is None   # a copy, not the same database
