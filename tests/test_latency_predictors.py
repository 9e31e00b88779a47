"""Latency predictors on real ONNX Runtime timings: kernel parsing, the lookup table, held-out accuracy, the gate."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from tradeoff.evaluators.predicted_latency import PredictedLatency  # noqa: E402
from tradeoff.hardware.base import make_target  # noqa: E402
from tradeoff.hardware.cache import MeasurementCache  # noqa: E402
from tradeoff.predictors.calibration import calibrate  # noqa: E402
from tradeoff.predictors.kernels import KernelTable, model_kernels, parse_kernels  # noqa: E402
from tradeoff.predictors.latency import LatencyPredictor, LookupTable  # noqa: E402
from tradeoff.workloads import make_workload  # noqa: E402
from tradeoff.workloads.convnets import ConvNet, convnet_space  # noqa: E402

FAST = {"warmup": 3, "min_repeats": 10, "rel_ci": 0.03, "time_cap_s": 0.3,
        "remeasure_noisy": 1}  # a test of the cache: a noisy figure (a busy machine) is a hit too


def small_space():
    """Models from ~0.02 ms to ~3 ms, so held-out models differ clearly in latency."""
    return convnet_space(n_stages=3, depth=(1, 3), widths=((8, 16, 32), (16, 32, 64), (32, 64, 96)),
                         kernels=(3, 7), strides=(1, 2, 2), resolution=(16, 32), stem=8)


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    home = tmp_path_factory.mktemp("latency")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRADEOFF_HOME", str(home))
        target = make_target("ort", threads=1, timing=FAST, cache=MeasurementCache(home / "m.sqlite"))
        report = calibrate(target, small_space(), n_train=12, n_test=8, seed=3,
                           predictors=("lut", "kernel-rf", "model-rf"))
    return target, report, home


def test_kernels_match_the_models_layers():
    from tradeoff.hardware.base import export_onnx

    net = ConvNet([(2, 16, 3, 1, "conv"), (2, 24, 5, 2, "mbconv"), (1, 32, 7, 2, "dwsep")], input_hw=32)
    space = convnet_space()
    art = space.build(space.sample(np.random.default_rng(0)))
    for module, x in ((net, torch.randn(1, 3, 32, 32)), (art.module, art.example_inputs[0])):
        ks = parse_kernels(export_onnx(module, (x,)))
        convs = [m for m in module.modules() if isinstance(m, torch.nn.Conv2d)]
        depthwise = [m for m in convs if m.groups > 1 and m.groups == m.in_channels]
        linears = [m for m in module.modules() if isinstance(m, torch.nn.Linear)]
        residual = [m for m in module.modules() if getattr(m, "residual", False)]
        assert sum(k.op in ("conv", "dwconv") for k in ks) == len(convs)
        assert sum(k.op == "dwconv" for k in ks) == len(depthwise)
        assert sum(k.op == "fc" for k in ks) == len(linears) == 1
        assert sum(k.op == "gap" for k in ks) == 1
        # BN is folded by the exporter; residual Adds and activations are fused into their convolutions
        assert {k.op for k in ks} <= {"conv", "dwconv", "fc", "gap"}
        assert sum("Add" in k.nodes for k in ks) == len(residual)
        assert sum(k.macs for k in ks if k.op in ("conv", "dwconv")) == _conv_macs(module, x)


def _conv_macs(module, x) -> int:
    total = []
    hooks = [m.register_forward_hook(lambda m, i, o: total.append(m.weight.numel() * o.shape[-1] * o.shape[-2]))
             for m in module.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        module(x)
    for h in hooks:
        h.remove()
    return sum(total)


def test_predictions_rank_held_out_models(calibrated):
    target, report, _ = calibrated
    y = np.array(report.summary["held_out"]["measured_ms"])
    assert len(y) == 8 and y.max() / y.min() > 5          # the held-out models differ clearly
    for name, p in report.predictors.items():
        pred = np.array(report.summary["held_out"][name])
        assert (pred > 0).all(), name
        assert p.quality["n"] == 8
        assert p.quality["kendall_tau"] > 0.5, (name, p.quality)
    rep = report.summary["repeatability"]     # re-timing is on by default: the device's own ceiling
    assert rep["n"] == 8 and 0.0 <= rep["within_10pct"] <= 1.0
    assert all(p.quality["repeatability_within_10pct"] == rep["within_10pct"] for p in report.predictors.values())
    for art, ms in report.test:          # held-out models were measured, never fitted on
        assert all(art.digest() != a.digest() for a, _ in report.train)


def test_lookup_table_times_each_kernel_once(calibrated):
    target, report, home = calibrated
    table = report.predictors["lut"].table
    distinct = {k.key for art, _ in [*report.train, *report.test] for k in model_kernels(art)}
    assert len(table) == len(distinct) == table.measured          # every kernel of every model, once
    assert table.path.exists() and table.path.parent.parent == home       # next to the measurement cache
    misses = target.cache.misses
    again = calibrate(target, small_space(), n_train=12, n_test=8, seed=3, predictors=("lut",))
    assert again.summary["kernels"]["profile"]["timed_now"] == 0   # a fresh table object read the stored one
    assert target.cache.misses == misses                           # and the models' timings were cached too
    assert again.summary["models"]["cached_share"] == 1.0
    np.testing.assert_allclose(again.summary["held_out"]["lut"], report.summary["held_out"]["lut"], rtol=1e-9)
    # a table is per device, settings and timing mode: others start empty
    other = make_target("ort", threads=2, timing=FAST, cache=target.cache)
    assert len(KernelTable(other)) == 0
    wall = KernelTable(target, timing="wall")       # kernels timed by wall clock through target.measure
    assert len(wall) == 0 and wall.path != table.path
    art = report.test[0][0]
    pairs = wall.ensure(art)
    assert wall.measured == len({k.key for k in model_kernels(art)}) and all(t > 0 for _, t in pairs)


def test_lookup_table_without_measuring_refuses_unknown_kernels(calibrated):
    target, report, _ = calibrated
    lut = LookupTable(target, measure_missing=False).fit(report.train)
    unseen = convnet_space(n_stages=3, depth=(1, 3), widths=((8, 16, 32), (16, 32, 64), (32, 64, 96)),
                           kernels=(3, 7), strides=(1, 2, 2), resolution=24, stem=8)   # a resolution never sampled
    art = unseen.build(unseen.sample(np.random.default_rng(0)))
    with pytest.raises(KeyError, match="not in the table"):
        lut.predict(art)
    assert lut.predict(report.test[0][0]) > 0


class Constant(LatencyPredictor):
    name = "const"

    def fit(self, measured):
        self.value = float(np.median([ms for _, ms in measured]))
        return self

    def predict(self, artifact):
        return self.value


def test_gate_refuses_a_predictor_below_its_thresholds(calibrated):
    _, report, _ = calibrated
    const = Constant().fit(report.train)
    with pytest.raises(ValueError, match="not evaluated on held-out models"):
        PredictedLatency(const)
    q = const.evaluate(report.test)
    assert q["within_10pct"] < 0.95
    with pytest.raises(ValueError, match=r"latency predictor const: [\d.]+% within ±10% on 8 held-out models, "
                                         r"the recipe requires 95%"):
        PredictedLatency(const, min_within_10pct=0.95, min_kendall_tau=0.0)
    with pytest.raises(ValueError, match=r"Kendall τ 0\.\d\d on 8 held-out models, the recipe requires 0\.90"):
        PredictedLatency(const, min_within_10pct=0.0, min_kendall_tau=0.9)
    lut = report.predictors["lut"]
    gate = PredictedLatency(lut, min_within_10pct=0.0, min_kendall_tau=0.0)
    out = gate(report.test[0][0])
    assert out["latency_predicted"] == 1.0 and out["latency_ms"] > 0
    kept = lut.quality
    lut.quality = {**kept, "within_10pct": 0.5}   # a refit that scored worse is refused at the next call
    gate.min_within_10pct = 0.9
    try:
        with pytest.raises(ValueError, match="50% within ±10% on 8 held-out models, the recipe requires 90%"):
            gate(report.test[0][0])
    finally:
        lut.quality = kept


def test_convnet_latency_workload():
    wl = make_workload("convnet_latency", target={"runtime": "ort", "threads": 1, "timing": FAST},
                       resolution=16, widths=((8, 16), (16, 32), (32, 64), (32, 64)))
    cfg = wl.space.sample(np.random.default_rng(0))
    out = wl.evaluate(cfg)
    assert out["latency_ms"] > 0 and out["params_m"] > 0 and out["macs_m"] > 0
    assert set(wl.metrics) == {"latency_ms", "params_m", "macs_m"}
    again = wl.evaluate(cfg)           # the same config builds the same bytes: the cache answers
    assert again["latency_cached"] == 1.0 and again["latency_ms"] == out["latency_ms"]


def test_calibrate_refuses_an_unknown_predictor_before_measuring(tmp_path):
    target = make_target("ort", threads=1, timing=FAST, cache=MeasurementCache(tmp_path / "m.sqlite"))
    with pytest.raises(ValueError, match="predictor 'lut-fast' is not one of lut, lut-constant, lut-wall"):
        calibrate(target, small_space(), n_train=4, n_test=3, predictors=("lut", "lut-fast"))
    assert target.cache.misses == 0 and target.cache.hits == 0      # no model was measured first
