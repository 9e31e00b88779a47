"""What ONNX Runtime's executor costs per node, and how many nodes it runs for a model.

A model's time is its kernels' time plus the executor's own cost for every node it runs: the
dispatch, the output allocation, the bookkeeping. Kernels timed one at a time leave that out,
and it is not small on a CPU: a few microseconds per node, so a channel-shuffle network that
runs 450 nodes (shape arithmetic included, which the exporter leaves to run time) spends a
third of its time there. Both halves come from the runtime itself: the nodes from the graph
ONNX Runtime saves after its own optimizations (fusions, layout conversions), and the cost per
node from timing chains of tiny nodes on the target.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter

import numpy as np

from .base import Artifact, TargetError

CHAIN = (1, 97, 193)      # chain lengths timed for the cost per node


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


def chain_model(n: int, width: int = 8) -> Artifact:
    """``n`` tiny Add nodes in a row, on a (1, width) input: all executor, next to no arithmetic."""
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, prev = [], [], "x"
    for i in range(n):
        c = numpy_helper.from_array(np.full((1, width), 1e-3 * (i + 1), dtype=np.float32), f"c{i}")
        inits.append(c)
        nodes.append(helper.make_node("Add", [prev, f"c{i}"], [f"y{i}"]))
        prev = f"y{i}"
    graph = helper.make_graph(nodes, f"chain{n}", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width])],
                              [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [1, width])], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return Artifact(f"executor-chain-{n}", (np.zeros((1, width), np.float32),), onnx=m.SerializeToString())


def node_cost(target) -> dict[str, float]:
    """The executor's cost per node and per run on ``target`` (ms), from chains of tiny nodes.

    A least-squares line through the median times of chains of ``CHAIN`` nodes; the chains' own
    node counts are checked against the optimized graph (ORT must not fold them away).
    """
    ns, ms = [], []
    for n in CHAIN:
        art = chain_model(n)
        ran = sum(executed_nodes(target, art).values())
        if ran != n:
            raise TargetError(f"ort folded the {n}-node timing chain to {ran} nodes")
        ns.append(n)
        ms.append(float(target.measure(art).median_ms))
    slope, intercept = np.polyfit(np.array(ns, float), np.array(ms), 1)
    return {"node_ms": float(max(slope, 0.0)), "run_ms": float(max(intercept, 0.0)), "chain": list(ns),
            "chain_ms": ms}
