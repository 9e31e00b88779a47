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

from .base import Artifact, TargetError


def executed_nodes(target, artifact: Artifact) -> Counter:
    """Op types of the nodes ONNX Runtime runs for ``artifact`` on ``target`` (its optimized graph)."""
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
    return Counter(n.op_type for n in model.graph.node)
