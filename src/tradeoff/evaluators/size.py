"""Size of what would be shipped: the ONNX model's bytes, external tensor data included."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..hardware.base import TargetError
from . import Evaluator, TrialError, register_evaluator


@register_evaluator("size")
class Size(Evaluator):
    """``size_mb`` (10^6 bytes) and ``size_bytes`` of the deployed ONNX model.

    A model kept beside external data files counts those files' tensors too; their folder is
    ``artifact.meta["onnx_dir"]``. A module that does not export to ONNX (a diffusion pipeline,
    deployed as torch) is sized by its state dict instead, and ``size_from_onnx`` says which.
    """

    name = "size"
    directions = {"size_mb": "minimize"}

    def __call__(self, artifact, context: Mapping[str, Any] | None = None) -> dict[str, float]:
        from_onnx = 1.0
        try:
            blob = artifact.onnx_bytes()
            n = len(blob) + _external_bytes(blob, artifact.meta.get("onnx_dir"))
        except TargetError as e:
            if artifact.onnx is not None or artifact.module is None:
                raise TrialError(f"size: {e}") from e
            n, from_onnx = _state_dict_bytes(artifact.module), 0.0
        return {"size_mb": n / 1e6, "size_bytes": float(n), "size_from_onnx": from_onnx}


def _external_bytes(blob: bytes, folder: str | Path | None) -> int:
    """Bytes of tensors stored outside the model file (none unless the model says ``location``)."""
    if b"location" not in blob:  # every external tensor names its file under this key: skip parsing
        return 0
    import onnx

    total = 0
    for t in _tensors(onnx.load_model_from_string(blob).graph):
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in t.external_data}
        if "length" in info:
            total += int(info["length"])
            continue
        path = Path(folder or ".") / info.get("location", "")
        if not path.is_file():
            raise TargetError(f"external data of tensor {t.name!r} is not at {path} (set artifact.meta['onnx_dir'])")
        total += path.stat().st_size - int(info.get("offset", 0))
    return total


def _tensors(graph):
    """Every tensor held in a graph: initializers and attributes, subgraphs included."""
    yield from graph.initializer
    for node in graph.node:
        for a in node.attribute:
            if a.HasField("t"):
                yield a.t
            yield from a.tensors
            if a.HasField("g"):
                yield from _tensors(a.g)
            for sub in a.graphs:
                yield from _tensors(sub)


def _state_dict_bytes(module) -> int:
    return sum(t.numel() * t.element_size() for t in module.state_dict().values())
