"""How many nodes ONNX Runtime runs for a model: the graph it saves after its own optimizations.

A kernel table sums the fused kernels read from the exported graph, but the runtime also runs
whatever the exporter left for run time: a channel-shuffle network runs about 450 nodes for its
117 kernels (shape arithmetic), time no kernel table holds. The count comes from the runtime
itself, after its fusions and layout conversions, so a latency predictor can tell such a model
from the family it was calibrated on.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from dataclasses import dataclass

from .base import Artifact, TargetError

LAYOUT_OPS = frozenset({"ReorderInput", "ReorderOutput"})


@dataclass(frozen=True)
class RuntimeGraph:
    """What ONNX Runtime runs for a model: op types counted, and the tensors it converts between layouts.

    ``reordered`` names, in the exported graph's own names, each tensor the runtime converts to or
    from its blocked NCHWc layout inside the model: squeeze-excite gates and global pools break the
    blocked chain (EfficientNet-B0 converts 52 tensors), a plain ConvNet converts one.
    """

    ops: Counter
    reordered: frozenset[str]


def executed_nodes(target, artifact: Artifact) -> Counter:
    """Op types of the nodes ONNX Runtime runs for ``artifact`` on ``target`` (its optimized graph)."""
    return runtime_graph(target, artifact).ops


def runtime_graph(target, artifact: Artifact) -> RuntimeGraph:
    """The graph ONNX Runtime saves after its own optimizations, read as a ``RuntimeGraph``."""
    import onnx

    if target.kind != "ort":
        raise TargetError(f"executed_nodes needs an ort target, got {target.kind}")
    fd, path = tempfile.mkstemp(suffix=".onnx", prefix="tradeoff-opt-")
    os.close(fd)
    try:
        target.session(artifact, optimized_path=path)
        model = onnx.load(path, load_external_data=False)
    finally:
        for p in (path, path + ".data"):
            if os.path.exists(p):
                os.remove(p)
    nodes = model.graph.node
    reordered = {n.input[0] for n in nodes if n.op_type == "ReorderInput"} | \
                {n.output[0] for n in nodes if n.op_type == "ReorderOutput"}
    return RuntimeGraph(Counter(n.op_type for n in nodes), frozenset(reordered))
