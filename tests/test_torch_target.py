import pytest
import torch

from tradeoff.hardware.base import Artifact, TargetError, make_target
from tradeoff.hardware.torch import TorchTarget

FAST = {"warmup": 2, "min_repeats": 5, "time_cap_s": 0.3,
        "remeasure_noisy": 1}  # a test of the cache: a noisy figure (a busy machine) is a hit too


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.fc = torch.nn.Linear(4 * 6 * 6, 5)
        self.seen: list[tuple] = []

    def forward(self, x):
        self.seen.append((tuple(x.shape), x.dtype))
        return self.fc(torch.relu(self.conv(x)).flatten(1))


class Branchy(torch.nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: no single graph
            return x * 2
        return x - 1


def tiny_artifact(module=None):
    torch.manual_seed(0)
    return Artifact("tiny", (torch.randn(1, 3, 8, 8),), module=(module or Tiny()).eval())


def test_eager_cpu_stats_cache_and_threads_restored():
    torch.set_num_threads(2)
    target = make_target("torch", device="cpu", mode="eager", threads=1, timing=FAST)
    art = tiny_artifact()
    s = target.measure(art)
    assert 0 < s.p10_ms <= s.median_ms <= s.p90_ms and s.n >= 5 and not s.cached
    assert s.device.startswith("cpu:") and s.settings["device"] == s.device and s.settings["threads"] == 1
    assert s.seconds > 0
    assert torch.get_num_threads() == 2  # the target's thread count does not leak
    again = target.measure(art)
    assert again.cached and again.median_ms == s.median_ms and again.seconds == 0.0


def test_batch_and_dtype_do_not_touch_the_artifact():
    art = tiny_artifact()
    target = TorchTarget(device="cpu", dtype="bfloat16", batch=4, timing=FAST, cache=False)
    target.measure(art)
    assert art.module.conv.weight.dtype == torch.float32  # a cast copy was timed, not the artifact's module
    assert all(dtype == torch.float32 for _, dtype in art.module.seen)  # (the ONNX export for the digest ran it)
    assert art.example_inputs[0].shape == (1, 3, 8, 8)


def test_inputs_are_batched_and_cast():
    module = Tiny().eval()
    art = tiny_artifact(module)
    target = TorchTarget(device="cpu", batch=3, timing=FAST, cache=False)
    run, timer = target._prepare(art)  # the module is already float32 on the CPU: used as is
    assert timer is None
    assert module.seen[-1] == ((3, 3, 8, 8), torch.float32)


@pytest.mark.slow
def test_compile_cpu():
    target = TorchTarget(device="cpu", mode="compile", freezing=True, timing=FAST)
    s = target.measure(tiny_artifact())
    assert s.median_ms > 0 and s.settings["mode"] == "compile" and s.settings["compile_mode"] == "default"
    assert s.settings["freezing"] is True
    assert target.measure(tiny_artifact()).cached
    assert "freezing" not in TorchTarget(mode="eager").settings  # eager figures do not depend on it


def test_compile_failure_is_a_target_error():
    target = TorchTarget(device="cpu", mode="compile", fullgraph=True, timing=FAST, cache=False)
    with pytest.raises(TargetError, match="torch.compile failed"):
        target.measure(tiny_artifact(Branchy()))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this checks the message on a machine without a GPU")
def test_cuda_without_a_gpu_is_a_clear_target_error():
    target = make_target("torch", device="cuda", timing=FAST)
    assert target.device == "cuda:0:unavailable"
    with pytest.raises(TargetError, match=r"'cuda' asked for, but (no CUDA device is visible|this torch build)"):
        target.measure(tiny_artifact())


def test_no_module_is_a_target_error():
    art = Artifact("onnx-only", (torch.randn(1, 3, 8, 8),), module=None, onnx=b"not a model")
    with pytest.raises(TargetError, match="no torch module"):
        TorchTarget(timing=FAST).measure(art)


def test_bad_settings_are_refused_early():
    for bad in ({"device": "tpu"}, {"mode": "jit"}, {"dtype": "int8"}, {"compile_mode": "fastest"}):
        with pytest.raises(ValueError):
            TorchTarget(**bad)
