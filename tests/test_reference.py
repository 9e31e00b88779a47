"""The hypervolume's reference point: given, or shared by an experiment's runs, and named where shown."""

from __future__ import annotations

import io
import json

import pytest
from mlflow.tracking import MlflowClient
from rich.console import Console

import tradeoff
from tradeoff import Choice, Float, Space
from tradeoff.core.trial import Trial
from tradeoff.engine.front import Front
from tradeoff.engine.objectives import parse_objectives
from tradeoff.engine.progress import Progress
from tradeoff.engine.reference import reference_tag
from tradeoff.recipe import RecipeError, load_recipe

OBJ = {"f1": "minimize", "f2": "minimize"}
SPACE = Space({"x": Float(0.0, 1.0), "k": Choice([1, 2, 3])})


def zdt_like(c):
    return {"f1": c["x"], "f2": c["k"] * (1 - c["x"] ** 0.5) + c["k"]}


def _front(points, reference=None, source=None):
    trials = [Trial(number=i, key=str(i), config={}, metrics={"f1": a, "f2": b}) for i, (a, b) in enumerate(points)]
    return Front(parse_objectives(OBJ), trials, reference_point=reference, reference_source=source)


def test_progress_line_names_its_reference_and_stays_meaningful_when_points_lie_outside():
    buf = io.StringIO()
    p = Progress(console=Console(file=buf, width=300))
    outside = _front([(0.2, 3.0), (0.5, 2.5)], {"f1": 1.1, "f2": 1.1}, "given")
    p.start(10, 0, outside)
    p.update(10, outside, 1.0)
    line = buf.getvalue()
    assert "HV 0 @ ref f1=1.1, f2=1.1 (given); all 2 front points outside it, HV " in line
    own = float(line.split("all 2 front points outside it, HV ")[1].split()[0])
    assert own > 0
    inside = _front([(0.2, 0.5), (0.5, 0.2)])
    assert inside.hypervolume_text().startswith(f"HV {inside.hypervolume():.5g} @ ref nadir of this run +10%")


def test_recipe_reference_point_must_name_each_objective():
    with pytest.raises(RecipeError, match=r"reference_point: give one value per objective \(f1, f2\), got f1"):
        load_recipe({"name": "r", "workload": "zdt1", "objectives": OBJ, "reference_point": {"f1": 1.0}})


@pytest.mark.parametrize("point,message", [
    ({"f1": 1.0}, r"reference_point: give one value per objective \(f1, f2\), got f1"),
    ({"f1": 1.0, "f3": 2.0}, r"reference_point: give one value per objective \(f1, f2\), got f1, f3"),
    ({"f1": 1.0, "f2": float("nan")}, r"reference_point.f2: nan is not allowed; a finite number"),
    ({"f1": 1.0, "f2": "far"}, r"reference_point.f2: 'far' is not allowed; a finite number"),
])
def test_the_python_api_refuses_a_reference_point_that_does_not_fit_the_objectives(point, message):
    seen = []
    with pytest.raises(ValueError, match=message):
        tradeoff.search(SPACE, OBJ, lambda c: seen.append(c) or zdt_like(c), budget=4, algorithm="random",
                        tracking=None, reference_point=point)
    assert not seen   # refused before any trial ran


def test_the_python_api_and_a_recipe_refuse_a_negative_seed():
    with pytest.raises(ValueError, match="seed: -1 is not allowed; a random seed, a whole number of at least 0"):
        tradeoff.search(SPACE, OBJ, zdt_like, budget=4, algorithm="random", tracking=None, seed=-1)
    with pytest.raises(RecipeError, match="search.seed: -1 is not allowed; it must be at least 0"):
        load_recipe({"name": "r", "workload": "zdt1", "objectives": OBJ, "search": {"seed": -1}})


def test_runs_of_one_experiment_share_a_reference_recorded_on_the_experiment(tmp_path):
    uri = f"sqlite:///{tmp_path}/shared.db"
    track = {"uri": uri, "experiment": "cmp"}
    first = tradeoff.search(SPACE, OBJ, zdt_like, budget=12, algorithm="random", seed=0, tracking=track)
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("cmp")
    tag = json.loads(exp.tags[reference_tag(parse_objectives(OBJ))])
    assert tag["point"] == pytest.approx(first.reference()) and tag["set_by"] == first.run_id
    second = tradeoff.search(SPACE, OBJ, zdt_like, budget=12, algorithm="random", seed=5, tracking=track)
    assert second.reference_point == pytest.approx(first.reference())
    assert second.reference_source == "experiment cmp"
    run = client.get_run(second.run_id)
    assert run.data.metrics["hypervolume"] == pytest.approx(second.hypervolume(first.reference()))
    assert run.data.metrics["hypervolume_own"] == pytest.approx(second.hypervolume(second.own_reference()))
    assert run.data.tags["reference_outside"] == str(second.outside_reference(first.reference()))
    # a given reference wins for its run and does not move the experiment's
    third = tradeoff.search(SPACE, OBJ, zdt_like, budget=6, algorithm="random", seed=1, tracking=track,
                            reference_point={"f1": 2.0, "f2": 9.0})
    assert third.reference() == {"f1": 2.0, "f2": 9.0}
    tag2 = json.loads(client.get_experiment_by_name("cmp").tags[reference_tag(parse_objectives(OBJ))])
    assert tag2 == tag
