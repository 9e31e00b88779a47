"""An ONNX graph as the kernels a runtime executes; each kernel timed alone, once, in a table on disk.

Runtimes fuse: ONNX Runtime's CPU provider runs Conv + residual Add + Relu/Clip as one
(NCHWc) convolution, and torch's exporter has already folded BatchNorm into the Conv. So the
graph is split the way nn-Meter splits it: a Conv with the Add and activation (HardSwish
included) that only feed each other is one kernel, a Gemm with its bias and activation another,
x * sigmoid(x) (SiLU) one more, as ONNX Runtime runs each as one node; shape-only ops cost
nothing. A kernel knows its shapes, MACs, params and bytes, and ``isolate`` cuts it out of the
graph (deterministic weights) so ``KernelTable`` can time it alone on the target, once, ever.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..hardware.onnx_graph import Graph, Unknown, inferred, node_macs

FREE_OPS = {"Constant", "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Shape", "Dropout"}
ACTIVATIONS = {"Relu", "Clip", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish"}   # fused into Conv / Gemm by ORT
BINARY = {"Add", "Sub", "Mul", "Div", "Sum"}
# element-wise ops ORT runs on their own (not fused into a Conv / Gemm)
UNARY = {"Erf", "Exp", "Log", "Sqrt", "Neg", "Abs", "Softplus", "Gelu", "Mish", "Elu", "Selu",
         "PRelu", "Pow", "Reciprocal", "Cast", "Softsign", "ThresholdedRelu"}
KERNEL_TYPES = ("conv", "dwconv", "fc", "gap", "pool", "add", "concat", "elemwise", "other")
FEATURES = ("h", "w", "cin", "cout", "ho", "wo", "k", "stride", "groups", "macs", "params", "bytes", "residual",
            "act")


@dataclass(frozen=True)
class Kernel:
    """One fused kernel: what runs, on which shapes; equal configs share one measurement."""

    op: str                                   # one of KERNEL_TYPES
    nodes: tuple[str, ...]                    # ONNX op types fused into it, e.g. ("Conv", "Add", "Relu")
    inputs: tuple[tuple[int, ...], ...]       # shapes of its activation inputs
    output: tuple[int, ...]
    attrs: tuple[tuple[str, Any], ...] = ()   # kernel, stride, groups, pads ...
    macs: int = 0
    params: int = 0
    index: tuple[int, ...] = field(default=(), compare=False, repr=False)   # node positions in the graph

    @property
    def key(self) -> str:
        blob = json.dumps([self.op, self.nodes, self.inputs, self.output, self.attrs], default=str)
        return hashlib.sha1(blob.encode()).hexdigest()[:20]

    def attr(self, name: str, default: Any = 0) -> Any:
        return dict(self.attrs).get(name, default)

    @property
    def bytes(self) -> int:
        """fp32 bytes read and written: activations in and out plus weights."""
        return 4 * (sum(int(np.prod(s)) for s in self.inputs) + int(np.prod(self.output)) + self.params)

    def features(self) -> dict[str, float]:
        x = self.inputs[0] if self.inputs else ()
        h, w = (x[2], x[3]) if len(x) == 4 else (1, 1)
        ho, wo = (self.output[2], self.output[3]) if len(self.output) == 4 else (1, 1)
        cin = x[1] if len(x) >= 2 else 1
        cout = self.output[1] if len(self.output) >= 2 else 1
        return {"h": h, "w": w, "cin": cin, "cout": cout, "ho": ho, "wo": wo, "k": self.attr("k", 1),
                "stride": self.attr("stride", 1), "groups": self.attr("groups", 1), "macs": self.macs,
                "params": self.params, "bytes": self.bytes, "residual": float("Add" in self.nodes[1:]),
                "act": float(any(n in ACTIVATIONS for n in self.nodes))}

    def vector(self) -> np.ndarray:
        f = self.features()
        return np.array([float(f[k]) for k in FEATURES])

    def describe(self) -> str:
        f = self.features()
        return (f"{'+'.join(self.nodes)} {f['cin']}x{f['h']}x{f['w']} -> {f['cout']}x{f['ho']}x{f['wo']}"
                + (f" k{f['k']} s{f['stride']} g{f['groups']}" if self.op in ("conv", "dwconv", "pool") else ""))


def _graph(model) -> Graph:
    """The shared ONNX reading (shapes inferred with free dims at 1, weight aliases resolved)."""
    return model if isinstance(model, Graph) else Graph(inferred(model))


def _shape(g: Graph, name: str) -> tuple[int, ...]:
    return tuple(g.shapes.get(name) or ())


def _attrs(node) -> dict[str, Any]:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def parse_kernels(model) -> list[Kernel]:
    """The kernels a fusing CPU runtime executes for ``model`` (ONNX bytes or ModelProto), in order."""
    g = _graph(model)
    used: set[int] = set()
    kernels: list[Kernel] = []

    def absorb(group: list[int], out: str, ops: set[str], residual_ok: bool = False) -> str:
        """Extend ``group`` with the sole consumer of ``out`` when it is one of ``ops``."""
        nxt = g.sole_consumer(out)
        if nxt is None or nxt in used or g.nodes[nxt].op_type not in ops:
            return out
        node = g.nodes[nxt]
        if node.op_type == "Add":
            other = [t for t in node.input if t != out]
            if len(other) != 1 or not (g.is_const(other[0]) or
                                       (residual_ok and g.shapes.get(other[0]) == g.shapes.get(out))):
                return out
        if node.op_type == "Clip" and not all(not t or g.is_const(t) for t in node.input[1:]):
            return out
        group.append(nxt)
        used.add(nxt)
        return node.output[0]

    def absorb_swish(group: list[int], out: str, x: str) -> str:
        nxt = g.sole_consumer(out)
        if nxt is None or nxt in used or g.nodes[nxt].op_type != "Mul" or sorted(g.nodes[nxt].input) != sorted([x, out]):
            return out
        group.append(nxt)
        used.add(nxt)
        return g.nodes[nxt].output[0]

    for i, node in enumerate(g.nodes):
        if i in used:
            continue
        used.add(i)
        op = node.op_type
        if op in FREE_OPS:
            continue
        group, out, a = [i], node.output[0], _attrs(node)
        attrs: dict[str, Any] = {}
        macs = 0
        if op == "Conv":
            w = _shape(g, node.input[1])
            x = _shape(g, node.input[0])
            out = absorb(group, out, {"Add"}, residual_ok=True)
            out = absorb(group, out, ACTIVATIONS)
            groups = int(a.get("group", 1))
            k = tuple(int(v) for v in a.get("kernel_shape", w[2:]))
            attrs = {"k": k[0] if len(set(k)) == 1 else list(k), "stride": int(a.get("strides", [1])[0]),
                     "groups": groups, "pads": list(a.get("pads", [])), "dilations": list(a.get("dilations", []))}
            macs = _macs(g, node)
            kind = "dwconv" if groups > 1 and groups == x[1] else "conv"
        elif op in ("Gemm", "MatMul"):
            if op == "MatMul" and not g.is_const(node.input[1]):
                kind = "other"
            else:
                out = absorb(group, out, {"Add"})
                out = absorb(group, out, ACTIVATIONS)
                macs = _macs(g, node)
                kind = "fc"
        elif op in ("GlobalAveragePool", "GlobalMaxPool") or (
                op == "ReduceMean" and len(g.shapes.get(node.input[0], ())) == 4):
            kind, macs = "gap", g.numel(node.input[0])
        elif op in ("MaxPool", "AveragePool"):
            k = tuple(a.get("kernel_shape", [1]))
            attrs = {"k": int(k[0]), "stride": int(a.get("strides", [1])[0]), "pads": list(a.get("pads", []))}
            kind, macs = "pool", g.numel(node.output[0]) * int(np.prod(k))
        elif op in BINARY:
            out = absorb(group, out, ACTIVATIONS)
            kind, macs = "add", g.numel(node.output[0])
        elif op == "Concat":
            kind, attrs = "concat", {"axis": int(a.get("axis", 0))}
        elif op in ACTIVATIONS or op in UNARY:
            if op == "Sigmoid":            # x * sigmoid(x) (SiLU / Swish): ORT runs both as one node (QuickGelu)
                out = absorb_swish(group, out, node.input[0])
            kind, macs = "elemwise", g.numel(node.output[0])
        else:
            kind = "other"
            attrs = {k: v for k, v in a.items() if isinstance(v, (int, float, str, bytes, list))}
        ins = tuple(_shape(g, t) for t in g.activations_in(group))
        params = sum(g.numel(t) for t in dict.fromkeys(g.source(t) for j in group for t in g.nodes[j].input)
                     if t in g.inits)
        kernels.append(Kernel(kind, tuple(g.nodes[j].op_type for j in group), ins, _shape(g, out),
                              tuple(sorted((k, str(v) if isinstance(v, bytes) else v) for k, v in attrs.items())),
                              int(macs), int(params), tuple(group)))
    return kernels


def _macs(g: Graph, node) -> int:
    """MACs by the shared rules (the complexity evaluator's); 0 where shapes are unknown."""
    try:
        return int(node_macs(g, node)[0])
    except Unknown:
        return 0


def isolate(model, kernel: Kernel, seed: int = 0) -> tuple[bytes, list[np.ndarray]]:
    """The kernel alone as an ONNX model (deterministic weights) and example inputs for it."""
    import onnx
    from onnx import helper, numpy_helper

    g = _graph(model)
    nodes = [g.nodes[i] for i in kernel.index]
    inside = {o for n in nodes for o in n.output}
    rng = np.random.default_rng(seed)
    inits, inputs, feeds = [], [], []
    for name in dict.fromkeys(t for n in nodes for t in n.input if t and t not in inside):
        if g.is_const(name):   # an initializer, a Constant, or an alias of one: a constant of the kernel
            src = g.source(name)
            tensor = g.inits[src] if src in g.inits else next(
                a.t for a in g.nodes[g.const_nodes[src]].attribute if a.name == "value")
            arr = numpy_helper.to_array(tensor)
            if arr.dtype == np.float32 and arr.size > 1:
                arr = (rng.standard_normal(arr.shape) * 0.1).astype(np.float32)
            inits.append(numpy_helper.from_array(arr, name))
        else:
            shape, elem = _shape(g, name), g.types.get(name) or onnx.TensorProto.FLOAT
            inputs.append(helper.make_tensor_value_info(name, elem, list(shape)))
            dtype = onnx.helper.tensor_dtype_to_np_dtype(elem)
            feeds.append(rng.standard_normal(shape).astype(dtype) if np.issubdtype(dtype, np.floating)
                         else np.zeros(shape, dtype))
    out = nodes[-1].output[0]
    outputs = [helper.make_tensor_value_info(out, g.types.get(out) or onnx.TensorProto.FLOAT,
                                             list(_shape(g, out)) or None)]
    graph = helper.make_graph(nodes, f"kernel_{kernel.key}", inputs, outputs, inits)
    m = helper.make_model(graph, opset_imports=list(g.model.opset_import), ir_version=g.model.ir_version)
    return m.SerializeToString(), feeds




# -- a model's kernels, and the table of kernels timed alone -------------------------------------

_PARSED: OrderedDict[str, list[Kernel]] = OrderedDict()


def model_kernels(artifact) -> list[Kernel]:
    """The artifact's fused kernels (parsed once per digest)."""
    key = artifact.digest()
    if key not in _PARSED:
        _PARSED[key] = parse_kernels(artifact.onnx_bytes())
        while len(_PARSED) > 4096:
            _PARSED.popitem(last=False)
    _PARSED.move_to_end(key)
    return _PARSED[key]


# which figure of a measurement a predictor learns: the median (the project's latency_ms), or the
# 10th percentile, which a busy shared machine disturbs far less (a run preempted once is an outlier)
STATS = ("median_ms", "p10_ms")
TIMINGS = ("profile", "wall")


# how a profiled kernel is read: its nodes, each net of the profiler's own floor (a new method, a new table)
PROFILE_METHOD = "nodes-net-of-floor"


def _table_settings(target, timing: str) -> dict:
    return {**target.describe(), "kernel_timing": timing, **({"profile": PROFILE_METHOD} if timing == "profile" else {})}


def _settings_hash(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]


class KernelTable:
    """Per-kernel latencies on one target, each timed alone once: a JSON file next to the measurement cache.

    ``timing="profile"`` (the default on ONNX Runtime) reads the kernel's own nodes from the
    runtime's profiler, leaving out the layout conversions a kernel pays only when alone;
    ``"wall"`` times the whole run with ``target.measure`` (any target). The file is keyed by
    the target's full description (device, runtime settings, timing policy) and the timing
    mode, so a table is never reused on another device or under other settings. ``measured``
    counts the kernels this object had to time. A kernel in the table is not timed again, unless
    its figure is noisy and was measured fewer than the policy's ``remeasure_noisy`` times
    (``attempts`` in its entry; the better figure is kept, ``remeasured`` counts these), or the
    target says ``remeasure`` (each kernel timed afresh once by this object).
    """

    def __init__(self, target, path: str | Path | None = None, stat: str = "median_ms", timing: str = "auto"):
        if stat not in STATS:
            raise ValueError(f"stat {stat!r} is not one of {', '.join(STATS)}")
        if timing == "auto":
            timing = "profile" if target.kind == "ort" else "wall"
        if timing not in TIMINGS:
            raise ValueError(f"timing {timing!r} is not one of auto, {', '.join(TIMINGS)}")
        if timing == "profile" and target.kind != "ort":
            raise ValueError(f"kernel timing by profiler needs an ort target, got {target.kind}")
        self.target, self.stat, self.timing = target, stat, timing
        self.settings = _table_settings(target, timing)
        self.path = Path(path) if path else self.default_path(target, timing)
        self.entries: dict[str, dict[str, Any]] = {}
        self.measured = 0
        self.remeasured = 0
        self.seconds = 0.0
        self._fresh: set[str] = set()     # kernels this object timed (remeasure: once each)
        self._load()

    @staticmethod
    def default_path(target, timing: str = "profile") -> Path:
        if getattr(target, "cache", None) is not None:
            root = Path(target.cache.path).parent
        else:
            from ..core.paths import tradeoff_home

            root = tradeoff_home()
        settings = _table_settings(target, timing)
        return root / "latency_tables" / f"{target.kind}-{timing}-{_settings_hash(settings)}.json"

    def _load(self) -> None:
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text())
            except (OSError, ValueError):
                return
            if _settings_hash(data.get("target", {})) == _settings_hash(self.settings):
                self.entries.update(data.get("entries", {}))

    def save(self) -> None:
        """Merge with what other processes wrote meanwhile, then replace the file atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        merged = dict(self.entries)
        if self.path.exists():
            try:
                merged = {**json.loads(self.path.read_text()).get("entries", {}), **self.entries}
            except (OSError, ValueError):
                pass
        self.entries = merged
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump({"target": self.settings, "entries": merged}, f, default=str)
        os.replace(tmp, self.path)

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, kernel: Kernel) -> bool:
        return kernel.key in self.entries

    def ms(self, kernel: Kernel) -> float:
        return float(self.entries[kernel.key][self.stat])

    def _time(self, graph: Graph, kernel: Kernel):
        from ..hardware.base import Artifact

        onnx_bytes, feeds = isolate(graph, kernel)
        art = Artifact(f"kernel-{kernel.key}", tuple(feeds), onnx=onnx_bytes)
        if self.timing == "profile":
            from ..hardware.ort_profile import profile_kernel

            return profile_kernel(self.target, art)
        return self.target.measure(art)

    def due(self, kernel: Kernel) -> bool:
        """Whether ``kernel`` is to be timed now: not in the table, noisy under its limit, or forced."""
        entry = self.entries.get(kernel.key)
        if entry is None or (self.target.remeasure and kernel.key not in self._fresh):
            return True
        return bool(entry.get("noisy")) and entry.get("attempts", 1) < int(self.target.policy.remeasure_noisy)

    def ensure(self, artifact, measure: bool = True) -> list[tuple[Kernel, float]]:
        """The artifact's kernels with their table latencies; missing (and due) ones are timed now."""
        kernels, graph, new, seen = model_kernels(artifact), None, False, set()
        for k in kernels:
            if k.key in seen or (k.key in self.entries and (not measure or not self.due(k))):
                continue   # (a kernel the model runs twice is one question, timed at most once here)
            seen.add(k.key)
            if not measure:
                raise KeyError(f"kernel {k.describe()} is not in the table {self.path.name}")
            graph = graph or _graph(artifact.onnx_bytes())
            t0 = time.perf_counter()
            stats = self._time(graph, k)
            self.seconds += time.perf_counter() - t0
            old = self.entries.get(k.key)
            attempts = 1 + (old.get("attempts", 1) if old else 0)
            # keep the better figure, as the measurement cache does: clean beats noisy, tighter beats looser
            if old is None or not stats.noisy or (old.get("noisy") and stats.ci_rel < old.get("ci_rel", math.inf)):
                self.entries[k.key] = {"median_ms": stats.median_ms, "p10_ms": stats.p10_ms, "ci_rel": stats.ci_rel,
                                       "n": stats.n, "noisy": stats.noisy, "attempts": attempts, "op": k.op,
                                       "kernel": k.describe(), "features": k.features()}
            else:
                old["attempts"] = attempts
            self.remeasured += bool(old and old.get("noisy"))
            self._fresh.add(k.key)
            self.measured += 1
            new = True
        if new:
            self.save()
        return [(k, self.ms(k)) for k in kernels]
