"""Kernel extraction on standard models (torchvision, timm): every kernel isolates, runs and sums to a prediction."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
torchvision = pytest.importorskip("torchvision")

from tradeoff.evaluators.complexity import count_graph  # noqa: E402
from tradeoff.evaluators.predicted_latency import PredictedLatency  # noqa: E402
from tradeoff.hardware.base import Artifact, export_onnx, make_target  # noqa: E402
from tradeoff.hardware.cache import MeasurementCache  # noqa: E402
from tradeoff.hardware.onnx_graph import Graph, inferred  # noqa: E402
from tradeoff.predictors.kernels import FREE_OPS, KernelTable, isolate, parse_kernels  # noqa: E402
from tradeoff.predictors.latency import LatencyPredictor  # noqa: E402

FAST = {"warmup": 1, "min_repeats": 3, "time_cap_s": 0.05}


def _timm(name):
    timm = pytest.importorskip("timm")
    return lambda: timm.create_model(name, pretrained=False, num_classes=10)


# one of each kind of graph these libraries export: shape arithmetic with channel shuffles (Slice,
# Transpose), HardSwish and squeeze-excite, fire modules (Concat), timm's LayerNorm / Erf / Split
MODELS = {
    "shufflenet_v2_x0_5": lambda: torchvision.models.shufflenet_v2_x0_5(num_classes=10),
    "mobilenet_v3_small": lambda: torchvision.models.mobilenet_v3_small(num_classes=10),
    "squeezenet1_1": lambda: torchvision.models.squeezenet1_1(num_classes=10),
    "timm:lcnet_050": _timm("lcnet_050"),
    "timm:convnext_atto": _timm("convnext_atto"),
}


def _artifact(name, hw=32) -> Artifact:
    torch.manual_seed(0)
    module = MODELS[name]().eval()
    x = torch.randn(1, 3, hw, hw)
    return Artifact(name, (x,), onnx=export_onnx(module, (x,)))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MODELS))
def test_standard_models_split_into_kernels_that_run_and_sum(name, tmp_path):
    art = _artifact(name)
    g = Graph(inferred(art.onnx_bytes()))
    ks = parse_kernels(g)
    # every node that does work belongs to exactly one kernel, and every kernel's shapes are known
    covered = [i for k in ks for i in k.index]
    assert len(covered) == len(set(covered))
    assert {i for i, n in enumerate(g.nodes) if n.op_type not in FREE_OPS} <= set(covered)
    assert all(k.output and all(s for s in k.inputs) for k in ks), [k.describe() for k in ks if not k.output]
    # the convolution and matmul kernels' MACs are the whole model's (the complexity evaluator's count)
    assert sum(k.macs for k in ks if k.op in ("conv", "dwconv", "fc")) == count_graph(art.onnx_bytes()).macs > 0
    target = make_target("ort", threads=1, timing=FAST, cache=MeasurementCache(tmp_path / "m.sqlite"))
    table = KernelTable(target, path=tmp_path / "table.json")
    pairs = table.ensure(art)            # each distinct kernel isolated, run in ORT and timed
    assert len(pairs) == len(ks) and table.measured == len({k.key for k in ks})
    total = sum(t for _, t in pairs)
    assert math.isfinite(total) and total > 0 and all(t >= 0 for _, t in pairs)


class Shared(torch.nn.Module):
    """One convolution used twice (shared weights), a constant tensor, a reshape from the input's own shape."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x):
        y = self.conv(self.stem(x))
        y = self.conv(y) + torch.full((1, 8, 1, 1), 0.5)
        b, c, h, w = y.shape
        y = y.reshape(b, c, h * w).mean(-1)
        return self.fc(torch.nn.functional.hardswish(y))


def test_shared_weights_constants_and_dynamic_batch_isolate():
    x = torch.randn(1, 3, 16, 16)
    onnx_bytes = export_onnx(Shared().eval(), (x,))       # batch exported as a free dimension
    g = Graph(inferred(onnx_bytes))
    assert not any(n.op_type in ("Shape", "Gather") for n in g.nodes)   # the shape arithmetic was folded
    ks = parse_kernels(g)
    convs = [k for k in ks if k.op == "conv"]
    assert len(convs) == 3 and convs[1].params == convs[2].params == 8 * 8 * 9 + 8   # the shared weight, in both
    import onnxruntime as ort

    for k in ks:
        model, feeds = isolate(g, k)
        sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        names = [i.name for i in sess.get_inputs()]
        assert len(names) == len(feeds), k.describe()     # no weight or alias left dangling as an input
        out = sess.run(None, dict(zip(names, feeds)))[0]
        assert tuple(out.shape) == k.output and np.isfinite(out).all()


class Median(LatencyPredictor):
    """Predicts the calibration median; enough to see the gate's family check (it reads coverage only)."""

    name = "median"

    def fit(self, measured):
        self.learn_coverage([a for a, _ in measured])
        self.value = float(np.median([ms for _, ms in measured]))
        return self

    def predict(self, artifact):
        return self.value


def test_gate_refuses_a_family_it_was_not_calibrated_on():
    from tradeoff.workloads.convnets import convnet_space

    space = convnet_space(resolution=32)
    rng = np.random.default_rng(0)
    convnets = [space.build(space.sample(rng)) for _ in range(8)]
    p = Median().fit([(a, 1.0) for a in convnets])
    p.quality = {"within_10pct": 1.0, "kendall_tau": 1.0, "n": 8}
    gate = PredictedLatency(p, min_within_10pct=0.9, min_kendall_tau=0.9)
    other = space.build(space.sample(rng))
    assert gate.family_gaps(other) == [] and gate(other)["latency_ms"] == 1.0     # the same family: predicted
    shuffle = _artifact("shufflenet_v2_x0_5")
    gaps = gate.family_gaps(shuffle)
    assert gaps and all("outside the calibrated" in g or "never seen in calibration" in g for g in gaps), gaps
    with pytest.raises(ValueError, match="not calibrated on models like shufflenet_v2_x0_5: .*own calibration"):
        gate(shuffle)
    assert PredictedLatency(p, 0.9, 0.9, check_family=False)(shuffle)["latency_ms"] == 1.0


def test_gate_quotes_the_devices_own_repeatability():
    p = Median()
    p.quality = {"within_10pct": 0.5, "kendall_tau": 1.0, "n": 8, "repeatability_within_10pct": 0.8}
    with pytest.raises(ValueError, match=r"50% within ±10% on 8 held-out models, the recipe requires 90% "
                                         r"\(the device itself re-times 80% of models within ±10%"):
        PredictedLatency(p, min_within_10pct=0.9, min_kendall_tau=0.0)


def test_gate_counts_the_nodes_the_runtime_executes():
    """A channel shuffle leaves shape arithmetic to run time: ~4 nodes per kernel, refused with the ops named."""
    from tradeoff.predictors.coverage import Coverage
    from tradeoff.predictors.latency import runtime_nodes
    from tradeoff.workloads.convnets import convnet_space

    nodes = runtime_nodes(make_target("ort", threads=1, cache=False))
    space = convnet_space(resolution=32)
    rng = np.random.default_rng(0)
    cov = Coverage.of([space.build(space.sample(rng)) for _ in range(4)], nodes=nodes)
    assert 1.0 <= cov.max_nodes_per_kernel < 1.5
    assert not any("the runtime executes" in g for g in cov.gaps(space.build(space.sample(rng))))
    shuffle = _artifact("shufflenet_v2_x0_5")
    ran = nodes(shuffle)
    assert sum(ran.values()) > 2 * len(parse_kernels(shuffle.onnx_bytes()))
    gap = [g for g in cov.gaps(shuffle) if "the runtime executes" in g]
    assert gap and ("Unsqueeze" in gap[0] or "Gather" in gap[0]), gap


class Fusions(torch.nn.Module):
    """Conv + HardSwish (MobileNetV3, LCNet) and Conv then x * sigmoid(x) (SiLU: EfficientNet)."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Conv2d(3, 16, 3, padding=1)
        self.b = torch.nn.Conv2d(16, 16, 3, padding=1)

    def forward(self, x):
        return torch.nn.functional.silu(self.b(torch.nn.functional.hardswish(self.a(x))))


def test_kernels_are_what_the_runtime_executes():
    """HardSwish runs inside its Conv and SiLU's Sigmoid and Mul as one node: one kernel each, not two."""
    from tradeoff.hardware.ort_dispatch import executed_nodes

    x = torch.randn(1, 3, 16, 16)
    art = Artifact("fusions", (x,), onnx=export_onnx(Fusions().eval(), (x,)))
    ks = parse_kernels(art.onnx_bytes())
    assert [k.nodes for k in ks] == [("Conv", "HardSwish"), ("Conv",), ("Sigmoid", "Mul")]
    ran = executed_nodes(make_target("ort", threads=1, cache=False), art)
    work = {op: n for op, n in ran.items() if not op.startswith("Reorder")}
    assert sum(work.values()) == len(ks), ran         # one node the runtime runs per kernel
    assert not {"HardSwish", "Sigmoid", "Mul"} & set(work), ran


def test_a_profiled_kernel_is_read_net_of_the_profilers_own_cost(tmp_path):
    """The profiler reads a node that does nothing at several µs; that floor is taken off every node."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from tradeoff.hardware import ort_profile

    target = make_target("ort", threads=1, timing=FAST, cache=False)
    ort_profile._FLOORS.clear()                      # measured now, beside the reads below
    floor = ort_profile.profiler_floor_us(target)
    assert 0.5 <= floor <= 100

    def relu(n: int) -> Artifact:
        xi = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n])
        yo = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])
        m = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "r", [xi], [yo]),
                              opset_imports=[helper.make_opsetid("", 17)])
        return Artifact(f"relu{n}", (np.zeros((1, n), np.float32),), onnx=m.SerializeToString())

    # one profile of a node that does nothing, read raw and net of the floor
    sess = ort.InferenceSession(relu(1).onnx_bytes(), ort_profile.session_options(target.settings, str(tmp_path / "p")),
                                providers=["CPUExecutionProvider"])
    for _ in range(200):
        sess.run(None, {"x": np.zeros((1, 1), np.float32)})
    path = sess.end_profiling()
    raw = np.array(ort_profile._runs(path, frozenset(), 0.0))
    net = np.array(ort_profile._runs(path, frozenset(), floor))
    np.testing.assert_allclose(net, np.maximum(raw - floor, 0.0))
    assert np.median(raw) < 3 * floor, (np.median(raw), floor)     # what it reads is mostly the floor
    big = ort_profile.profile_kernel(target, relu(1 << 20)).median_ms * 1000
    assert big > 5 * floor, (big, floor)              # a million elements: real work stays
