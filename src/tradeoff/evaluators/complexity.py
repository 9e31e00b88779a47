"""MACs, parameters and bit-operations counted from the ONNX graph that would be deployed.

Counting the exported graph, not the torch module, is what makes quantization and pruning
show: a physically pruned conv has smaller shapes, a quantized one narrower types. Shapes come
from ONNX shape inference with the graph's free input dimensions fixed to the artifact's
example inputs (batch 1); the outputs of ONNX Runtime contrib ops that ONNX cannot infer
(MatMulNBits, QLinearAdd, ...) are filled in by small rules below and inference runs again.

What counts:
- MACs: Conv (grouped and depthwise too), ConvTranspose, Gemm, MatMul (batched too), Einsum and
  their quantized forms QLinearConv, QLinearMatMul, ConvInteger, MatMulInteger, MatMulNBits,
  DynamicQuantizeMatMul, MatMulIntegerToFloat, QGemm; a QDQ Conv/MatMul is a float op whose inputs
  come from DequantizeLinear. Biases, norms, activations and pooling are not MACs. Ops inside
  control-flow subgraphs (If/Loop/Scan) are not counted.
- BOPs = sum over those ops of MACs x weight bits x activation bits (HAWQ-V3's cost): bits come
  from the operand's type, or from the quantized type behind a DequantizeLinear; MatMulNBits
  uses its ``bits`` attribute. float32 = 32, float16/bfloat16 = 16, int8 = 8, int4 = 4.
- params: elements of the constant tensors the graph computes with (weights, biases, embedding
  tables, norm scales), including quantized weights; not quantization scales and zero points,
  not int64 tensors (shapes, axes, indices) and not single-element constants. A MatMulNBits
  weight counts as K x N, not as its packed bytes. The exporter folds BatchNorm into the conv
  before it, so a folded model has one parameter per channel fewer than torch counts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..hardware.onnx_graph import MAC_OPS, Graph, Unknown, inferred, node_macs, type_bits  # noqa: F401
from . import Evaluator, register_evaluator, trial_error


@dataclass
class OpCount:
    """One MAC-bearing node: its MACs and the bits of its weight and activation operands."""

    node: str
    op: str
    macs: int
    w_bits: int
    a_bits: int

    @property
    def bops(self) -> int:
        return self.macs * self.w_bits * self.a_bits


@dataclass
class GraphCount:
    ops: list[OpCount]
    params: int
    unresolved: list[str]  # MAC-bearing nodes whose shapes could not be inferred (not in macs)

    @property
    def macs(self) -> int:
        return sum(o.macs for o in self.ops)

    @property
    def bops(self) -> int:
        return sum(o.bops for o in self.ops)


@register_evaluator("complexity", "macs")
class Complexity(Evaluator):
    """``macs_m``, ``params_m`` and ``bops_g`` of the deployed ONNX graph (per sample, batch 1)."""

    name = "complexity"
    directions = {"macs_m": "minimize", "params_m": "minimize", "bops_g": "minimize"}

    def __call__(self, artifact, context: Mapping[str, Any] | None = None) -> dict[str, float]:
        import onnx

        with trial_error("complexity"):
            model = onnx.load_model_from_string(artifact.onnx_bytes())
        shapes = [tuple(getattr(x, "shape", np.shape(x))) for x in artifact.example_inputs]
        c = count_graph(model, shapes)
        return {"macs_m": c.macs / 1e6, "params_m": c.params / 1e6, "bops_g": c.bops / 1e9,
                "macs_unresolved": float(len(c.unresolved))}


def count_graph(model, input_shapes: Iterable[tuple] = ()) -> GraphCount:
    """Count MACs, BOPs and parameters of ``model`` (an onnx.ModelProto; not modified)."""
    g = Graph(inferred(model, list(input_shapes)))
    ops, unresolved = [], []
    for node in g.nodes:
        if node.op_type not in MAC_OPS:
            continue
        try:
            macs, w, a = node_macs(g, node)
        except Unknown:
            unresolved.append(node.name or node.op_type)
            continue
        ops.append(OpCount(node.name or node.op_type, node.op_type, int(macs), g.bits(node, w), g.bits(node, a)))
    return GraphCount(ops, g.params(), unresolved)


