"""One reading of an ONNX graph, shared by the complexity counts and the kernel table.

Shapes come from ONNX shape inference with the graph's free input dimensions fixed to the
example inputs (batch 1 by default); outputs of ONNX Runtime contrib ops that ONNX cannot infer
(MatMulNBits, QLinearAdd, ...) are filled in by small rules and inference runs again. The MAC
rules live here once (``node_macs``), so a model's MACs are the same whether they are counted
for an objective or summed over the kernels a latency predictor sees. Weight aliases (an
``Identity`` of an initializer, as torchvision exports emit) count as the constant they name.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from typing import Any

import numpy as np

CONV = {"Conv": (0, 1), "ConvInteger": (0, 1), "QLinearConv": (0, 3), "FusedConv": (0, 1), "NhwcConv": (0, 1)}
MATMUL = {"MatMul": (0, 1), "MatMulInteger": (0, 1), "QLinearMatMul": (0, 3), "DynamicQuantizeMatMul": (0, 1),
          "MatMulIntegerToFloat": (0, 1)}
MAC_OPS = {*CONV, *MATMUL, "ConvTranspose", "Gemm", "QGemm", "MatMulNBits", "Einsum"}
# input slots that hold quantization scales / zero points (or shape-like data), not weights
META_SLOTS = {
    "QuantizeLinear": {1, 2}, "DequantizeLinear": {1, 2}, "QLinearConv": {1, 2, 4, 5, 6, 7},
    "QLinearMatMul": {1, 2, 4, 5, 6, 7}, "ConvInteger": {2, 3}, "MatMulInteger": {2, 3}, "MatMulNBits": {2, 3, 4},
    "DynamicQuantizeMatMul": {2, 3}, "MatMulIntegerToFloat": {2, 3, 4, 5}, "QGemm": {1, 2, 4, 5, 7, 8},
    "QLinearAdd": {1, 2, 4, 5, 6, 7},
    "QLinearMul": {1, 2, 4, 5, 6, 7}, "QLinearGlobalAveragePool": {1, 2, 3, 4}, "QLinearAveragePool": {1, 2, 3, 4},
    "QLinearSigmoid": {1, 2, 3, 4}, "QLinearLeakyRelu": {1, 2, 3, 4}, "QLinearSoftmax": {1, 2, 3, 4},
    "Resize": {1, 2, 3}, "Pad": {1, 2, 3}, "Clip": {1, 2},
}
# ops a weight may pass through between its DequantizeLinear and the op that uses it
TRANSPARENT = {"Transpose", "Reshape", "Identity", "Squeeze", "Unsqueeze", "Flatten"}
# ONNX Runtime contrib ops whose output has the shape (and type) of input 0
SAME_SHAPE = {"QLinearSigmoid", "QLinearLeakyRelu", "QLinearSoftmax", "Gelu", "FastGelu", "BiasGelu", "QuickGelu",
              "SkipLayerNormalization", "SkipSimplifiedLayerNormalization", "SimplifiedLayerNormalization",
              "FusedConv", "BiasAdd"}


def type_bits(elem_type: int) -> int:
    """Bits of an ONNX tensor element type: FLOAT 32, FLOAT16 16, INT8 8, INT4 4, FLOAT8E4M3FN 8 ..."""
    import onnx

    name = onnx.TensorProto.DataType.Name(elem_type)
    m = re.search(r"\d+", name)
    return int(m.group()) if m else {"DOUBLE": 64, "BOOL": 1}.get(name, 32)


class Unknown(Exception):
    """A shape or attribute the graph does not determine."""


def node_macs(g: Graph, node) -> tuple[int, int | None, int | None]:
    """(MACs, weight input slot, activation input slot) of one node."""
    op = node.op_type
    if op in CONV:
        x, w = CONV[op]
        return math.prod(g.shape(node.output[0])) * math.prod(g.shape(node.input[w])[1:]), w, x
    if op == "ConvTranspose":
        return math.prod(g.shape(node.input[0])) * math.prod(g.shape(node.input[1])[1:]), 1, 0
    if op in ("Gemm", "QGemm"):
        w = 3 if op == "QGemm" else 1
        return math.prod(_gemm_mkn(g, node, w)), w, 0
    if op in MATMUL:
        a, b = MATMUL[op]
        return math.prod(g.shape(node.output[0])) * g.shape(node.input[a])[-1], b, a
    if op == "MatMulNBits":
        a = g.shape(node.input[0])
        return math.prod(a[:-1]) * g.attr(node, "N") * g.attr(node, "K"), 1, 0
    if op == "Einsum":  # the product of every index's extent, when operands are contracted
        eq = g.attr(node, "equation")
        eq = eq.decode() if isinstance(eq, bytes) else eq
        terms = eq.replace(" ", "").split("->")[0].split(",")
        if len(terms) < 2 or "..." in eq:
            raise Unknown
        sizes: dict[str, int] = {}
        for term, name in zip(terms, node.input):
            for ch, n in zip(term, g.shape(name)):
                sizes[ch] = max(sizes.get(ch, 1), n)
        return math.prod(sizes.values()), 1, 0
    raise Unknown


def _gemm_mkn(g: Graph, node, w: int) -> tuple[int, int, int]:
    a, b = g.shape(node.input[0]), g.shape(node.input[w])
    m, k = (a[1], a[0]) if g.attr(node, "transA", 0) else a
    return m, k, (b[0] if g.attr(node, "transB", 0) else b[1])


class Graph:
    """Shapes, types, constants, producers and consumers of one (already inferred) top-level graph."""

    def __init__(self, model):
        graph = model.graph
        self.model = model
        self.nodes = list(graph.node)
        self.shapes: dict[str, tuple | None] = {}
        self.types: dict[str, int] = {}
        self.consts: dict[str, tuple[tuple, int]] = {}  # name -> (dims, elem type)
        self.inits = {i.name: i for i in graph.initializer}
        self.const_nodes: dict[str, int] = {}           # output of a Constant node -> its index
        self.alias: dict[str, str] = {}                 # Identity of a constant -> the constant it names
        for vi in [*graph.input, *graph.output, *graph.value_info]:
            t = vi.type.tensor_type
            self.types[vi.name] = t.elem_type
            if t.HasField("shape"):
                dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim)
                self.shapes[vi.name] = None if any(d < 0 for d in dims) else dims
        for init in graph.initializer:
            self.consts[init.name] = (tuple(init.dims), init.data_type)
        for i, node in enumerate(self.nodes):
            if node.op_type == "Constant":
                for a in node.attribute:
                    if a.name == "value":
                        self.consts[node.output[0]] = (tuple(a.t.dims), a.t.data_type)
                        self.const_nodes[node.output[0]] = i
            elif node.op_type == "Identity" and node.input and node.input[0] in self.consts:
                src = self.alias.get(node.input[0], node.input[0])
                self.alias[node.output[0]] = src
                self.consts[node.output[0]] = self.consts[src]
        for name, (dims, et) in self.consts.items():
            self.shapes[name], self.types[name] = dims, et
        self.producer = {o: n for n in self.nodes for o in n.output}
        self.consumers: dict[str, list[int]] = defaultdict(list)
        for i, n in enumerate(self.nodes):
            for t in n.input:
                if t:
                    self.consumers[t].append(i)
        self.outputs = {o.name for o in graph.output}

    def is_const(self, name: str) -> bool:
        return name in self.consts

    def source(self, name: str) -> str:
        """The initializer or Constant a (possibly aliased) constant name stands for."""
        return self.alias.get(name, name)

    def sole_consumer(self, tensor: str) -> int | None:
        c = self.consumers.get(tensor, [])
        return c[0] if len(c) == 1 and tensor not in self.outputs else None

    def activations_in(self, idx: list[int]) -> list[str]:
        """Non-constant inputs of a node group that come from outside it, in order."""
        inside = {o for i in idx for o in self.nodes[i].output}
        seen, out = set(), []
        for i in idx:
            for t in self.nodes[i].input:
                if t and t not in inside and not self.is_const(t) and t not in seen:
                    seen.add(t)
                    out.append(t)
        return out

    def numel(self, name: str) -> int:
        s = self.shapes.get(name)
        return int(np.prod(s)) if s else 0

    def shape(self, name: str) -> tuple:
        s = self.shapes.get(name)
        if s is None:
            raise Unknown
        return s

    @staticmethod
    def attr(node, name: str, default: Any = None) -> Any:
        import onnx

        for a in node.attribute:
            if a.name == name:
                return onnx.helper.get_attribute_value(a)
        if default is None:
            raise Unknown
        return default

    def bits(self, node, slot: int | None) -> int:
        """Bits of a node's operand: the quantized type behind a DequantizeLinear when there is one."""
        if node.op_type == "MatMulNBits" and slot == 1:
            return int(self.attr(node, "bits", 4))
        if node.op_type == "DynamicQuantizeMatMul" and slot == 0:
            return 8  # activations are quantized to 8 bits at run time
        if slot is None or slot >= len(node.input):
            return 32
        name = node.input[slot]
        for _ in range(8):  # walk back through layout ops to a DequantizeLinear
            p = self.producer.get(name)
            if p is None:
                break
            if p.op_type == "DequantizeLinear":
                return type_bits(self.types.get(p.input[0], 1))
            if p.op_type not in TRANSPARENT:
                break
            name = p.input[0]
        return type_bits(self.types.get(node.input[slot], 1))

    def params(self) -> int:
        counted: set[str] = set()
        total = 0
        for node in self.nodes:
            meta = META_SLOTS.get(node.op_type, set())
            if node.op_type == "QLinearConcat":
                meta = {0, 1} | {i for i in range(2, len(node.input)) if (i - 2) % 3}
            for i, name in enumerate(node.input):
                name = self.source(name)
                if name not in self.consts or name in counted or i in meta:
                    continue
                dims, et = self.consts[name]
                n = math.prod(dims)
                if et == 7 or n <= 1:  # INT64: shapes, axes, indices; scalars: epsilons, exponents, clips
                    continue
                if node.op_type == "MatMulNBits" and i == 1:
                    n = int(self.attr(node, "K")) * int(self.attr(node, "N"))
                counted.add(name)
                total += n
        return total


def inferred(model, input_shapes: list[tuple] = ()):
    """A copy of ``model`` with its free input dims fixed and every tensor's shape inferred where possible."""
    import onnx

    if isinstance(model, (bytes, bytearray)):
        model = onnx.load_model_from_string(bytes(model))
    m = onnx.ModelProto()
    m.CopyFrom(model)
    if m.functions:
        import onnx.inliner

        m = onnx.inliner.inline_local_functions(m)
    inits = {i.name for i in m.graph.initializer}
    real = [i for i in m.graph.input if i.name not in inits]
    for k, vi in enumerate(real):
        example = input_shapes[k] if k < len(input_shapes) else ()  # noqa: SIM108
        dims = vi.type.tensor_type.shape.dim
        for j, d in enumerate(dims):
            if not d.HasField("dim_value") or d.dim_value <= 0:
                d.dim_value = int(example[j]) if len(example) == len(dims) else 1
    del m.graph.value_info[:]
    for _ in range(64):  # ONNX inference, then shape arithmetic folded and our rules for contrib ops, until
        try:             # nothing new is learnt (a block whose shapes come from the one before: one round each)
            m = onnx.shape_inference.infer_shapes(m, check_type=False, strict_mode=False, data_prop=True)
        except Exception:  # noqa: BLE001 - an op ONNX cannot infer: count what is known
            break
        folded = _fold_static(m)
        if not (_contrib_shapes(m) or folded):
            break
    return m


FOLD_MAX = 4096           # elements: shape arithmetic and small constants fold, weights never do
NEVER_FOLD = {"Identity", "Constant", "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
              "Multinomial", "Bernoulli"}


def _fold_static(m) -> int:
    """Evaluate the nodes whose inputs are all known small values (``Shape`` of a known shape included):
    the shape arithmetic a dynamic-batch export carries (Shape -> Gather -> Div -> Concat -> Reshape)
    becomes constants, so a Reshape or Split has a known shape and an isolated kernel no dangling input.
    Returns how many nodes were folded."""
    import onnx
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    g = Graph(m)
    values: dict[str, np.ndarray] = {}
    for name, init in g.inits.items():
        if math.prod(init.dims) <= FOLD_MAX:
            values[name] = numpy_helper.to_array(init)
    for name, i in g.const_nodes.items():
        if math.prod(g.consts[name][0]) <= FOLD_MAX:
            values[name] = numpy_helper.to_array(next(a.t for a in g.nodes[i].attribute if a.name == "value"))
    folded: list[int] = []
    for i, node in enumerate(g.nodes):
        if node.op_type in NEVER_FOLD or node.domain not in ("", "ai.onnx") or not node.output:
            continue
        if node.op_type == "Shape":
            if g.shapes.get(node.input[0]) is None:
                continue
            shape = np.array(g.shapes[node.input[0]], dtype=np.int64)
            start, end = Graph.attr(node, "start", 0), Graph.attr(node, "end", len(shape))
            out = [shape[start:end]]
        elif node.op_type == "Size" and g.shapes.get(node.input[0]) is not None:
            out = [np.array(math.prod(g.shapes[node.input[0]]), dtype=np.int64)]
        elif all(not t or t in values for t in node.input) and any(node.input):
            names = [t for t in node.input if t]
            one = helper.make_model(helper.make_graph(
                [node], "fold", [helper.make_tensor_value_info(t, helper.np_dtype_to_tensor_dtype(values[t].dtype),
                                                              list(values[t].shape)) for t in dict.fromkeys(names)],
                [helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in node.output]),
                opset_imports=list(m.opset_import), ir_version=m.ir_version)
            try:
                out = ReferenceEvaluator(one).run(None, {t: values[t] for t in names})
            except Exception:  # noqa: BLE001 - an op the reference runtime lacks: left as it is
                continue
        else:
            continue
        out = [np.asarray(v) for v in out]
        if any(v.size > FOLD_MAX or v.dtype == object for v in out):
            continue
        values.update(zip(node.output, out))
        folded.append(i)
    if not folded:
        return 0
    gone = set(folded)
    keep = [n for i, n in enumerate(g.nodes) if i not in gone]
    needed = {t for n in keep for t in n.input} | g.outputs
    keep = [n for n in keep if n.op_type != "Constant" or n.output[0] in needed]   # constants only they used
    new_inits = [numpy_helper.from_array(values[o], o) for i in folded for o in g.nodes[i].output if o in needed]
    del m.graph.node[:]
    m.graph.node.extend(keep)
    m.graph.initializer.extend(new_inits)
    return len(folded)


def _contrib_shapes(m) -> bool:
    """Add value_info for outputs of known contrib ops; True when something was added."""
    import onnx

    g = Graph(m)
    added = False
    for node in g.nodes:
        if not node.output or g.shapes.get(node.output[0]) is not None:
            continue
        try:
            shape, et = _contrib_rule(g, node)
        except Unknown:
            continue
        m.graph.value_info.append(onnx.helper.make_tensor_value_info(node.output[0], et, list(shape)))
        added = True
    return added


def _contrib_rule(g: Graph, node) -> tuple[tuple, int]:
    op, x = node.op_type, node.input[0] if node.input else ""
    if op == "MatMulNBits":
        return (*g.shape(x)[:-1], int(g.attr(node, "N"))), g.types.get(x, 1)
    if op in ("DynamicQuantizeMatMul", "MatMulIntegerToFloat"):
        a, b = g.shape(x), g.shape(node.input[1])
        return tuple(np.broadcast_shapes(a[:-2], b[:-2])) + (a[-2], b[-1]), 1
    if op == "QGemm":
        m, _, n = _gemm_mkn(g, node, 3)
        quantized_out = len(node.input) > 8 and node.input[8]
        return (m, n), (g.types.get(node.input[8], 2) if quantized_out else 1)
    if op in ("QLinearAdd", "QLinearMul"):
        return tuple(np.broadcast_shapes(g.shape(x), g.shape(node.input[3]))), g.types.get(x, 2)
    if op in SAME_SHAPE:
        return g.shape(x), g.types.get(x, 1)
    if op == "QLinearGlobalAveragePool":
        s = g.shape(x)
        if g.attr(node, "channels_last", 0):
            return (s[0], *[1] * (len(s) - 2), s[-1]), g.types.get(x, 2)
        return (*s[:2], *[1] * (len(s) - 2)), g.types.get(x, 2)
    if op == "QLinearConcat":
        parts = [g.shape(node.input[i]) for i in range(2, len(node.input), 3)]
        axis = int(g.attr(node, "axis"))
        out = list(parts[0])
        out[axis] = sum(p[axis] for p in parts)
        return tuple(out), g.types.get(node.input[2], 2)
    raise Unknown
