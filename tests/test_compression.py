"""Compression: quantization and pruning spaces, the workload on ORT, baselines, bad input."""

import json

import onnx
import pytest
import torch
from torch import nn

import tradeoff as to
from tradeoff.core.trial import Trial
from tradeoff.engine.study import load_trials, run_dir_for
from tradeoff.hardware.base import export_onnx
from tradeoff.spaces.prune import prune, prune_space
from tradeoff.spaces.quant import quant_space, quantize
from tradeoff.workloads.compression import compression
from tradeoff.workloads.models import digits_data, train
from tradeoff.workloads.sensitivity import allocate

torch.set_num_threads(1)


class Residual(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dw = nn.Sequential(nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False), nn.BatchNorm2d(c), nn.ReLU())
        self.pw = nn.Sequential(nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x):
        return torch.relu(x + self.pw(self.dw(x)))


def tiny(c=16):
    return nn.Sequential(nn.Sequential(nn.Conv2d(1, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU()), Residual(c),
                         nn.Sequential(nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.ReLU()),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * c, 10))


@pytest.fixture(scope="module")
def digits():
    d = digits_data(8)
    torch.manual_seed(0)
    model = train(tiny(), d["x"], d["y"], steps=80, lr=1e-2)
    return model, d


def _ops(blob):
    return {n.op_type for n in onnx.load_model_from_string(blob).graph.node}


def test_quant_space_materializes_with_ort_tooling(digits):
    model, d = digits
    fp32 = export_onnx(model, (torch.from_numpy(d["x"][:1]),))
    space = quant_space(fp32, (4, 8, 16, 32))
    assert space.names == ["0.0", "1.dw.0", "1.pw.0", "2.0", "5"]   # named after the torch modules
    calib = d["x"][:64]
    q8, rec8 = quantize(fp32, space.uniform(8), space.nodes, calib)
    assert rec8["n_int8"] == 5 and "QuantizeLinear" in _ops(q8) and len(q8) < len(fp32)
    q4, rec4 = quantize(fp32, space.uniform(4), space.nodes, calib)
    assert "MatMulNBits" in _ops(q4) and rec4["runs"]["5"].startswith("int4 (MatMulNBits")
    assert rec4["n_fallback"] == 4 and "fallback" in rec4["runs"]["0.0"]   # Convs: int4 stored, float compute
    mixed = {**space.uniform(8), "0.0": 32, "5": 16}
    _qm, recm = quantize(fp32, mixed, space.nodes, calib)
    assert recm["runs"]["0.0"] == "fp32" and "fallback" in recm["runs"]["5"] and recm["n_int8"] == 3
    with pytest.raises(ValueError, match="bits"):
        quant_space(fp32, (3, 8))


def _feeds(graph, op):
    """Ops whose outputs feed the first input of each ``op`` node (what its activation comes through)."""
    made = {o: n.op_type for n in graph.node for o in n.output}
    return {made.get(n.input[0], "graph input") for n in graph.node if n.op_type == op}


def test_activation_bits_apart_from_weight_bits(digits):
    model, d = digits
    fp32 = export_onnx(model, (torch.from_numpy(d["x"][:1]),))
    space = quant_space(fp32, (4, 8, 32), act_bits=(8, 32))
    assert space.names[:2] == ["0.0", "0.0:act"] and space.uniform(8)["5:act"] == 8 and space.uniform(4)["5:act"] == 32
    calib = d["x"][:64]
    # W8A32 everywhere: 8-bit weights, float activations -- no QuantizeLinear anywhere in the graph
    blob, rec = quantize(fp32, space.uniform(8, act=32), space.nodes, calib)
    g = onnx.load_model_from_string(blob).graph
    assert "QuantizeLinear" not in _ops(blob) and rec["n_int8_weight_only"] == 5 and rec["n_int8"] == 0
    nbits = [n for n in g.node if n.op_type == "MatMulNBits"]
    assert [a.i for n in nbits for a in n.attribute if a.name == "bits"] == [8]
    assert rec["runs"]["5"].startswith("int8 (MatMulNBits") and "fp32 activations" in rec["runs"]["5"]
    assert _feeds(g, "MatMulNBits") == {"Flatten"}   # its activation arrives in float, straight from Flatten
    assert "fallback" in rec["runs"]["0.0"] and len(blob) < len(fp32) * 0.5
    # mixed: the classifier W8A8 (a QDQ pair on its activation), the first conv W8A32 (none)
    mixed = {**space.uniform(32), "5": 8, "5:act": 8, "0.0": 8, "0.0:act": 32}
    blob, rec = quantize(fp32, mixed, space.nodes, calib)
    g = onnx.load_model_from_string(blob).graph
    conv0 = next(n for n in g.node if n.name == space.nodes["0.0"])
    assert conv0.input[0] == g.input[0].name and rec["n_int8"] == 1 and rec["n_int8_weight_only"] == 1
    assert "DequantizeLinear" in _feeds(g, "Gemm") | _feeds(g, "MatMul")
    # combinations without a kernel run as the nearest that has one, and say so
    blob, rec = quantize(fp32, {**space.uniform(32), "1.pw.0:act": 8, "5": 4, "5:act": 8}, space.nodes, calib)
    assert "W32A8 has no kernel" in rec["runs"]["1.pw.0"] and "QuantizeLinear" not in _ops(blob)
    assert "W4A8 has no kernel" in rec["runs"]["5"] and rec["n_fallback"] == 2 and rec["n_int4"] == 1
    with pytest.raises(ValueError, match="act_bits"):
        quant_space(fp32, (8, 32), act_bits=(4, 32))


def test_int8_regions_stay_int8_between_layers(digits):
    model, d = digits
    fp32 = export_onnx(model, (torch.from_numpy(d["x"][:1]),))
    space = quant_space(fp32, (8, 32))
    g = onnx.load_model_from_string(quantize(fp32, space.uniform(8), space.nodes, d["x"][:64])[0]).graph
    assert _feeds(g, "QuantizeLinear") >= {"Add", "GlobalAveragePool"}   # the glue ops stay int8 (Relus fold away)
    # the first conv in float: the Relu right after it has a float neighbour, so it stays float
    g = onnx.load_model_from_string(quantize(fp32, {**space.uniform(8), "0.0": 32}, space.nodes, d["x"][:64])[0]).graph
    conv0 = next(n for n in g.node if n.name == space.nodes["0.0"])
    assert {n.op_type for n in g.node if conv0.output[0] in n.input} == {"Relu"}   # not a QuantizeLinear
    assert "GlobalAveragePool" in _feeds(g, "QuantizeLinear")   # the region further on stays int8


def test_prune_space_is_dependency_aware_and_refuses_empty_layers(digits):
    model, d = digits
    x = torch.from_numpy(d["x"][:2])
    space = prune_space(model, (x[:1],), keep=(0.25, 0.5, 1.0))
    assert "5" not in space.names                        # the classifier keeps its ten outputs
    assert set(space.channels.values()) == {16, 32}      # the residual couples stem, dw and pw: one group
    cfg = {n: 0.5 for n in space.names}
    net, rec = prune(model, (x[:1],), cfg, space)
    assert rec["params_after"] < rec["params_before"] and net(x).shape == (2, 10)
    assert net[1].dw[0].groups == net[1].dw[0].in_channels == net[0][0].out_channels == 8
    assert sum(p.numel() for p in model.parameters()) == rec["params_before"]   # the original is untouched
    with pytest.raises(ValueError, match=r"keep: 0.01 leaves 0 of the 16 channels"):
        prune_space(model, (x[:1],), keep=(0.01, 1.0))
    with pytest.raises(ValueError, match=r"keep: \[0.0\] outside \(0, 1\]"):
        prune_space(model, (x[:1],), keep=(0.0, 1.0))


def test_recovery_finetune_is_recorded_with_its_learning_rate(digits):
    model, d = digits
    x1 = torch.from_numpy(d["x"][:1])
    wl = compression(model, x1, val=(d["x_val"], d["y_val"]), bits=None, keep=(0.5, 1.0),
                     finetune=(d["x"], d["y"]), finetune_steps=3, finetune_lr=0.02, baselines=False)
    half = {n: 0.5 for n in wl.space.names}
    got = wl.evaluate(half)
    assert got["finetune_steps"] == 3 and got["finetune_lr"] == 0.02 and got["params_kept"] < 0.5
    assert wl.info["finetune_lr"] == 0.02
    assert "finetune_lr" not in wl.evaluate(wl.space.validate({n: 1.0 for n in wl.space.names}))   # nothing pruned
    with pytest.raises(ValueError, match=r"finetune_lr: 0 is not allowed; the fine-tune's peak learning rate, a number above 0"):
        compression(model, x1, val=(d["x_val"], d["y_val"]), bits=None, keep=(0.5, 1.0),
                    finetune=(d["x"], d["y"]), finetune_steps=3, finetune_lr=0)


def test_joint_search_with_baselines_on_ort_and_mlflow(digits, tmp_path):
    model, d = digits
    wl = to.compression(model, torch.from_numpy(d["x"][:1]), val=(d["x_val"], d["y_val"]), calib=d["x"][:64],
                     bits=(4, 8, 32), keep=(0.5, 1.0), finetune=(d["x"], d["y"]), finetune_steps=5)
    assert set(wl.baselines) == {"fp32", "int8", "int4_weight_only", "sensitivity"}
    assert any(k.startswith("quant.") for k in wl.space.names) and any(k.startswith("prune.") for k in wl.space.names)
    front = to.search(wl, {"accuracy": "maximize", "latency_ms": "minimize", "size_mb": "minimize"},
                      targets={"cpu": {"runtime": "ort", "threads": 1}}, budget=4, initial="baselines",
                      tracking={"uri": f"sqlite:///{tmp_path}/m.db", "experiment": "c"}, name="c")
    assert set(front.baselines) == set(wl.baselines)
    for m in front.baselines.values():
        assert 0 <= m["accuracy"] <= 1 and m["latency_ms"] > 0 and m["val_n"] == len(d["y_val"])
    b = front.baselines
    assert b["int8"]["size_mb"] < b["fp32"]["size_mb"] and b["int8"]["n_int8"] == 5
    assert b["int4_weight_only"]["size_mb"] < b["int8"]["size_mb"]
    assert len(front.searched) == 4 and len(front.trials) == 8   # baselines are outside the trial budget
    assert "4 trials" in front.summary() and "+ 4 baselines" in front.summary()
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/m.db")
    exp = client.get_experiment_by_name("c")
    runs = client.search_runs([exp.experiment_id], "tags.baseline = 'int8'")
    assert len(runs) == 1 and runs[0].data.metrics["n_int8"] == 5
    parent = client.search_runs([exp.experiment_id], "tags.`tradeoff.kind` != 'trial'")[0]
    assert "front.png" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    trials = load_trials(run_dir_for(parent.info.run_id))
    assert [t.baseline for t in trials[:4]] == ["fp32", "int8", "int4_weight_only", "sensitivity"]
    assert json.loads(front.to_json())["baselines"]["fp32"]["accuracy"] == b["fp32"]["accuracy"]


def test_bad_models_fail_their_trials_with_the_reason(digits):
    _, d = digits

    class NoOnnx(nn.Module):
        def __init__(self):
            super().__init__()
            self.c, self.fc = nn.Conv2d(1, 8, 3), nn.Linear(8, 10)

        def forward(self, x):
            y = self.c(x).mean((2, 3))
            if torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling():
                raise RuntimeError("this layer has no ONNX form")
            return self.fc(y)

    x1 = torch.from_numpy(d["x"][:1])
    wl = compression(NoOnnx().eval(), x1, val=(d["x_val"], d["y_val"]), bits=None, keep=(0.5,), baselines=False)
    front = to.search(wl, {"accuracy": "maximize"}, budget=1, tracking=None)
    assert front.failed and "export" in front.failed[0].reason and "no ONNX form" in front.failed[0].reason
    with pytest.raises(ValueError, match="model: ONNX export failed"):
        compression(NoOnnx().eval(), x1, val=(d["x_val"], d["y_val"]), bits=(8, 32))

    class Attention(nn.Module):   # a MatMul of two computed tensors: no constant weight for 4-bit weight-only
        def __init__(self):
            super().__init__()
            self.q, self.fc = nn.Linear(8, 16), nn.Linear(64, 10)

        def forward(self, x):
            h = self.q(x.reshape(-1, 8, 8))
            return self.fc(torch.flatten(h @ h.transpose(1, 2), 1))

    wl = compression(Attention().eval(), x1, val=(d["x_val"], d["y_val"]), bits=(4, 32), baselines=False)
    matmul = next(n for n in wl.space.names if wl.space.nodes[n].endswith("MatMul") and n != "q")
    ok = wl.evaluate({**wl.space.uniform(32), matmul: 32})
    assert 0 <= ok["accuracy"] <= 1
    from tradeoff.core.trial import TrialError

    with pytest.raises(TrialError, match="4-bit weight-only needs a constant weight"):
        wl.evaluate({**wl.space.uniform(32), matmul: 4})


def test_sensitivity_allocation_meets_the_budget():
    omega = {"a": {4: 10.0, 8: 1.0}, "b": {4: 0.1, 8: 0.01}, "c": {4: 5.0, 8: 0.5}}
    sizes = {n: {4: 100.0, 8: 200.0} for n in omega}
    got = allocate(omega, sizes, budget=450)
    assert sum(sizes[n][b] for n, b in got.items()) <= 450
    assert got == {"a": 8, "b": 4, "c": 4}   # the cheapest way to give up 150 bytes keeps the most sensitive layer
    with pytest.raises(ValueError, match="size budget"):
        allocate(omega, sizes, budget=100)


def test_trial_json_without_baseline_still_loads():
    old = json.dumps({"number": 0, "key": "k", "config": {}, "state": "complete", "metrics": {"x": 1.0},
                      "reason": None, "feasible": True, "duration_s": 0.1, "batch": 0})
    t = Trial.from_json(old)
    assert t.baseline is None and Trial.from_json(Trial(1, "k", {}, baseline="fp32").to_json()).baseline == "fp32"


def test_initial_baselines_needs_a_workload_with_baselines():
    from tradeoff.recipe import RecipeError, build_workload, load_recipe

    recipe, _ = load_recipe({"name": "z", "workload": "zdt1", "objectives": {"f1": "minimize", "f2": "minimize"},
                             "search": {"budget": 5, "initial": "baselines"}})
    with pytest.raises(RecipeError, match="search.initial: 'baselines'"):
        build_workload(recipe)
    with pytest.raises(RecipeError, match="search.initial"):
        load_recipe({"name": "z", "workload": "zdt1", "objectives": {"f1": "minimize"},
                     "search": {"initial": "best"}})


def test_users_own_model_from_a_python_reference():
    wl = to.make_workload("compression", model="python: helpers.compression_models:tiny", bits=[8, 32])
    assert set(wl.baselines) == {"fp32", "int8"} and wl.info["val_split"] == "digits 8x8 30% held out"
    out = wl.evaluate(wl.baselines["int8"])
    assert out["n_int8"] == 2 and 0 <= out["accuracy"] <= 1 and out["val_n"] == wl.info["val_n"]
    # with 8 the widest, there is no fp32 to offer (it would be the int8 baseline again)
    narrow = to.make_workload("compression", model="python: helpers.compression_models:tiny", bits=[4, 8])
    assert set(narrow.baselines) == {"int8", "int4_weight_only", "sensitivity"}


def _toy():
    """A one-int space, its evaluator and the configs it was called with, in order."""
    calls = []

    def evaluate(c):
        calls.append(dict(c))
        return {"f1": c["x"] / 10, "f2": 1 - c["x"] / 10}

    return to.Space({"x": to.Int(0, 10)}), evaluate, calls


def _resumed_after_baselines(space, evaluate, baselines):
    """A study interrupted right after its baselines, and the same study resumed and run to its budget of 3."""
    from tradeoff.engine.algorithms.base import make_algorithm
    from tradeoff.engine.objectives import parse_objectives
    from tradeoff.engine.study import Study, StudySpec

    spec = StudySpec(objectives=parse_objectives({"f1": "minimize", "f2": "minimize"}), algorithm="random", budget=3)
    study = Study(space, evaluate, spec, algorithm=make_algorithm("random"), progress=False, baselines=baselines)
    study._evaluate_baselines(0.0)
    study.close()   # the interrupted process is gone
    return study, Study.resume(study.run_id, space, evaluate, progress=False, baselines=baselines).run()


def test_baselines_of_any_workload_come_first_outside_the_budget_and_survive_resume():
    from tradeoff.workloads import Workload

    space, evaluate, calls = _toy()
    wl = Workload("toy", space, evaluate, baselines={"low": {"x": 0}, "high": {"x": 10}})
    front = to.search(wl, {"f1": "minimize", "f2": "minimize"}, budget=5, algorithm="random",
                      initial="baselines", tracking=None)
    assert [t.baseline for t in front.trials[:2]] == ["low", "high"] and len(front.searched) == 5
    assert front.baselines == {"low": {"f1": 0.0, "f2": 1.0}, "high": {"f1": 1.0, "f2": 0.0}}
    assert calls[:2] == [{"x": 0}, {"x": 10}] and calls.count({"x": 0}) == 1   # the seed came from the cache
    with pytest.raises(ValueError, match="initial"):
        to.search(space, {"f1": "minimize"}, evaluate=evaluate, budget=2, initial="baselines", tracking=None)
    # a study interrupted after its baselines: resuming evaluates none of them again
    n = len(calls)
    _, resumed = _resumed_after_baselines(space, evaluate, wl.baselines)
    assert calls[n:n + 2] == [{"x": 0}, {"x": 10}]   # the interrupted study's baselines
    assert {"x": 0} not in calls[n + 2:] and {"x": 10} not in calls[n + 2:]
    assert len(resumed.searched) == 3 and set(resumed.baselines) == {"low", "high"}


def test_baselines_that_are_one_config_are_one_trial_and_a_resume_evaluates_it_no_more():
    space, evaluate, calls = _toy()
    study, resumed = _resumed_after_baselines(space, evaluate, {"top": {"x": 10}, "int8": {"x": 10}, "low": {"x": 0}})
    assert calls[:2] == [{"x": 10}, {"x": 0}] and [t.baseline for t in study.trials] == ["top/int8", "low"]
    assert {"x": 10} not in calls[2:] and {"x": 0} not in calls[2:]
    assert [t.baseline for t in resumed.trials if t.baseline] == ["top/int8", "low"] and len(resumed.searched) == 3
