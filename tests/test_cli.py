import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import subprocess_env

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))


def tradeoff(tmp_path, *args, timeout=300):
    return subprocess.run([sys.executable, "-m", "tradeoff.cli", *args], capture_output=True, text=True,
                          env=subprocess_env(tmp_path), cwd=tmp_path, timeout=timeout)


def test_run_show_end_to_end_with_default_store(tmp_path):
    out = tradeoff(tmp_path, "run", str(ROOT / "recipes" / "demo.yaml"), "--set", "search.budget=30")
    assert out.returncode == 0, out.stderr
    assert "Pareto front" in out.stdout and "accuracy ↑" in out.stdout and "latency_ms ↓" in out.stdout
    assert "trials 30/30" in out.stderr  # progress lines (stderr is not a terminal here)
    run_id = re.search(r"run id: (\w+)", out.stdout).group(1)
    assert (tmp_path / "mlflow.db").exists()
    show = tradeoff(tmp_path, "show", run_id, "--all")
    assert show.returncode == 0, show.stderr
    assert "status: finished" in show.stdout
    # the front printed by show is the one printed by run
    rows = lambda s: [line for line in s.splitlines() if line.startswith("│")]  # noqa: E731
    assert rows(show.stdout)[-len(rows(out.stdout)):] == rows(out.stdout)


def test_a_new_run_logs_where_uri_says(tmp_path):
    """`--uri` on a new run is its tracking store (it was ignored, and the run went to ./mlflow.db)."""
    store = f"sqlite:///{tmp_path}/elsewhere.db"
    out = tradeoff(tmp_path, "run", "zdt1", "--set", "search.budget=8", "--uri", store, "-q")
    assert out.returncode == 0, out.stderr
    run_id = re.search(r"run id: (\w+)", out.stdout).group(1)
    assert f"tradeoff run --resume {run_id} --uri {store}" in out.stdout + out.stderr
    assert (tmp_path / "elsewhere.db").exists() and not (tmp_path / "mlflow.db").exists()
    from mlflow.tracking import MlflowClient

    assert MlflowClient(store).get_run(run_id).data.metrics


def test_recipes_validate_ui_and_errors(tmp_path):
    out = tradeoff(tmp_path, "recipes")
    assert out.returncode == 0
    for r in RECIPES:
        assert r.stem in out.stdout
    v = tradeoff(tmp_path, "validate", "demo")
    assert v.returncode == 0 and "ok: demo-nasbench-graph searches nasbench_graph:cora" in v.stdout
    ui = tradeoff(tmp_path, "ui", "--dry-run", "--port", "5123")
    assert ui.returncode == 0 and "mlflow ui --backend-store-uri" in ui.stdout and "--port 5123" in ui.stdout
    missing = tradeoff(tmp_path, "run", "no-such-recipe")
    assert missing.returncode == 2 and "recipe 'no-such-recipe' not found" in missing.stderr
    nores = tradeoff(tmp_path, "run", "--resume", "nope")
    assert nores.returncode == 2 and "nope" in nores.stderr


# recipes whose workload trains a model for minutes: a briefly trained one is enough to show they run
QUICK = {"ecad_tiny_pixart": ["workload.train_steps=20", "workload.seeds=[0]", "workload.timing_repeats=1"],
         "digits_ofa": ["workload.train_steps=30"], "digits_joint": ["workload.train_steps=30", "workload.finetune_steps=3"],
         "digits_timm_family": ["workload.steps=[4,8]"],
         "digits_compress": ["workload.finetune_steps=10"], "digits_prune": ["workload.finetune_steps=10"]}


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.stem for r in RECIPES])
def test_every_shipped_recipe_runs(tmp_path, recipe):
    data = yaml.safe_load(recipe.read_text())
    # recipes that compile and time real models get fewer trials; TVM compiles each one for seconds
    runtimes = {t.get("runtime") for t in (data.get("targets") or {}).values()}
    small = 2 if "tvm" in runtimes else 4 if runtimes else 20
    budget = min(small, data.get("search", {}).get("budget", small))
    quick = [a for kv in QUICK.get(recipe.stem, []) for a in ("--set", kv)]
    out = tradeoff(tmp_path, "run", str(recipe), "-q", "--set", f"search.budget={budget}", "--set", "tracking=false",
                   *quick)
    assert out.returncode == 0, out.stderr
    m = re.search(r"(\d+) trials \((\d+) failed", out.stdout)
    assert m and int(m.group(1)) == budget
