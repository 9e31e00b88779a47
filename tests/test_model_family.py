"""The timm-family workload: declared models and arguments, a step-budget ladder, early stop, a disk cache."""

import numpy as np
import pytest

from tradeoff.core.trial import TrialError
from tradeoff.workloads import make_workload
from tradeoff.workloads.model_family import _train_ladder, ctor_kwargs, family_space, timm_family

MODELS = {"test_resnet": {"drop_rate": [0.0, 0.2]},
          "test_vit": {"img_size": 16, "patch_size": [4, 8, 32], "depth": 1}}


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TRADEOFF_MODELS", str(tmp_path / "models"))
    return tmp_path / "models"


def test_bad_names_and_arguments_are_refused_naming_the_field():
    with pytest.raises(ValueError, match=r"models\.no_such_net: not a timm model name"):
        timm_family(models={"no_such_net": {}}, steps=[2])
    with pytest.raises(ValueError, match=r"models\.test_resnet: .*bogus"):
        timm_family(models={"test_resnet": {"bogus": [1, 2]}}, steps=[2])
    with pytest.raises(ValueError, match=r"steps:"):
        timm_family(models=MODELS, steps=[0])
    with pytest.raises(ValueError, match=r"early_stop:"):
        timm_family(models=MODELS, steps=[2], early_stop=2.0)


def test_space_flattens_choices_and_ignores_the_unchosen_models_arguments(monkeypatch):
    space = family_space(MODELS)
    assert space.names == ["model", "test_resnet.drop_rate", "test_vit.patch_size"]  # fixed args are not searched
    config = {"model": "test_vit", "test_resnet.drop_rate": 0.2, "test_vit.patch_size": 8}
    assert ctor_kwargs(MODELS, config) == ("test_vit", {"img_size": 16, "patch_size": 8, "depth": 1})
    # only canonical configs exist: one per model and choice of its own arguments, so a search
    # never evaluates one model twice under two values of another model's argument
    assert space.n_configs == len(MODELS["test_resnet"]["drop_rate"]) + len(MODELS["test_vit"]["patch_size"])
    snapped = space.nearest_row({"model": "test_vit", "test_resnet.drop_rate": 0.2, "test_vit.patch_size": 8})
    assert snapped["test_resnet.drop_rate"] == space["test_resnet.drop_rate"].default()
    assert snapped["test_vit.patch_size"] == 8
    # and configs are keyed by the model they build, also where the space is too large for rows
    from tradeoff.workloads import model_family

    other = dict(config, **{"test_resnet.drop_rate": space["test_resnet.drop_rate"].default()})
    assert space.key(config) == space.key(other) != space.key(dict(config, **{"test_vit.patch_size": 4}))
    monkeypatch.setattr(model_family, "MAX_ROWS", 1)
    large = family_space(MODELS)
    assert large.rows is None and large.key(config) == large.key(other)
    assert large.key(dict(config, model="test_resnet")) != large.key(dict(other, model="test_resnet"))


def test_ladder_stops_at_the_first_rung_when_told():
    import torch

    from tradeoff.workloads.models import digits_data

    d = digits_data(16)
    from tradeoff.workloads.model_family import build

    net = build("test_vit", {"img_size": 16, "patch_size": 8, "depth": 1})
    torch.manual_seed(0)
    _, rungs, stopped = _train_ladder(net, d["x"], d["y"], d["x_val"][:50], d["y_val"][:50], [2, 4, 8], 0, 3e-3, 16,
                                      lambda rung, acc: True)
    assert stopped == 2 and list(rungs) == [2]


def test_trials_record_each_fidelity_score_onnx_and_are_not_retrained(models_dir):
    wl = make_workload("timm_family", models=MODELS, steps=[3, 6], early_stop=None)
    assert wl.info["seconds_per_trial"] > 0
    config = {"model": "test_resnet", "test_resnet.drop_rate": 0.0, "test_vit.patch_size": 4}
    first = wl.evaluate(config)
    assert first["trained_now"] == 1 and first["train_steps"] == 6 and first["early_stopped"] == 0
    assert set(k for k in first if k.startswith("accuracy_at_")) == {"accuracy_at_3", "accuracy_at_6"}
    # accuracy is scored on the ONNX bytes by ONNX Runtime; it agrees with torch at the top rung
    assert 0.0 <= first["accuracy"] <= 1.0 and abs(first["accuracy"] - first["accuracy_at_6"]) < 0.02
    assert first["ctor.drop_rate"] == 0.0
    cached = sorted(p.name for p in models_dir.iterdir())
    # a new workload (a resumed search) finds the weights on disk: nothing is trained again
    again = make_workload("timm_family", models=MODELS, steps=[3, 6], early_stop=None).evaluate(config)
    assert again["trained_now"] == 0 and again["train_s"] == 0.0
    assert again["accuracy"] == first["accuracy"] and again["accuracy_at_3"] == first["accuracy_at_3"]
    assert sorted(p.name for p in models_dir.iterdir()) == cached
    # a candidate that cannot run (a patch larger than the image) is a failed trial with its reason
    with pytest.raises(TrialError, match="test_vit.*divisible by patch size"):
        wl.evaluate({"model": "test_vit", "test_resnet.drop_rate": 0.0, "test_vit.patch_size": 32})


def test_early_stop_marks_candidates_far_below_the_best_at_a_rung(models_dir):
    frac = 0.999   # anything not (nearly) the best so far at the first rung stops there
    wl = timm_family(models=MODELS, steps=[8, 12], early_stop=frac)
    best, stopped = 0.0, 0
    # the ViTs first: they start fast, the ResNets slowly, so a ResNet is far behind at the first rung
    for config in [{"model": "test_vit", "test_resnet.drop_rate": 0.0, "test_vit.patch_size": p} for p in (8, 4)] + [
                   {"model": "test_resnet", "test_resnet.drop_rate": d, "test_vit.patch_size": 4} for d in (0.0, 0.2)]:
        m = wl.evaluate(config)
        should_stop = m["accuracy_at_8"] < frac * best
        assert m["early_stopped"] == int(should_stop)
        assert m["train_steps"] == (8 if should_stop else 12)
        assert ("accuracy_at_12" in m) == (not should_stop)
        stopped += m["early_stopped"]
        best = max(best, m["accuracy_at_8"])
    assert np.isfinite(best) and stopped >= 1


def test_auto_takes_the_workloads_declared_cost_and_says_why(models_dir):
    import tradeoff as to

    wl = to.timm_family(models={"test_resnet": {"drop_rate": [0.0, 0.2]}}, steps=[2, 4])
    declared = wl.info["seconds_per_trial"]
    alg = to.make_algorithm("auto", threshold_s=declared / 2, batch_size=2)   # this workload counts as expensive
    front = to.search(wl, {"accuracy": "maximize", "params": "minimize"}, budget=2, algorithm=alg, tracking=None)
    assert alg.decision["algorithm"] == "predictive"
    assert "declared by the workload" in alg.decision["why"] and f"{declared:.3g} s per trial" in alg.decision["why"]
    assert len(front.trials) == 2 and all(t.ok for t in front.trials)
