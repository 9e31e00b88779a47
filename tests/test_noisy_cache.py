"""Noisy latency in the caches: timed again when asked again (up to a limit), forced re-measurement,
and the end of a run saying how many figures were noisy and why. Real ONNX Runtime timings."""

from __future__ import annotations

import json
import os
import sqlite3

import pytest

pytest.importorskip("onnxruntime")

from tradeoff.core.trial import Trial  # noqa: E402
from tradeoff.engine.front import Front  # noqa: E402
from tradeoff.engine.objectives import parse_objectives  # noqa: E402
from tradeoff.hardware.base import make_target, reference_artifact  # noqa: E402
from tradeoff.hardware.cache import MeasurementCache, measurement_key  # noqa: E402
from tradeoff.hardware.timing import LatencyStats  # noqa: E402
from tradeoff.predictors.kernels import KernelTable  # noqa: E402

# quick timings; any load counts as too much (max_load below zero), so every figure is noisy ...
NOISY = {"warmup": 1, "warmup_s": 0.0, "min_repeats": 5, "rel_ci": 100.0, "time_cap_s": 0.5, "max_load": -1.0}
# ... or none is: any interval is tight enough and no load too high
CLEAN = {**NOISY, "max_load": 1e9}


def target(cache, timing=NOISY, **settings):
    return make_target("ort", threads=1, cache=cache, timing=timing, **settings)


def attempts(t, art) -> int:
    return t.cache.lookup(measurement_key(art.digest(), t.kind, t.describe()))[1]


def test_a_noisy_figure_is_timed_again_until_the_limit(tmp_path):
    t, art = target(MeasurementCache(tmp_path / "m.sqlite")), reference_artifact()
    assert t.policy.remeasure_noisy == 3                     # the default
    first = t.measure(art)
    assert first.noisy and first.noisy_why == ["load"] and not first.cached and attempts(t, art) == 1
    second = t.measure(art)                                  # noisy in the cache: a miss, timed again
    assert not second.cached and second.seconds > 0 and attempts(t, art) == 2
    third = t.measure(art)
    assert not third.cached and attempts(t, art) == 3
    kept = t.measure(art)                                    # measured 3 times in all: the stored figure
    assert kept.cached and kept.noisy and kept.noisy_why == ["load"] and attempts(t, art) == 3
    assert min(first.ci_rel, second.ci_rel, third.ci_rel) == pytest.approx(kept.ci_rel)   # the tightest kept
    assert t.cache.remeasured == 2 and t.cache.hits == 1 and t.cache.misses == 3 and len(t.cache) == 1


@pytest.mark.parametrize("limit", [0, 1])
def test_a_limit_of_one_or_less_never_times_again(tmp_path, limit):
    cache = MeasurementCache(tmp_path / "m.sqlite")
    t, art = target(cache, {**NOISY, "remeasure_noisy": limit}), reference_artifact()
    assert t.measure(art).noisy
    again = t.measure(art)
    assert again.cached and again.noisy and cache.remeasured == 0 and attempts(t, art) == 1
    # the limit changes no figure: not in the settings, so every limit reads the same rows
    assert t.describe() == target(cache).describe() and "remeasure_noisy" not in t.describe().get("timing", {})


def test_a_clean_figure_replaces_a_noisy_one(tmp_path):
    t, art = target(MeasurementCache(tmp_path / "m.sqlite")), reference_artifact()
    assert t.measure(art).noisy
    t.policy.max_load = 1e9                       # as if the machine had quietened: same settings, same key
    clean = t.measure(art)
    assert not clean.cached and not clean.noisy and clean.noisy_why == []
    assert attempts(t, art) == 2 and t.cache.remeasured == 1
    again = t.measure(art)                        # a clean figure is never timed again
    assert again.cached and not again.noisy and again.median_ms == clean.median_ms and t.cache.remeasured == 1


def _stats(ci_rel: float, noisy: bool) -> LatencyStats:
    return LatencyStats(median_ms=1.0, p10_ms=0.9, p90_ms=1.1, mean_ms=1.0, n=5, ci_low_ms=1 - ci_rel,
                        ci_high_ms=1 + ci_rel, warmup=1, noisy=noisy, target="cpu")


def test_the_cache_keeps_the_better_figure_and_counts_attempts(tmp_path):
    cache = MeasurementCache(tmp_path / "m.sqlite")
    assert cache.put("k", _stats(0.2, True)) == 1
    assert cache.put("k", _stats(0.3, True)) == 2             # a looser noisy figure: the tighter one stays
    assert cache.lookup("k")[0].ci_rel == pytest.approx(0.2) and cache.lookup("k")[1] == 2
    assert cache.put("k", _stats(0.1, True)) == 3             # a tighter one replaces it
    assert cache.lookup("k")[0].ci_rel == pytest.approx(0.1)
    cache.put("k", _stats(0.5, False))                        # clean beats noisy, however wide
    cache.put("k", _stats(0.01, True))                        # and noisy never replaces clean
    stats, n = cache.lookup("k")
    assert not stats.noisy and stats.ci_rel == pytest.approx(0.5) and n == 5 and stats.cached


def test_an_old_cache_gains_the_attempts_column(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:                          # the schema before attempts were counted
        db.execute("CREATE TABLE m (key TEXT PRIMARY KEY, target TEXT, stats TEXT, "
                   "created REAL DEFAULT (julianday('now')))")
        db.execute("INSERT INTO m (key, target, stats) VALUES (?, ?, ?)",
                   ("k", "cpu", json.dumps(_stats(0.2, True).to_dict())))
    cache = MeasurementCache(path)
    stats, n = cache.lookup("k")
    assert stats.noisy and n == 1
    assert cache.get("k", remeasure_noisy=3) is None and cache.remeasured == 1
    assert cache.put("k", _stats(0.01, False)) == 2 and not cache.get("k", 3).noisy
    MeasurementCache(path)                                     # opening it again changes nothing
    assert cache.lookup("k")[1] == 2


def test_remeasure_times_a_clean_figure_afresh_under_the_same_key(tmp_path, monkeypatch):
    cache = MeasurementCache(tmp_path / "m.sqlite")
    art = reference_artifact()
    plain, forced = target(cache, CLEAN), target(cache, CLEAN, remeasure=True)
    assert forced.remeasure and not plain.remeasure and "remeasure" not in forced.describe()
    assert forced.describe() == plain.describe()               # same key, same kernel table
    assert KernelTable(forced).path == KernelTable(plain).path
    first = plain.measure(art)
    assert not first.noisy and plain.measure(art).cached       # a clean figure is a hit ...
    fresh = forced.measure(art)                                # ... except where re-measuring is forced
    assert not fresh.cached and fresh.seconds > 0 and len(cache) == 1 and attempts(plain, art) == 2
    assert forced.measure(art).cached                          # each figure once per target, then the cache
    monkeypatch.setenv("TRADEOFF_REMEASURE", "1")              # what `tradeoff run --remeasure` sets
    assert target(cache, CLEAN).remeasure
    with pytest.raises(ValueError, match="remeasure 'often' is not true or false"):
        target(cache, remeasure="often")


def test_a_bad_remeasure_in_a_recipe_names_the_field():
    from tradeoff.recipe import RecipeError, build_workload, load_recipe

    recipe = load_recipe({"name": "tiny", "workload": {"name": "python: helpers.workloads:tiny_models"},
                          "targets": {"cpu": {"runtime": "ort", "remeasure": "often"}},
                          "objectives": {"width_metric": "maximize", "latency_ms": "minimize"},
                          "tracking": False})[0]
    with pytest.raises(RecipeError, match="targets.cpu: remeasure 'often' is not true or false"):
        build_workload(recipe)


def test_kernel_table_retimes_noisy_kernels_until_the_limit(tmp_path):
    t, art = target(MeasurementCache(tmp_path / "m.sqlite")), reference_artifact()
    table = KernelTable(t, path=tmp_path / "k.json")
    (key,) = [k.key for k, _ in table.ensure(art)]                 # one kernel: Conv + Relu
    assert table.entries[key]["noisy"] and table.entries[key]["attempts"] == 1
    table.ensure(art)
    table.ensure(art)
    assert table.measured == 3 and table.remeasured == 2 and table.entries[key]["attempts"] == 3
    table.ensure(art)                                              # the limit reached: the table answers
    assert table.measured == 3
    stored = KernelTable(t, path=tmp_path / "k.json")
    assert stored.entries[key]["attempts"] == 3
    stored.ensure(art)
    assert stored.measured == 0
    forced = KernelTable(target(t.cache, remeasure=True), path=tmp_path / "k.json")
    forced.ensure(art)
    forced.ensure(art)                                             # afresh once per table object
    assert forced.measured == 1 and forced.entries[key]["attempts"] == 4


def _trial(n: int, prefix: str, noisy: bool, load: float, why: tuple[str, ...] = ()) -> Trial:
    m = {"accuracy": 0.5 + n / 100, f"{prefix}_ms": 1.0 + n, f"{prefix}_noisy": float(noisy), f"{prefix}_load": load}
    m.update({f"{prefix}_noisy_{w}": 1.0 for w in why})
    return Trial(n, str(n), {"x": n}, metrics=m)


def test_the_front_counts_noisy_figures_and_why():
    trials = [_trial(0, "latency_cpu", True, 1.5, ("load",)), _trial(1, "latency_cpu", True, 2.1, ("ci", "load")),
              _trial(2, "latency_cpu", False, 0.4), _trial(3, "latency_cpu", True, 1.8, ("drift",))]
    front = Front(parse_objectives({"accuracy": "maximize", "latency_cpu_ms": "minimize"}), trials)
    assert front.noisy_latency() == {"latency_cpu": {"figures": 4, "noisy": 3, "median_load": pytest.approx(1.8),
                                                     "reasons": {"load": 2, "ci": 1, "drift": 1}}}
    line = front.noisy_report()
    assert line.startswith("latency_cpu: 3 of 4 figures noisy (median load 1.8 per core; ")
    assert "2 load above max_load" in line and "1 CI not reached" in line and "1 reference drift" in line
    assert line.endswith("rerun with --remeasure to time them again")
    quiet = Front(front.objectives, [_trial(0, "latency", False, 0.2)])
    assert quiet.noisy_report() == "" and quiet.noisy_latency()["latency"]["noisy"] == 0


def test_a_run_ends_with_its_noisy_figures_and_remeasure_times_them_again(tmp_path, capsys):
    import yaml

    from tradeoff.cli import main
    from tradeoff.engine.study import load_front, run_dir_for
    from tradeoff.recipe import load_recipe
    from tradeoff.runner import run_recipe

    data = {"name": "tiny", "workload": {"name": "python: helpers.workloads:tiny_models"},
            "targets": {"cpu": {"runtime": "ort", "threads": 1, "timing": {**NOISY, "remeasure_noisy": 1}}},
            "objectives": {"width_metric": "maximize", "latency_ms": "minimize"},
            "search": {"algorithm": "random", "budget": 4, "seed": 0}, "tracking": False}
    front, _ = run_recipe(load_recipe(data)[0], progress=False)
    ok = front.complete
    assert ok and all(t.metrics["latency_noisy"] == 1.0 and t.metrics["latency_noisy_load"] == 1.0
                      and t.metrics["latency_load"] >= 0 for t in ok)
    counts = front.noisy_latency()["latency"]
    assert counts["figures"] == counts["noisy"] == len(ok) and counts["reasons"] == {"load": len(ok)}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["run", str(path), "-q"]) == 0                  # the limit is 1: the noisy figures are hits
    out = capsys.readouterr().out
    assert f"latency: {len(ok)} of {len(ok)} figures noisy (median load " in out
    cached = load_front(run_dir_for(out.split("run id: ")[-1].split()[0]))
    assert all(t.metrics["latency_cached"] == 1.0 for t in cached.complete)
    assert main(["run", str(path), "-q", "--remeasure"]) == 0   # every figure timed afresh
    out = capsys.readouterr().out
    assert f"latency: {len(ok)} of {len(ok)} figures noisy" in out and "rerun with --remeasure" in out
    run_id = out.split("run id: ")[-1].split()[0]
    fresh = load_front(run_dir_for(run_id))
    assert fresh.complete and all(t.metrics["latency_cached"] == 0.0 for t in fresh.complete)
    assert "TRADEOFF_REMEASURE" not in os.environ                # the flag is the run's alone
