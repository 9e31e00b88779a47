"""ONNX Runtime target: CPU here; CUDA / TensorRT providers where the installed build has them."""

from __future__ import annotations

import platform
from functools import lru_cache

from .base import Artifact, Target, TargetError, register_target

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
OPT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
              "all": "ORT_ENABLE_ALL"}


@lru_cache(maxsize=1)
def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@register_target("ort")
class OrtTarget(Target):
    """Settings: provider (cpu|cuda|tensorrt), threads, batch, graph_optimization (disable|basic|extended|all)."""

    kind = "ort"

    def __init__(self, name=None, cache=True, provider: str = "cpu", threads: int = 1, batch: int = 1,
                 graph_optimization: str = "all", **settings):
        if provider not in PROVIDERS:
            raise ValueError(f"provider {provider!r} is not one of {', '.join(PROVIDERS)}")
        if graph_optimization not in OPT_LEVELS:
            raise ValueError(f"graph_optimization {graph_optimization!r} is not one of {', '.join(OPT_LEVELS)}")
        super().__init__(name, cache, provider=provider, threads=int(threads), batch=int(batch),
                         graph_optimization=graph_optimization, **settings)

    def unavailable(self):
        import onnxruntime as ort

        have = ort.get_available_providers()
        if PROVIDERS[self.settings["provider"]] in have:
            return None
        names = [k for k, v in PROVIDERS.items() if v in have]
        return (f"provider: {self.settings['provider']!r} is not in this onnxruntime build "
                f"(available here: {', '.join(names)})")

    def describe(self):
        import onnxruntime as ort

        return {**super().describe(), "onnxruntime": ort.__version__}

    @property
    def device(self) -> str:
        if self.settings["provider"] == "cpu":
            return f"cpu:{cpu_name()}"
        return f"{self.settings['provider']}:0"

    def session(self, artifact: Artifact, optimized_path: str | None = None):
        """An inference session with the target's settings; ``optimized_path`` also saves the graph ORT will run."""
        import onnxruntime as ort

        provider = PROVIDERS[self.settings["provider"]]
        if provider not in ort.get_available_providers():
            raise TargetError(f"ort: {provider} is not in this onnxruntime build ({', '.join(ort.get_available_providers())})")
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.settings["threads"]
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPT_LEVELS[self.settings["graph_optimization"]])
        so.log_severity_level = 3
        if optimized_path:
            so.optimized_model_filepath = optimized_path
        try:
            return ort.InferenceSession(artifact.onnx_bytes(), so, providers=[provider])
        except TargetError:
            raise
        except Exception as e:  # noqa: BLE001 - ORT rejects the model: a trial failure with its reason
            raise TargetError(f"ort rejected the model: {str(e).strip().splitlines()[0][:300]}") from None

    def _prepare(self, artifact):
        sess = self.session(artifact)
        inputs = artifact.numpy_inputs(self.settings["batch"])
        names = [i.name for i in sess.get_inputs()]
        if len(names) != len(inputs):
            raise TargetError(f"ort: the model takes {len(names)} inputs, the artifact has {len(inputs)}")
        feed = dict(zip(names, inputs))
        sess.run(None, feed)  # fail here, not in the timing loop
        return (lambda: sess.run(None, feed)), None
