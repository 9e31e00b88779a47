"""PyTorch target: the module itself, eager or ``torch.compile``d, on CPU or a CUDA GPU.

The practical GPU path where no GPU build of ONNX Runtime or TVM can be installed, and the
only one for models that do not export (diffusion pipelines). On CUDA the timer brackets
``number`` calls with CUDA events and waits for them, so queued GPU work is counted.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import re
import threading
from collections.abc import Callable
from typing import Any

from .base import Artifact, Target, TargetError, register_target
from .ort import cpu_name
from .timing import LatencyStats

MODES = ("eager", "compile")
DTYPES = ("float32", "float16", "bfloat16")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
_CPU_THREADS = threading.Lock()  # torch's thread count is process-wide: one CPU measurement sets it at a time


@register_target("torch")
class TorchTarget(Target):
    """Settings: device (cpu|cuda|cuda:N), mode (eager|compile), dtype, threads (CPU), batch; for compile:
    compile_mode, fullgraph (a graph break fails the trial) and freezing (inductor folds the weights in as
    constants: prepacked CPU convolutions, usually faster for inference)."""

    kind = "torch"

    def __init__(self, name=None, cache=True, device: str = "cpu", mode: str = "eager", dtype: str = "float32",
                 threads: int = 1, batch: int = 1, compile_mode: str = "default", fullgraph: bool = False,
                 freezing: bool = False, **settings):
        device = str(device)
        if not re.fullmatch(r"cpu|cuda(:\d+)?", device):
            raise ValueError(f"device {device!r} is not cpu, cuda or cuda:N")
        if mode not in MODES:
            raise ValueError(f"mode {mode!r} is not one of {', '.join(MODES)}")
        if compile_mode not in COMPILE_MODES:
            raise ValueError(f"compile_mode {compile_mode!r} is not one of {', '.join(COMPILE_MODES)}")
        if dtype not in DTYPES:
            raise ValueError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")
        settings = dict(device=device, mode=mode, dtype=dtype, threads=int(threads), batch=int(batch), **settings)
        if mode == "compile":  # eager figures do not depend on these, so they stay out of its cache key
            settings.update(compile_mode=compile_mode, fullgraph=bool(fullgraph), freezing=bool(freezing))
        super().__init__(name, cache, **settings)

    @property
    def is_cuda(self) -> bool:
        return self.settings["device"].startswith("cuda")

    @property
    def index(self) -> int:
        d = self.settings["device"]
        return int(d.split(":", 1)[1]) if ":" in d else 0

    def unavailable(self):
        if not self.is_cuda:
            return None
        import torch

        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if self.index < n:
            return None
        have = ", ".join(["cpu"] + [f"cuda:{i}" for i in range(n)])
        return f"device: {self.settings['device']!r} has no GPU on this machine (available here: {have})"

    @property
    def device(self) -> str:
        if not self.is_cuda:
            return f"cpu:{cpu_name()}"
        import torch

        if torch.cuda.is_available() and self.index < torch.cuda.device_count():
            return f"cuda:{self.index}:{torch.cuda.get_device_name(self.index)}"
        return f"cuda:{self.index}:unavailable"

    def describe(self) -> dict[str, Any]:
        import torch

        # the resolved device id (with the GPU's or CPU's name) replaces the "cuda"/"cpu" setting;
        # the torch version changes eager and compiled figures alike
        info = {"kind": self.kind, **self.settings, "device": self.device, "torch": torch.__version__}
        if self.is_cuda:
            info["cuda"] = torch.version.cuda
        return info

    def measure(self, artifact: Artifact) -> LatencyStats:
        if artifact.module is None:
            raise TargetError(f"torch: artifact {artifact.name!r} has no torch module (an ONNX-only model "
                              f"needs the ort or tvm target)")
        import torch

        if self.is_cuda:
            usable = torch.cuda.is_available() and self.index < torch.cuda.device_count()
            try:  # the current device is ours while compiling and timing (compiled code and graphs assume it)
                with torch.cuda.device(self.index) if usable else contextlib.nullcontext():
                    return super().measure(artifact)
            finally:
                _release_cuda()

        with _CPU_THREADS:
            before = torch.get_num_threads()
            torch.set_num_threads(self.settings["threads"])
            try:
                return super().measure(artifact)
            finally:
                torch.set_num_threads(before)

    def _torch_device(self):
        import torch

        if not self.is_cuda:
            return torch.device("cpu")
        if not torch.cuda.is_available():
            why = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA device is visible"
            raise TargetError(f"torch: device {self.settings['device']!r} asked for, but {why}")
        if self.index >= torch.cuda.device_count():
            raise TargetError(f"torch: device {self.settings['device']!r} asked for, but only "
                              f"{torch.cuda.device_count()} CUDA device(s) are visible")
        return torch.device("cuda", self.index)

    def _prepare(self, artifact: Artifact) -> tuple[Callable[[], Any], Callable | None]:
        import torch

        dev = self._torch_device()
        dtype = getattr(torch, self.settings["dtype"])
        try:
            module = _placed(artifact.module, dev, dtype)
            inputs = _inputs(artifact.example_inputs, self.settings["batch"], dev, dtype)
            compiling = contextlib.nullcontext()
            if self.settings["mode"] == "compile":
                import torch._inductor.config as inductor_config

                torch._dynamo.reset()  # a fresh cache: a search compiles many instances of one class
                module = torch.compile(module, mode=self.settings["compile_mode"],
                                       fullgraph=self.settings["fullgraph"])
                compiling = inductor_config.patch(freezing=self.settings["freezing"])

            def run():
                with torch.inference_mode():
                    return module(*inputs)

            with compiling:
                run()  # compiles here, and fails here rather than in the timing loop
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
        except torch.cuda.OutOfMemoryError as e:
            raise TargetError(f"torch: out of GPU memory on {self.device} (batch {self.settings['batch']}, "
                              f"{self.settings['dtype']}): {_first_line(e)}") from None
        except TargetError:
            raise
        except Exception as e:  # noqa: BLE001 - a model that cannot be placed, compiled or run is a trial failure
            stage = "torch.compile failed" if self.settings["mode"] == "compile" else "the model failed"
            raise TargetError(f"torch: {stage}: {type(e).__name__}: {_first_line(e)}") from e
        return run, (_cuda_timer(dev) if dev.type == "cuda" else None)


def _placed(module, dev, dtype):
    """The module on ``dev`` in ``dtype``: itself when already there, else a copy (the artifact stays as it was)."""
    tensors = [*module.parameters(), *module.buffers()]
    if all(t.device == dev and (t.dtype == dtype or not t.is_floating_point()) for t in tensors):
        return module.eval()
    return copy.deepcopy(module).to(device=dev, dtype=dtype).eval()  # casts floating tensors only


def _inputs(example_inputs, batch: int, dev, dtype) -> tuple:
    """Example inputs repeated to ``batch`` along dim 0; float tensors cast to ``dtype``, others kept."""
    import numpy as np
    import torch

    out = []
    for x in example_inputs:
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(x)
        if isinstance(x, torch.Tensor):
            if x.ndim and x.shape[0] != batch:
                x = x[:1].expand(batch, *x.shape[1:])
            x = x.to(device=dev, dtype=dtype if x.is_floating_point() else x.dtype).contiguous()
        out.append(x)
    return tuple(out)


def _cuda_timer(dev) -> Callable[[Callable[[], Any], int], float]:
    """CUDA events around ``number`` calls on the device's current stream; ms per call once the GPU is done."""
    import torch

    def timer(fn: Callable[[], Any], number: int) -> float:
        stream = torch.cuda.current_stream(dev)
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(dev)
        start.record(stream)
        for _ in range(number):
            fn()
        end.record(stream)
        end.synchronize()
        return start.elapsed_time(end) / number

    return timer


def _release_cuda() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return s.splitlines()[0][:300] if s else ""
