import subprocess
import sys

import pytest
import yaml

from conftest import subprocess_env
from tradeoff.recipe import RecipeError, build_workload, load_recipe

GOOD = {
    "name": "t",
    "workload": {"name": "zdt1", "n_var": 3},
    "objectives": {"f1": "minimize", "f2": {"direction": "minimize"}},
    "constraints": {"f1": "<= 0.9"},
    "search": {"algorithm": "nsga2", "budget": 20, "seed": 1},
    "tracking": False,
}


def bad(**changes):
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    for path, value in changes.items():
        node = data
        keys = path.split("__")
        for k in keys[:-1]:
            node = node[k]
        if value is KeyError:
            del node[keys[-1]]
        else:
            node[keys[-1]] = value
    return data


def test_good_recipe_validates_and_builds():
    recipe, _ = load_recipe(GOOD)
    wl = build_workload(recipe)
    assert recipe.search.budget == 20 and wl.space.names == ["x0", "x1", "x2"]
    assert recipe.tracking_cfg() is None


@pytest.mark.parametrize("changes,message", [
    ({"search__algorithm": "nsga"}, "search.algorithm: 'nsga' is not one of"),
    ({"search__algorithm": "nsga"}, "(did you mean 'nsga2' or 'nsga3'?)"),
    ({"search__algorithm": "optuna_gp"}, "(did you mean 'optuna-gp'?)"),
    ({"search__budgte": 5}, "search.budgte: unknown field; allowed here: algorithm, budget"),
    ({"search__budget": 0}, "search.budget: 0 is not allowed; it must be above 0"),
    ({"search__budget": "abc"}, "search.budget: 'abc' is not a whole number"),
    ({"search__budget": 2.5}, "search.budget: 2.5 is not a whole number"),
    ({"search__time_budget_s": "x"}, "search.time_budget_s: 'x' is not a number"),
    ({"search": 3}, "search: 3 is not a mapping (key: value, ...)"),
    ({"tracking": "maybe"}, "tracking: 'maybe' is not true or false"),
    ({"search__budget": None}, "search: give budget (trials) and/or time_budget_s (seconds)"),
    ({"search__executor": "gpu"}, "search.executor: 'gpu' is not one of 'local', 'threads', 'processes' or 'ray'"),
    ({"objectives__f1": "minimise"}, "objectives: f1: 'minimise' is not one of minimize, maximize"),
    ({"objectives": {}}, "objectives: at least one objective is needed"),
    ({"constraints__f1": "at most 3"}, "constraints: constraint on 'f1': 'at most 3' is not of the form '<= 5'"),
    ({"name": KeyError}, "name: required"),
    ({"name": "has space"}, "name: 'has space' is not allowed; letters, digits and _ . - (the first a letter or digit)"),
    ({"workload": {"n_var": 3}}, "workload: a workload mapping needs 'name'"),
    ({"colour": "red"}, "colour: unknown field; allowed here: name, description, workload"),
    ({"tracking": {"urii": "x"}}, "tracking.urii: unknown field; allowed here: enabled, uri, experiment"),
    ({"tracking": {"trials": "all"}}, "tracking.trials: 'all' is not one of 'steps', 'children' or 'none'"),
    ({"search__options": {"pop": 10}}, "search.options: nsga2 has no option 'pop'; its options: pop_size,"),
    ({"search__algorithm": "predictive", "search__options": {"min_succes": 0.5}},
     "search.options: predictive has no option 'min_succes' (did you mean 'min_success'?); its options: batch_size"),
    ({"search__algorithm": "predictive", "search__options": {"batch_size": 0}},
     "search.options: batch_size is the evaluations per round, a whole number of at least 1; got 0"),
    ({"search__algorithm": "predictive", "search__options": {"predictors": ["rf", "gp+log"]}},
     "search.options: predictor 'gp+log': the one suffix after '+' is 'warp'"),
    ({"search__algorithm": "predictive", "search__options": {"inner": "optuna-gpx"}},
     "search.options: inner: algorithm 'optuna-gpx' is not one of"),
    ({"search__algorithm": "predictive", "search__options": {"inner": "motep"}}, "(did you mean 'motpe'?)"),
    ({"search__algorithm": "local", "search__options": {"batch_size": -3}},
     "search.options: batch_size is the evaluations per round, a whole number of at least 1; got -3"),
    ({"search__algorithm": "auto", "search__options": {"batch_size": 2.5}},
     "search.options: batch_size is the evaluations per round, a whole number of at least 1; got 2.5"),
    ({"search__algorithm": "predictive", "search__options": {"min_success": 2}},
     "search.options: min_success is a probability, between 0 and 1; got 2"),
    ({"search__algorithm": "motpe", "search__options": {"n_startup": 5}},
     "search.options: motpe has no option 'n_startup' (did you mean 'n_startup_trials'?)"),
    ({"search__algorithm": "ng:NGOpt", "search__options": {"popsize": 5}},
     "search.options: ng:NGOpt has no option 'popsize'; its options: batch_size"),
    ({"search__algorithm": "auto", "search__options": {"kapa": 1}},
     "search.options: auto (picking predictive or nsga2) has no option 'kapa' (did you mean 'kappa'?)"),
    ({"search__algorithm": "auto", "search__options": {"gp_inner": 3}},
     "search.options: auto (picking predictive or nsga2) has no option 'gp_inner' (did you mean 'gp_inner_s'?); "
     "its options: batch_size, threshold_s, expensive, cheap, declared_seconds, gp_inner_s, initial_size"),
    ({"search__algorithm": "predictive", "search__options": {"predictors": ["rf", "gpx"]}},
     "search.options: predictor 'gpx' is not one of extra-trees, gbm, gp, gp-ard, mlp, rf, ridge"),
    ({"search__algorithm": "predictive", "search__options": {"predictors": ["gp@cell"]}},
     "search.options: predictor 'gp@cell': the one view after '@' is 'own'"),
])
def test_schema_errors_name_the_field_and_what_is_allowed(changes, message):
    with pytest.raises(RecipeError) as e:
        load_recipe(bad(**changes))
    assert message in str(e.value)
    assert "Input should" not in str(e.value)    # pydantic's wording, said plainly
    if "tracking:" not in message:  # not the other branch of "tracking: true | {...}"
        assert "true or false" not in str(e.value)


@pytest.mark.parametrize("changes,message", [
    ({"workload": "zdt9"}, "workload: workload 'zdt9' is not one of "),
    ({"objectives": {"f1": "minimize", "latency_ms": "minimize"}},
     "objectives.latency_ms: 'latency_ms' is not a metric of zdt1 (f1, f2)"),
    ({"constraints": {"acc": ">= 0.9"}}, "constraints.acc: 'acc' is not a metric of zdt1"),
    ({"workload": {"name": "zdt1", "n_vars": 3}},
     "workload: workload zdt1 has no option 'n_vars' (did you mean 'n_var'?); its options: n_var, n_obj"),
    ({"workload": {"name": "zdt1", "n_var": -1}},
     "workload: n_var: -1 is not allowed; zdt1 takes a number of variables, a whole number of at least 2"),
    ({"workload": {"name": "zdt1", "n_obj": 3}}, "workload: n_obj: zdt1 has 2 objectives"),
    ({"workload": {"name": "dtlz2", "n_obj": 1}},
     "workload: n_obj: 1 is not allowed; dtlz2 takes a number of objectives, a whole number of at least 2"),
    ({"workload": {"name": "dtlz2", "n_var": 2}},
     "workload: n_var: 2 is not allowed; dtlz2 with 3 objectives takes a number of variables, a whole number of at least 3"),
    ({"workload": {"name": "nasbench_graph", "dataset": "coraa"}},
     "workload: dataset 'coraa' is not one of arxiv, citeseer, computers, cora, cs, photo, physics, proteins, pubmed"),
    ({"workload": {"name": "python: nomodule_here.x:make"}}, "workload: No module named 'nomodule_here' for 'nomodule_here.x:make' (searched the recipe's folder"),
    ({"space": {"a": [1, 2]}}, "space: workload 'zdt1' has a fixed space"),
    ({"search__initial": [{"x0": 0.5, "x1": 0.5, "x2": 7}]}, "search.initial.0: x2: 7.0 is not in reals 0.0..1.0"),
    ({"workload": {"name": "table", "path": "nope.csv"}}, "workload: table nope.csv does not exist"),
    ({"search__algorithm": "predictive", "search__options": {"predictors": ["rf", "ridge@own"]}},
     "search.options: predictor 'ridge@own' sees the space's own features, and this space has none"),
])
def test_workload_level_errors(changes, message):
    recipe, _ = load_recipe(bad(**changes))
    with pytest.raises(RecipeError) as e:
        build_workload(recipe)
    assert message in str(e.value)


@pytest.mark.parametrize("workload,message", [
    ({"name": "supernet", "finetune_steps": -2},
     "finetune_steps: -2 is not allowed; fine-tune steps per subnet, a whole number of at least 0"),
    ({"name": "supernet", "seed": -1}, "seed: -1 is not allowed; a random seed, a whole number of at least 0"),
    ({"name": "compression", "bits": [3, 8]}, "bits: [3] not supported; allowed: 4, 8, 16, 32"),
    ({"name": "compression", "keep": [0.5, 2]}, "keep: [2.0] outside (0, 1]"),
    ({"name": "compression", "size_budget": 0.3},
     "size_budget: 0.3 is below what 4-bit weights reach (0.5 of the int8 weights' bytes); allowed: 0.5 or more"),
    ({"name": "compression", "train_steps": 0},
     "train_steps: 0 is not allowed; the built-in model's training steps, a whole number of at least 1"),
    ({"name": "compression", "model": "python: x:y", "train_steps": 10},
     "train_steps: only for a built-in model (digits_cnn, mnist1d_cnn, timm:<name>); a python: model comes trained"),
    ({"name": "caching", "train_steps": -5},
     "train_steps: -5 is not allowed; the test bed's training steps, a whole number of at least 1"),
    ({"name": "caching", "steps": 1}, "steps: 1 is not allowed; caching needs denoising steps to reuse across, "
                                      "a whole number of at least 2"),
    ({"name": "timm_family", "hw": 0}, "hw: 0 is not allowed; the digits image side (they are 8 x 8)"),
    ({"name": "timm_family", "lr": -0.1}, "lr: -0.1 is not allowed; a learning rate, a number above 0"),
])
def test_a_bad_model_option_is_refused_before_any_model_is_trained(workload, message, tmp_path, monkeypatch):
    monkeypatch.setenv("TRADEOFF_MODELS", str(tmp_path / "models"))
    recipe, _ = load_recipe(bad(workload=workload))
    with pytest.raises(RecipeError) as e:
        build_workload(recipe)
    assert f"workload: {message}" in str(e.value)
    assert not (tmp_path / "models").exists()   # nothing trained and cached first


def test_a_recipe_file_without_a_name_is_named_for_its_file(tmp_path):
    data = bad(name=KeyError)
    for file, name in (("my recipe.yaml", "my-recipe"), ("zdt1_small.yaml", "zdt1_small")):
        (tmp_path / file).write_text(yaml.safe_dump(data))
        assert load_recipe(tmp_path / file)[0].name == name
    (tmp_path / "named.yaml").write_text(yaml.safe_dump(GOOD))
    assert load_recipe(tmp_path / "named.yaml")[0].name == "t"      # its own name wins
    (tmp_path / "_.yaml").write_text(yaml.safe_dump(data))          # nothing left of the file's name to use
    with pytest.raises(RecipeError, match="name: required"):
        load_recipe(tmp_path / "_.yaml")


def test_overrides_and_yaml_errors(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump(GOOD))
    recipe, _ = load_recipe(p, ["search.budget=7", "search.algorithm=random", "tracking.experiment=x"])
    assert recipe.search.budget == 7 and recipe.search.algorithm == "random"
    assert recipe.tracking_cfg().experiment == "x"
    with pytest.raises(RecipeError, match="--set search.budget: write key.path=value|write key.path=value"):
        load_recipe(p, ["search.budget"])
    p.write_text("name: [unclosed")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(p)
    with pytest.raises(RecipeError, match="does not exist"):
        load_recipe(tmp_path / "missing.yaml")


def test_cli_reports_bad_recipe_with_exit_2(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump(bad(search__algorithm="nsga")))
    out = subprocess.run([sys.executable, "-m", "tradeoff.cli", "run", str(p)], capture_output=True, text=True,
                         env=subprocess_env(tmp_path), cwd=tmp_path)
    assert out.returncode == 2
    assert "search.algorithm: 'nsga' is not one of" in out.stderr
    assert "Traceback" not in out.stderr


def test_table_workload_from_csv(tmp_path):
    import pandas as pd

    rows = [{"w": w, "d": d, "acc": 0.5 + 0.1 * d + 0.001 * w, "lat": w * d} for w in (8, 16, 32) for d in (1, 2, 3)]
    rows = rows[:-1]  # one configuration missing from the table
    pd.DataFrame(rows).to_csv(tmp_path / "t.csv", index=False)
    recipe, _ = load_recipe({
        "name": "tab", "workload": {"name": "table", "path": str(tmp_path / "t.csv"), "params": ["w", "d"]},
        "objectives": {"acc": "maximize", "lat": "minimize"}, "search": {"algorithm": "random", "budget": 9},
        "tracking": False})
    wl = build_workload(recipe)
    assert wl.space.cardinality == 9
    from tradeoff.runner import run_recipe

    front, _ = run_recipe(recipe, progress=False)
    # a sparse table: only its 8 rows are proposed, then the space is exhausted
    assert len(front.trials) == 8 and not front.failed
    assert {"w": 32, "d": 3} not in [t.config for t in front.trials]
    assert front.stop_reason == "space exhausted after 8 distinct configs"
    with pytest.raises(Exception, match="no row in the table"):
        wl.evaluate({"w": 32, "d": 3})


def test_space_declared_in_yaml_with_a_python_function():
    data = {"name": "fn", "workload": {"name": "function", "function": "helpers.workloads:toy_metrics"},
            "space": {"depth": {"kind": "int", "low": 2, "high": 8}, "width": [16, 32, 64],
                      "lr": {"kind": "float", "low": 1e-4, "high": 1e-1, "log": True}, "act": ["relu", "tanh"]},
            "objectives": {"error": "minimize", "cost": "minimize"},
            "search": {"algorithm": "nsga2", "budget": 30, "seed": 0}, "tracking": False}
    recipe, _ = load_recipe(data)
    from tradeoff.runner import run_recipe

    front, _ = run_recipe(recipe, progress=False)
    assert len(front.trials) == 30 and front.members
    assert all(t.reason == "RuntimeError: diverged" for t in front.failed)
    assert all(2 <= t.config["depth"] <= 8 and t.config["width"] in (16, 32, 64) for t in front.trials)
    bad = dict(data, space={"depth": {"kind": "int", "low": 2}})
    with pytest.raises(RecipeError, match="space.depth: an int param needs 'high'"):
        build_workload(load_recipe(bad)[0])
    with pytest.raises(RecipeError, match="space: a space needs at least one param"):  # the whole space: no dot
        build_workload(load_recipe(dict(data, space={}))[0])
    with pytest.raises(RecipeError, match="space.act: values: a list of values, got 3"):  # was a TypeError
        build_workload(load_recipe(dict(data, space={"act": {"kind": "choice", "values": 3}}))[0])
