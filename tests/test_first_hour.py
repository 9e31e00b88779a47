"""What a new user meets in the first hour: tiny spaces, failed runs, clean errors, run ids, show, paths."""

from __future__ import annotations

import pytest

import tradeoff
from tradeoff import Choice, Space

ALGORITHMS = [n for n in tradeoff.algorithm_names() if n not in ("ng:<Optimizer>", "ng")] + ["ng:NGOpt"]
TINY = Space({"a": Choice([1, 2, 3]), "b": Choice([0, 1])})  # 6 configs


def _tiny(c):
    return {"f1": c["a"], "f2": -c["a"] + c["b"]}


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("TRADEOFF_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("name", ALGORITHMS)
def test_space_smaller_than_population_stops_cleanly(name):
    opts = {"n_startup_trials": 3} if name == "optuna-gp" else None
    front = tradeoff.search(TINY, {"f1": "minimize", "f2": "minimize"}, _tiny, budget=20, algorithm=name,
                            tracking=None, algorithm_options=opts)
    assert len(front.trials) == 6
    assert len({t.key for t in front.trials}) == 6
    assert front.stop_reason == "space exhausted after 6 distinct configs"
    assert len(front.members) == 3
