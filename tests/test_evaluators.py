import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from tradeoff.engine.study import TrialError
from tradeoff.evaluators import Complexity, FromCallable, Latency, Size, count_graph, evaluator_names, make_evaluator
from tradeoff.hardware.base import Artifact, TargetError

ROOT = Path(__file__).resolve().parents[1]
FAST = {"warmup": 2, "min_repeats": 5, "time_cap_s": 0.3}


class SmallCNN(torch.nn.Module):
    def __init__(self, c1=16, c2=16):
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, c1, 3, padding=1)
        self.dw = torch.nn.Conv2d(c1, c1, 3, padding=1, groups=c1)  # depthwise
        self.c2 = torch.nn.Conv2d(c1, c2, 1)
        self.fc = torch.nn.Linear(c2 * 8 * 8, 10)

    def forward(self, x):
        x = torch.relu(self.dw(torch.relu(self.c1(x))))
        return self.fc(torch.relu(self.c2(x)).flatten(1))


def cnn_macs(c1, c2, hw=64):
    return hw * (3 * c1 * 9 + c1 * 9 + c1 * c2) + c2 * hw * 10


def cnn(c1=16, c2=16):
    torch.manual_seed(0)
    return Artifact("cnn", (torch.randn(1, 3, 8, 8),), module=SmallCNN(c1, c2).eval())


def toy_metric(artifact, context):
    return {"answer": 42, "note": "ignored"}


def test_registry():
    assert {"latency", "size", "complexity", "callable"} <= set(evaluator_names())
    assert isinstance(make_evaluator("complexity"), Complexity)
    with pytest.raises(ValueError, match="is not one of"):
        make_evaluator("nope")


def test_resnet18_macs_match_the_known_figure():
    import torchvision

    art = Artifact("resnet18", (torch.randn(1, 3, 224, 224),), module=torchvision.models.resnet18(num_classes=1000).eval())
    m = Complexity()(art)
    assert m["macs_m"] == pytest.approx(1820, rel=0.02)  # torchvision's 1.81 GFLOPS (multiply-adds)
    assert m["params_m"] == pytest.approx(11.69, rel=0.01)  # BatchNorm folded: a parameter per channel fewer
    assert m["bops_g"] == pytest.approx(m["macs_m"] * 32 * 32 / 1e3)
    assert m["macs_unresolved"] == 0


def test_physically_pruned_convs_have_fewer_macs():
    full, pruned = Complexity()(cnn(16, 16)), Complexity()(cnn(8, 4))
    assert full["macs_m"] * 1e6 == cnn_macs(16, 16)
    assert pruned["macs_m"] * 1e6 == cnn_macs(8, 4)
    torch_params = sum(p.numel() for p in SmallCNN(8, 4).parameters())
    assert pruned["params_m"] * 1e6 == torch_params


def _calibration(n=4):
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(0)
            self.it = iter([{"input0": rng.standard_normal((1, 3, 8, 8), dtype=np.float32)} for _ in range(n)])

        def get_next(self):
            return next(self.it, None)

    return Reader()


def _qdq_int8(art, tmp_path):
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    src, dst = tmp_path / "f.onnx", tmp_path / "q.onnx"
    src.write_bytes(art.onnx_bytes())
    quantize_static(str(src), str(dst), _calibration(), quant_format=QuantFormat.QDQ, per_channel=True,
                    weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)
    return Artifact(f"{art.name}-int8", art.example_inputs, onnx=dst.read_bytes())


def test_qdq_int8_keeps_macs_and_cuts_bops_by_16(tmp_path):
    art = cnn()
    q = _qdq_int8(art, tmp_path)
    assert "DequantizeLinear" in {n.op_type for n in onnx.load_from_string(q.onnx).graph.node}
    f, i8 = Complexity()(art), Complexity()(q)
    assert i8["macs_m"] == f["macs_m"]
    assert f["bops_g"] / i8["bops_g"] == pytest.approx(32 * 32 / (8 * 8))
    assert i8["params_m"] == f["params_m"]  # int8 weights counted; scales and zero points are not
    assert Size()(q)["size_bytes"] < Size()(art)["size_bytes"]


def test_int4_matmul_nbits_weights():
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    mlp = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 32)).eval()
    art = Artifact("mlp", (torch.randn(1, 4, 64),), module=mlp)
    quant = MatMulNBitsQuantizer(onnx.load_model_from_string(art.onnx_bytes()), block_size=32, is_symmetric=True)
    quant.process()
    c = count_graph(quant.model.model, [(1, 4, 64)])
    assert {o.op for o in c.ops} == {"MatMulNBits"}  # the second one's input shape came from our contrib rule
    assert c.macs == 4 * (64 * 128 + 128 * 32) and c.params == 64 * 128 + 128 + 128 * 32 + 32
    assert all(o.w_bits == 4 and o.a_bits == 32 for o in c.ops)


def test_size_is_the_onnx_bytes_and_counts_external_data(tmp_path):
    art = cnn()
    s = Size()(art)
    assert s["size_bytes"] == len(art.onnx_bytes()) and s["size_mb"] == len(art.onnx_bytes()) / 1e6
    model = onnx.load_model_from_string(art.onnx_bytes())
    onnx.save_model(model, tmp_path / "m.onnx", save_as_external_data=True, location="m.data", size_threshold=0)
    ext = Artifact("ext", art.example_inputs, onnx=(tmp_path / "m.onnx").read_bytes(), meta={"onnx_dir": str(tmp_path)})
    got = Size()(ext)["size_bytes"]
    assert got == len(ext.onnx) + sum(
        int({e.key: e.value for e in t.external_data}.get("length", 0)) for t in
        onnx.load_model_from_string(ext.onnx).graph.initializer if t.external_data)
    assert got >= os.path.getsize(tmp_path / "m.data")


def test_latency_reports_stats_and_wraps_target_errors():
    lat = make_evaluator("latency", runtime="ort", threads=1, timing=FAST)
    m = lat(cnn(), {})
    assert m["latency_ms"] > 0 and m["latency_p10_ms"] <= m["latency_ms"] <= m["latency_p90_ms"]
    assert {"latency_n", "latency_noisy", "latency_cached", "latency_cost_s", "latency_ci_rel"} <= set(m)
    bad = Artifact("broken", (torch.randn(1, 3, 8, 8),), onnx=b"not an onnx model")
    with pytest.raises(TrialError, match="ort rejected the model") as info:
        Latency({"runtime": "ort", "timing": FAST}, prefix="cpu")(bad)
    assert isinstance(info.value.__cause__, TargetError)


def test_from_callable_forms():
    art = cnn()
    assert FromCallable(toy_metric, "toy")(art, {}) == {"answer": 42.0}
    assert FromCallable(lambda a: 3, "three")(art) == {"three": 3.0}
    assert make_evaluator("python: test_evaluators:toy_metric")(art, None) == {"answer": 42.0}
    with pytest.raises(TypeError, match="not a mapping"):
        FromCallable(lambda a, c: "fast", "bad")(art, None)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path")
def test_gpu_check_says_no_cuda_device_and_exits_0():
    r = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh")], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHON": sys.executable})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "no CUDA device" in r.stdout


def _kernel_macs(onnx_bytes: bytes) -> int:
    from tradeoff.predictors.kernels import parse_kernels

    return sum(k.macs for k in parse_kernels(onnx_bytes) if k.op in ("conv", "dwconv", "fc"))  # others: work, not MACs


def test_kernel_table_and_complexity_count_the_same_macs(tmp_path):
    """One graph walker: the kernels a latency predictor sums hold the MACs the objective reports."""
    import torchvision

    r18 = Artifact("resnet18", (torch.randn(1, 3, 64, 64),), module=torchvision.models.resnet18(num_classes=10).eval())
    assert _kernel_macs(r18.onnx_bytes()) == pytest.approx(Complexity()(r18)["macs_m"] * 1e6, abs=0.5)

    q = _qdq_int8(cnn(), tmp_path)
    macs = Complexity()(q)["macs_m"] * 1e6
    assert macs == cnn_macs(16, 16)
    assert _kernel_macs(q.onnx_bytes()) == pytest.approx(macs, abs=0.5)


def test_weight_aliases_count_once_and_isolate_as_constants():
    """torchvision-style exports alias weights through Identity: a kernel cut out takes them as constants."""
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    from tradeoff.predictors.kernels import isolate, parse_kernels

    w = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    nodes = [helper.make_node("Identity", ["w"], ["w_alias"]),
             helper.make_node("Conv", ["x", "w_alias"], ["y"], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["y", "w2_alias"], ["z"], pads=[1, 1, 1, 1]),
             helper.make_node("Identity", ["w2"], ["w2_alias"])]
    w2 = numpy_helper.from_array(np.ones((4, 4, 3, 3), np.float32), "w2")
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("z", onnx.TensorProto.FLOAT, [1, 4, 8, 8])], [w, w2])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    c = count_graph(model, [(1, 3, 8, 8)])
    assert c.params == 4 * 3 * 9 + 4 * 4 * 9
    assert c.macs == 64 * 4 * 27 + 64 * 4 * 36
    convs = [k for k in parse_kernels(model.SerializeToString()) if k.op == "conv"]
    assert [k.params for k in convs] == [4 * 3 * 9, 4 * 4 * 9]
    for k in convs:
        blob, feeds = isolate(model.SerializeToString(), k)
        sess = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
        assert len(sess.get_inputs()) == 1   # the alias is a constant of the kernel, not an input
        assert sess.run(None, {sess.get_inputs()[0].name: feeds[0]})[0].shape == (1, 4, 8, 8)
