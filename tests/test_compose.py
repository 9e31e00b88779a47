"""Model workloads measured on the recipe's targets: real exports, real ONNX Runtime timings."""

import pytest

from tradeoff.recipe import RecipeError, build_workload, load_recipe
from tradeoff.runner import run_recipe

FAST = {"warmup": 2, "min_repeats": 5, "rel_ci": 0.05, "time_cap_s": 0.3,
        "remeasure_noisy": 1}  # a test of the cache: a noisy figure (a busy machine) is a hit too


def recipe(**over):
    data = {
        "name": "tiny",
        "workload": {"name": "python: helpers.workloads:tiny_models"},
        "targets": {"cpu": {"runtime": "ort", "threads": 1, "timing": FAST}},
        "objectives": {"width_metric": "maximize", "latency_ms": {"direction": "minimize", "target": "cpu"}},
        "search": {"algorithm": "random", "budget": 8, "seed": 0},
        "tracking": False,
    }
    data.update(over)
    return load_recipe(data)[0]


def test_latency_is_measured_on_the_artifact_and_cached_across_runs():
    front, _ = run_recipe(recipe(), progress=False)
    ok = front.complete
    assert len(front.trials) == 8 and len(ok) == 6  # the 2 broken-model configs fail
    for t in ok:
        assert t.metrics["latency_ms"] > 0 and t.metrics["latency_p10_ms"] <= t.metrics["latency_p90_ms"]
        assert t.metrics["latency_cached"] == 0.0 and t.metrics["latency_n"] >= 5
    for t in front.failed:
        assert t.config["width"] == 24 and t.reason.startswith("cpu: ort rejected the model")
    again, _ = run_recipe(recipe(), progress=False)  # a second search: nothing is timed again
    assert all(t.metrics["latency_cached"] == 1.0 for t in again.complete)
    by_key = {t.key: t.metrics["latency_ms"] for t in ok}
    assert all(by_key[t.key] == t.metrics["latency_ms"] for t in again.complete)


def test_size_and_complexity_come_from_the_deployed_graph():
    r = recipe(objectives={"width_metric": "maximize", "macs_m": "minimize", "size_mb": "minimize"})
    front, _ = run_recipe(r, progress=False)
    t = next(t for t in front.complete if t.config == {"width": 64, "depth": 2})
    assert t.metrics["macs_m"] == pytest.approx((16 * 64 + 64 * 64) / 1e6)
    assert t.metrics["params_m"] == pytest.approx((16 * 64 + 64 + 64 * 64 + 64) / 1e6)
    assert 0.015 < t.metrics["size_mb"] < 0.03


@pytest.mark.parametrize("over,message", [
    ({"objectives": {"latency_ms": {"direction": "minimize", "target": "gpu"}}},
     "objectives.latency_ms.target: 'gpu' is not one of the recipe's targets (cpu)"),
    ({"targets": {"cpu": {"threads": 1}}}, "targets.cpu.runtime: required"),
    ({"targets": {"cpu": {"runtime": "ort", "provider": "npu"}}},
     "targets.cpu: provider 'npu' is not one of cpu, cuda, tensorrt"),
    ({"targets": {"cpu": {"runtime": "onnx"}}}, "targets.cpu: runtime 'onnx' is not one of"),
    ({"targets": {"cpu": {"runtime": "ort", "thread": 2}}},
     "targets.cpu: thread: not a setting of the ort target; allowed: batch, cache, graph_optimization"),
    ({"targets": {"cpu": {"runtime": "ort", "timing": {"refrence": True}}}},
     "targets.cpu: timing.refrence: unknown; allowed: warmup"),
    ({"targets": {"a": {"runtime": "ort"}, "b": {"runtime": "ort"}}, "objectives": {"latency_ms": "minimize"}},
     "objectives.latency_ms: several targets (a, b)"),
    ({"workload": "zdt1", "objectives": {"f1": "minimize"}}, "workload zdt1 has precomputed metrics"),
])
def test_composition_errors_name_the_field(over, message):
    with pytest.raises(RecipeError) as e:
        build_workload(recipe(**over))
    assert message in str(e.value)


def test_two_targets_two_latency_metrics():
    r = recipe(targets={"one": {"runtime": "ort", "threads": 1, "timing": FAST},
                        "opt0": {"runtime": "ort", "threads": 1, "graph_optimization": "disable", "timing": FAST}},
               objectives={"latency_one_ms": "minimize", "latency_opt0_ms": "minimize"})
    front, _ = run_recipe(r, progress=False)
    t = front.complete[0]
    assert t.metrics["latency_one_ms"] > 0 and t.metrics["latency_opt0_ms"] > 0


def test_a_latency_predictor_is_refused_unless_its_held_out_accuracy_passes():
    common = {"workload": {"name": "convnet_latency", "resolution": 32, "depth": [1, 2]},
              "targets": {"cpu": {"runtime": "ort", "threads": 1, "timing": FAST}}}
    strict = {"kind": "model", "train": 20, "test": 6, "min_within_10pct": 1.01, "min_kendall_tau": 0.0}
    with pytest.raises(RecipeError) as e:
        build_workload(recipe(**common, objectives={
            "params_m": "maximize", "latency_ms": {"target": "cpu", "predictor": strict}}))
    assert "latency predictor model:" in str(e.value) and "the recipe requires 101%" in str(e.value)
    lax = dict(strict, min_within_10pct=0.0)
    wl = build_workload(recipe(**common, objectives={"params_m": "maximize",
                                                     "latency_ms": {"target": "cpu", "predictor": lax}}))
    import numpy as np

    m = wl.evaluate(wl.space.sample(np.random.default_rng(3)))
    assert m["latency_predicted"] == 1.0 and m["latency_ms"] > 0


def test_python_api_searches_a_model_workload_on_its_targets(tmp_path, monkeypatch):
    """Everything a recipe can say the API can: a model workload, measured on named targets."""
    import tradeoff as to

    monkeypatch.setenv("TRADEOFF_HOME", str(tmp_path))
    wl = to.make_workload("convnet_latency", resolution=16)
    fast = {"warmup": 2, "min_repeats": 5, "time_cap_s": 0.2}
    front = to.search(wl, objectives={"latency_ms": {"direction": "minimize", "target": "cpu"}, "size_mb": "minimize"},
                      targets={"cpu": {"runtime": "ort", "threads": 1, "timing": fast}}, budget=4,
                      algorithm="random", tracking=None)
    done = [t for t in front.trials if t.ok]
    assert len(done) == 4
    assert all(t.metrics["latency_ms"] > 0 and t.metrics["size_mb"] > 0 for t in done)
    assert all("latency_p90_ms" in t.metrics for t in done)   # measured by the target's timing statistics
    with pytest.raises(TypeError, match="the workload evaluates"):
        to.search(wl, {"size_mb": "minimize"}, evaluate=lambda c: {}, budget=1, tracking=None)
    with pytest.raises(TypeError, match="pass a Workload"):
        to.search(wl.space, {"size_mb": "minimize"}, evaluate=lambda c: {}, targets={"cpu": {"runtime": "ort"}},
                  budget=1, tracking=None)
