"""Mixed-precision quantization space: bits per layer of an ONNX model, materialized by ONNX Runtime.

Layers are the graph's Conv, Gemm and MatMul nodes, named by the torch module they came from.
Each takes a weight bit-width from ``bits`` and, where the space has ``act_bits``, an activation
bit-width (param ``<layer>:act``, 8 or 32); without ``act_bits`` activations follow the weights
(int8 weights -> int8 activations, anything else -> float), as ONNX Runtime's defaults do:

- 32: left in float;
- 16: no 16-bit integer kernels in ONNX Runtime's CPU provider, so it runs in float (recorded as
  a fallback, never silently);
- 8: static QDQ, per-channel int8 weights and int8 activations (``quantize_static`` on just the
  chosen nodes; ONNX Runtime fuses each into an integer kernel);
- 4: weight-only. A MatMul (a Gemm is rewritten as one) becomes ``MatMulNBits``, ONNX Runtime's
  4-bit kernel (``MatMulNBitsQuantizer``); a Conv has no 4-bit kernel, so its weights are stored
  as per-channel int4 with a DequantizeLinear ahead of a float Conv: the bytes shrink, the compute
  stays float and the weights are dequantized on every run (slower than fp32 as measured; recorded
  as a fallback).

With float activations (``:act`` 32), 8-bit weights are weight-only too: ``MatMulNBits`` with
8-bit weights for MatMul/Gemm, int8 stored weights with float compute for a Conv (a fallback).
Combinations without a kernel run as the nearest one that has one, recorded as a fallback:
int8 activations with float weights run in float; int8 activations with 4-bit weights run W4A32.

``quantize`` returns the bytes to deploy and a record of what actually runs for each layer.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .params import Bits
from .space import Config, Space

QUANT_OPS = ("Conv", "Gemm", "MatMul")
WEIGHT_ONLY_BLOCK = 32
ACT = ":act"   # suffix of a layer's activation-bits param


class QuantError(ValueError):
    """A layer the quantizer cannot handle at the asked bit-width; the trial fails with this reason."""


def layer_name(node_name: str, op: str) -> str:
    """``/layer1/layer1.0/conv1/Conv`` -> ``layer1.0.conv1`` (the torch module's name)."""
    parts = [p for p in node_name.strip("/").split("/") if p]
    if parts and parts[-1].split("_")[0] == op:
        parts = parts[:-1]
    out: list[str] = []
    for p in parts:
        if out and p.startswith(out[-1] + "."):
            out[-1] = p
        else:
            out.append(p)
    name = ".".join(out)
    return name or node_name


def quant_layers(onnx_bytes: bytes) -> dict[str, str]:
    """Quantizable layers of an ONNX model: layer name -> node name (Conv, Gemm, MatMul, in graph order)."""
    import onnx

    model = onnx.load_model_from_string(onnx_bytes)
    out: dict[str, str] = {}
    for i, node in enumerate(model.graph.node):
        if node.op_type not in QUANT_OPS:
            continue
        name = layer_name(node.name or f"{node.op_type}_{i}", node.op_type)
        while name in out:
            name += "_"
        out[name] = node.name
    return out


def check_bits(bits: Sequence[int], act_bits: Sequence[int] | None = None) -> None:
    """Refuse bit-widths the quantizer cannot make, by name, before any model is built."""
    bad = sorted({int(b) for b in bits} - {4, 8, 16, 32})
    if bad:
        raise ValueError(f"bits: {bad} not supported; allowed: 4, 8, 16, 32")
    bad = sorted({int(b) for b in act_bits or ()} - {8, 32})
    if bad:
        raise ValueError(f"act_bits: {bad} not supported; allowed: 8 (int8 activations), 32 (float)")


class QuantSpace(Space):
    """Bits per layer; ``nodes`` maps each param to the ONNX node it sets."""

    def __init__(self, nodes: Mapping[str, str], bits: Sequence[int], act_bits: Sequence[int] | None = None):
        check_bits(bits, act_bits)
        params: dict[str, Bits] = {}
        for name in nodes:
            params[name] = Bits(bits)
            if act_bits:
                params[name + ACT] = Bits(act_bits)
        super().__init__(params)
        self.nodes = dict(nodes)
        self.bits = tuple(sorted(int(b) for b in bits))
        self.act_bits = tuple(sorted(int(b) for b in act_bits or ()))

    def uniform(self, bits: int, act: int | None = None) -> Config:
        """Every layer at ``bits``; activations at ``act`` (default: int8 with int8 weights, else float)."""
        return self.with_acts({n: bits for n in self.nodes}, act)

    def with_acts(self, weights: Mapping[str, int], act: int | None = None) -> Config:
        """Weight bits per layer plus, where the space has them, activation bits (tied by default)."""
        out: Config = {}
        for n in self.nodes:
            out[n] = weights[n]
            if self.act_bits:
                a = act or (8 if weights[n] == 8 else 32)
                out[n + ACT] = a if a in self.act_bits else self.act_bits[-1]
        return out


def quant_space(onnx_bytes: bytes, bits: Sequence[int] = (4, 8, 32),
                act_bits: Sequence[int] | None = None) -> QuantSpace:
    """The space of per-layer weight (and optionally activation) bit-widths for this model's layers."""
    nodes = quant_layers(onnx_bytes)
    if not nodes:
        raise ValueError("model: no Conv, Gemm or MatMul layers to quantize")
    return QuantSpace(nodes, bits, act_bits)


def quantize(onnx_bytes: bytes, config: Mapping[str, int], nodes: Mapping[str, str],
             calib: np.ndarray | Sequence[np.ndarray]) -> tuple[bytes, dict[str, Any]]:
    """The deployable bytes for ``config`` (layer -> weight bits, ``layer:act`` -> activation bits)
    and what runs for each layer."""
    import onnx

    model = onnx.load_model_from_string(onnx_bytes)
    present = {n.name for n in model.graph.node}
    runs: dict[str, str] = {}
    kinds: dict[str, str] = {}
    static: list[str] = []
    weight_only: dict[int, list[str]] = {4: [], 8: []}
    for layer, bits in config.items():
        if layer.endswith(ACT):
            continue
        bits = int(bits)
        act = int(config.get(layer + ACT, 8 if bits == 8 else 32))
        node = nodes[layer]
        if node not in present:   # a pruned model keeps its module names, so this is a real mismatch
            raise QuantError(f"layer {layer}: node {node!r} is not in the model")
        kinds[layer] = f"W{bits}A{act}"
        if bits in (16, 32):
            runs[layer] = "fp32"
            if bits == 16:
                runs[layer] += " (fallback: no 16-bit integer kernel in ONNX Runtime CPU)"
            if act == 8:
                runs[layer] += f" (fallback: W{bits}A8 has no kernel in ONNX Runtime CPU; activations stay float)"
        elif bits == 8 and act == 8:
            static.append(node)
        else:
            weight_only[bits].append(node)
    layer_of = {v: k for k, v in nodes.items()}
    for bits, chosen in weight_only.items():
        if chosen:
            model, done = _weight_only(model, chosen, bits)
            for node, kind in done.items():
                layer = layer_of[node]
                if kinds[layer].endswith("A8"):   # W4A8: no kernel takes int4 weights with int8 activations
                    kind += " (fallback: W4A8 has no kernel in ONNX Runtime CPU; ran W4A32)"
                runs[layer] = kind
    if static:
        model = _static_int8(model, static + _int8_glue(model, static), calib)
        for node in static:
            runs[layer_of[node]] = "int8 (QDQ, per-channel weights, int8 activations)"
    record = {
        "runs": runs,
        "n_int8": len(static),
        "n_int8_weight_only": len(weight_only[8]),
        "n_int4": len(weight_only[4]),
        "n_fallback": sum("fallback" in v for v in runs.values()),
    }
    return model.SerializeToString(), record


# -- int8: ONNX Runtime's static QDQ quantizer on the chosen nodes ----------------------------------
class _Reader:
    """A CalibrationDataReader over calibration batches (one input)."""

    def __init__(self, name: str, batches: Sequence[np.ndarray]):
        self._it = iter([{name: np.ascontiguousarray(b, dtype=np.float32)} for b in batches])

    def get_next(self):
        return next(self._it, None)

    def rewind(self):  # pragma: no cover - part of the reader protocol
        pass


def _int8_glue(model, static: list[str]) -> list[str]:
    """Ops between layers (Relu, Add, pooling, Flatten...) whose neighbouring layers are all int8:
    quantized too, so an int8 region stays int8 rather than hopping to float and back at each op."""
    producer = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    chosen = set(static)

    def layers_near(node) -> set[str]:
        found, seen, todo = set(), set(), [node]
        while todo:
            n = todo.pop()
            nexts = [producer[i] for i in n.input if i in producer]
            nexts += [c for o in n.output for c in consumers.get(o, [])]
            for m in nexts:
                if m.name in seen:
                    continue
                seen.add(m.name)
                if m.op_type in QUANT_OPS or m.op_type == "MatMulNBits":
                    found.add(m.name)
                else:
                    todo.append(m)
        return found

    out = []
    for n in model.graph.node:
        if n.name and n.op_type not in (*QUANT_OPS, "MatMulNBits", "QuantizeLinear", "DequantizeLinear"):
            near = layers_near(n)
            if near and near <= chosen:
                out.append(n.name)
    return out


def _static_int8(model, node_names: list[str], calib) -> Any:
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    batches = [calib] if isinstance(calib, np.ndarray) else list(calib)
    if not batches:
        raise QuantError("int8 needs calibration data (calib)")
    batches = [b for x in batches for b in np.array_split(x, max(1, len(x) // 64))]
    inputs = {i.name for i in model.graph.initializer}
    name = next(i.name for i in model.graph.input if i.name not in inputs)
    with tempfile.TemporaryDirectory() as tmp, _quiet():
        src, dst = os.path.join(tmp, "in.onnx"), os.path.join(tmp, "out.onnx")
        onnx.save(model, src)
        try:
            quantize_static(src, dst, _Reader(name, batches), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=True,
                            nodes_to_quantize=list(node_names), calibrate_method=CalibrationMethod.MinMax,
                            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
        except Exception as e:
            raise QuantError(f"int8 quantization failed: {type(e).__name__}: {str(e).strip()[:300]}") from None
        return onnx.load(dst)


# -- weight-only (4 or 8 bits, float activations) --------------------------------------------------
def _weight_only(model, node_names: list[str], bits: int) -> tuple[Any, dict[str, str]]:
    """MatMulNBits for MatMul/Gemm nodes; int4/int8 stored weights (float compute) for Conv nodes."""
    inits = {t.name: t for t in model.graph.initializer}
    by_name = {n.name: n for n in model.graph.node}
    kinds: dict[str, str] = {}
    matmuls: list[str] = []
    for name in node_names:
        node = by_name[name]
        if len(node.input) < 2 or node.input[1] not in inits:
            raise QuantError(f"layer {name}: {bits}-bit weight-only needs a constant weight; "
                             f"{node.op_type} here multiplies two computed tensors")
        if node.op_type == "Conv":
            _int_conv_weight(model, node, inits[node.input[1]], bits)
            kinds[name] = (f"int{bits} weights, fp32 compute (fallback: no {bits}-bit weight-only Conv kernel "
                           f"in ONNX Runtime CPU)")
        else:
            weight = _gemm_to_matmul(model, node, inits) if node.op_type == "Gemm" else node.input[1]
            k = inits[weight].dims[0]
            if k % 2 or k < 16:
                raise QuantError(f"layer {name}: MatMulNBits needs an input size >= 16 and even, got {k}")
            matmuls.append(name)
            kinds[name] = f"int{bits} (MatMulNBits, block {WEIGHT_ONLY_BLOCK}, fp32 activations)"
    if matmuls:
        model = _matmul_nbits(model, matmuls, bits)
    return model, kinds


def _matmul_nbits(model, node_names: list[str], bits: int):
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    with _quiet():
        try:
            cfg = DefaultWeightOnlyQuantConfig(block_size=WEIGHT_ONLY_BLOCK, is_symmetric=True, bits=bits)
            q = MatMulNBitsQuantizer(model, block_size=WEIGHT_ONLY_BLOCK, is_symmetric=True,
                                     nodes_to_include=list(node_names), algo_config=cfg)
            q.process()
        except Exception as e:
            raise QuantError(f"int{bits} MatMulNBits failed: {type(e).__name__}: {str(e).strip()[:300]}") from None
    out = q.model.model
    done = {n.name for n in out.graph.node if n.op_type == "MatMulNBits"}
    missing = [n for n in node_names if not any(d == n or d.startswith(n) for d in done)]
    if missing:
        raise QuantError(f"int{bits}: MatMulNBits left {', '.join(missing)} unquantized")
    return out


def _gemm_to_matmul(model, node, inits) -> str:
    """Gemm(x, W, b) with transB -> MatMul(x, W^T) + Add(b), same node name, so MatMulNBits applies."""
    from onnx import helper, numpy_helper

    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
        raise QuantError(f"layer {node.name}: Gemm with transA/alpha/beta is not handled by weight-only")
    w = numpy_helper.to_array(inits[node.input[1]])
    if attrs.get("transB", 0):
        w = w.T
    wname = node.input[1] + "_kn"
    model.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(w), wname))
    inits[wname] = model.graph.initializer[-1]
    out = node.output[0]
    bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
    mm_out = out + "_mm" if bias else out
    idx = list(model.graph.node).index(node)
    new = [helper.make_node("MatMul", [node.input[0], wname], [mm_out], name=node.name)]
    if bias:
        new.append(helper.make_node("Add", [mm_out, bias], [out], name=node.name + "_bias"))
    model.graph.node.remove(node)
    for k, n in enumerate(new):
        model.graph.node.insert(idx + k, n)
    return wname


def _int_conv_weight(model, node, init, bits: int) -> None:
    """Replace a Conv's float weight with per-output-channel symmetric int4/int8 + DequantizeLinear."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.to_array(init).astype(np.float32)
    flat = w.reshape(w.shape[0], -1)
    top = 2 ** (bits - 1) - 1
    scale = np.maximum(np.abs(flat).max(axis=1), 1e-12) / top
    q = np.clip(np.rint(flat / scale[:, None]), -top - 1, top).astype(np.int8).reshape(w.shape)
    base = init.name + f"_int{bits}"
    dtype = TensorProto.INT4 if bits == 4 else TensorProto.INT8
    if bits == 8:   # raw bytes: one per weight
        qt = numpy_helper.from_array(q, base)
        zp = numpy_helper.from_array(np.zeros(w.shape[0], np.int8), base + "_zp")
    else:
        qt = helper.make_tensor(base, dtype, list(w.shape), q.flatten().tolist())
        zp = helper.make_tensor(base + "_zp", dtype, [w.shape[0]], [0] * w.shape[0])
    model.graph.initializer.extend([qt, numpy_helper.from_array(scale.astype(np.float32), base + "_scale"), zp])
    dq = helper.make_node("DequantizeLinear", [base, base + "_scale", base + "_zp"], [base + "_dq"],
                          name=node.name + "_w_dq", axis=0, domain="com.microsoft")
    idx = list(model.graph.node).index(node)
    model.graph.node.insert(idx, dq)
    node.input[1] = base + "_dq"
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    still_used = any(init.name in n.input for n in model.graph.node)
    if not still_used:
        model.graph.initializer.remove(init)


class _quiet:
    """ONNX Runtime's quantizers log advice at WARNING for every call; keep the progress readable."""

    def __enter__(self):
        self._level = logging.getLogger().level
        logging.getLogger().setLevel(logging.ERROR)

    def __exit__(self, *exc):
        logging.getLogger().setLevel(self._level)
        return False
