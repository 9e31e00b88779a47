"""Comparing searches: curves by step, table-view metrics and tags, `tradeoff compare` and to.compare."""

from __future__ import annotations

import csv

import pytest
from mlflow.tracking import MlflowClient

import tradeoff
from tradeoff import Choice, Float, Space
from tradeoff.cli import main

OBJ = {"f1": "minimize", "f2": "minimize"}
SPACE = Space({"x": Float(0.0, 1.0), "k": Choice([1, 2, 3])})


def zdt_like(c):
    return {"f1": c["x"], "f2": c["k"] * (1 - c["x"] ** 0.5) + c["k"]}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two searches in one experiment of one store (creating a store takes seconds)."""
    root = tmp_path_factory.mktemp("cmp")
    uri = f"sqlite:///{root}/c.db"
    track = {"uri": uri, "experiment": "cmp"}
    with pytest.MonkeyPatch.context() as mp:  # before the per-test run store exists: give these runs one of their own
        mp.setenv("TRADEOFF_HOME", str(root / ".tradeoff"))
        a = tradeoff.search(SPACE, OBJ, zdt_like, budget=20, algorithm="random", seed=0, tracking=track)
        b = tradeoff.search(SPACE, OBJ, zdt_like, budget=20, algorithm="nsga2", seed=1, tracking=track)
    return uri, a, b


def test_parent_runs_carry_step_curves_summaries_and_grouping_tags(runs):
    uri, a, b = runs
    client = MlflowClient(uri)
    hist = client.get_metric_history(b.run_id, "hypervolume")
    assert [m.step for m in sorted(hist, key=lambda m: m.step)] == list(range(1, 21))
    curve = b.hypervolume_curve()
    assert [m.value for m in sorted(hist, key=lambda m: m.step)] == pytest.approx(list(curve))
    best = client.get_metric_history(b.run_id, "best_f1")
    assert min(m.value for m in best) == pytest.approx(b.best()["f1"])
    assert len(client.get_metric_history(b.run_id, "wall_clock_s")) == 20
    m = client.get_run(b.run_id).data.metrics
    knee = b.knee()
    assert m["knee_f1"] == knee.metrics["f1"] and m["best_f2"] == b.best()["f2"]
    assert m["trials_per_min"] > 0 and 1 <= m["evals_to_95pct_hv"] <= 20
    assert m["hypervolume"] == pytest.approx(b.hypervolume())
    tags = client.get_run(b.run_id).data.tags
    assert tags["algorithm"] == "nsga2" and tags["seed"] == "1" and "target" in tags


def test_compare_cli_and_api_table_overlays_and_comparison_run(runs, tmp_path, capsys):
    uri, a, b = runs
    assert main(["compare", a.run_id, b.run_id, "--uri", uri, "--out", str(tmp_path / "cli")]) == 0
    out = capsys.readouterr().out
    assert "random" in out and "nsga2" in out and "(experiment cmp)" in out
    c = tradeoff.compare([a.run_id, b.run_id], uri=uri, out_dir=tmp_path / "api")
    assert c.reference == pytest.approx(a.reference())  # the experiment's shared point, fixed by the first run
    assert [r["hypervolume"] for r in c.rows] == pytest.approx([a.hypervolume(c.reference), b.hypervolume(c.reference)])
    assert [r["front"] for r in c.rows] == [len(a.members), len(b.members)]
    for p in (c.fronts_png, c.hypervolume_png):
        assert p.read_bytes()[:4] == b"\x89PNG"
    with open(c.table_csv) as f:
        assert [r["algorithm"] for r in csv.DictReader(f)] == ["random", "nsga2"]
    client = MlflowClient(uri)
    run = client.get_run(c.run_id)
    assert run.data.tags["tradeoff.kind"] == "comparison" and run.data.tags["compared_runs"] == f"{a.run_id},{b.run_id}"
    names = {f.path for f in client.list_artifacts(c.run_id)}
    assert {"compare_fronts.png", "compare_hypervolume.png", "compare.csv"} <= names


def test_compare_an_experiments_latest_searches_by_its_name(runs, tmp_path, capsys):
    uri, a, b = runs
    assert main(["compare", "--experiment", "cmp", "--uri", uri, "--no-log", "--out", str(tmp_path / "all")]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("│")]
    assert [a.run_id in rows[0], b.run_id in rows[1]] == [True, True] and len(rows) == 2  # searches only, oldest first
    assert main(["compare", "--experiment", "cmp", "--last", "1", "--uri", uri, "--no-log",
                 "--out", str(tmp_path / "one")]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("│")]
    assert len(rows) == 1 and b.run_id in rows[0]
    assert main(["compare", "--experiment", "nope", "--uri", uri]) == 2
    assert "no experiment 'nope' in" in capsys.readouterr().err
    assert main(["compare"]) == 2 and "give run ids to compare, or --experiment NAME" in capsys.readouterr().err
    assert main(["compare", "--experiment", "cmp", "--last", "0", "--uri", uri]) == 2
    assert "--last 0: give how many of the experiment's searches to compare, 1 or more" in capsys.readouterr().err
    assert main(["runs", "--last", "-2"]) == 2 and "--last -2: give how many runs" in capsys.readouterr().err


def test_compare_refuses_unknown_runs_with_a_line(runs, capsys):
    uri, a, _ = runs
    assert main(["compare", a.run_id, "nosuchrun", "--uri", uri, "--no-log"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "no run 'nosuchrun' in the MLflow store" in err and "nor in the local run store" in err


def test_runs_made_with_tracking_off_are_compared_from_their_local_run_directories(runs, tmp_path, capsys):
    uri, a, _ = runs
    u1 = tradeoff.search(SPACE, OBJ, zdt_like, budget=12, algorithm="random", seed=3, tracking=None, progress=False)
    u2 = tradeoff.search(SPACE, OBJ, zdt_like, budget=12, algorithm="nsga2", seed=4, tracking=None, progress=False)
    client = MlflowClient(uri)
    before = len(client.search_runs([client.get_experiment_by_name("cmp").experiment_id]))
    # every run untracked: scored at their nadir, written out, and not logged anywhere
    assert main(["compare", u1.run_id, u2.run_id, "--uri", uri, "--out", str(tmp_path / "local")]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "nadir of the compared runs +10%" in out and "not logged to MLflow" in out
    assert "random" in out and "nsga2" in out
    c = tradeoff.compare([u1.run_id, u2.run_id], uri=uri, out_dir=tmp_path / "api")
    assert c.run_id is None and c.experiment is None
    assert [r["algorithm"] for r in c.rows] == ["random", "nsga2"] and [r["seed"] for r in c.rows] == ["3", "4"]
    assert [r["hypervolume"] for r in c.rows] == pytest.approx([u1.hypervolume(c.reference), u2.hypervolume(c.reference)])
    assert [r["trials"] for r in c.rows] == [12, 12]
    missing = tmp_path / "none.db"   # no store there: compared all the same, and none is made
    assert tradeoff.compare([u1.run_id, u2.run_id], uri=f"sqlite:///{missing}", out_dir=tmp_path / "x").rows
    assert not missing.exists()
    # one tracked, one not: the tracked run's experiment gives the reference and takes the comparison run
    m = tradeoff.compare([a.run_id, u1.run_id], uri=uri, out_dir=tmp_path / "mixed")
    assert m.reference == pytest.approx(a.reference()) and m.reference_source == "experiment cmp"
    assert client.get_run(m.run_id).data.tags["compared_runs"] == f"{a.run_id},{u1.run_id}"
    assert len(client.search_runs([client.get_experiment_by_name("cmp").experiment_id])) == before + 1
