"""What a latency predictor was calibrated on, so it can refuse models from a family it never saw.

A predictor fitted on one family of models (say, plain ConvNets) predicts kernels and sizes it
saw; a model whose time goes to kernels it never saw (HardSwish, channel shuffles, LayerNorm,
max pooling) or whose size is far outside the calibration set needs its own calibration. The
check is on the model alone, before predicting: the share of its work in kernel kinds never
seen, and its weights, MACs and kernel count against the calibrated range. Given the runtime's
own count of the nodes it executes (``nodes``: ONNX Runtime's optimized graph), also how many
nodes run per kernel: a network that leaves shape arithmetic to run time (channel shuffles run
about four nodes per kernel, ConvNets about one) spends time no kernel table holds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .kernels import Kernel, model_kernels

SIZES = ("params", "macs", "kernels")


LEARNT = ("conv", "dwconv", "fc", "gap")   # types whose fused activation barely changes the cost


def signature(k: Kernel) -> str:
    """A kernel's kind for coverage: convolutions, matmuls and pools by type; anything else by its ONNX ops."""
    return k.op if k.op in LEARNT else f"{k.op}:{'+'.join(k.nodes)}"


def _work(k: Kernel) -> float:
    return float(k.macs) + k.bytes / 4.0 + 1.0


def _sizes(ks: list[Kernel]) -> dict[str, float]:
    return {"params": float(sum(k.params for k in ks)), "macs": float(sum(k.macs for k in ks)),
            "kernels": float(len(ks))}


@dataclass
class Coverage:
    """Kernel kinds and model sizes seen in calibration; ``gaps`` says why a model lies outside them."""

    signatures: set[str] = field(default_factory=set)
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    max_unseen_share: float = 0.10     # of a model's work (MACs + elements moved) in kernel kinds never seen
    margin: float = 2.0                # sizes up to this factor beyond the calibrated range are accepted
    nodes: Callable[[Any], Counter] | None = None   # op types of the nodes the runtime executes for a model
    max_nodes_per_kernel: float = 0.0  # the most seen in calibration (0: not checked)
    node_margin: float = 1.5

    @staticmethod
    def of(artifacts: Iterable[Any], nodes: Callable[[Any], Counter] | None = None, **kw: Any) -> Coverage:
        sigs: set[str] = set()
        sizes: list[dict[str, float]] = []
        per_kernel: list[float] = []
        for a in artifacts:
            ks = model_kernels(a)
            sigs.update(signature(k) for k in ks)
            sizes.append(_sizes(ks))
            if nodes is not None:
                per_kernel.append(sum(nodes(a).values()) / max(len(ks), 1))
        ranges = {s: (min(d[s] for d in sizes), max(d[s] for d in sizes)) for s in SIZES} if sizes else {}
        return Coverage(sigs, ranges, nodes=nodes, max_nodes_per_kernel=max(per_kernel, default=0.0), **kw)

    def gaps(self, artifact: Any) -> list[str]:
        """Reasons the model is outside what was calibrated (empty when it is inside)."""
        ks = model_kernels(artifact)
        out = []
        unseen = [k for k in ks if signature(k) not in self.signatures]
        total = sum(_work(k) for k in ks) or 1.0
        share = sum(_work(k) for k in unseen) / total
        if unseen and share > self.max_unseen_share:
            kinds = Counter("+".join(k.nodes) for k in unseen).most_common(5)
            out.append(f"{share:.0%} of its work is in kernels never seen in calibration ("
                       + ", ".join(f"{n} ×{c}" for n, c in kinds) + ")")
        for name, v in _sizes(ks).items():
            if name not in self.ranges:
                continue
            lo, hi = self.ranges[name]
            if v > hi * self.margin or v < lo / self.margin:
                out.append(f"{name} {_fmt(v)} outside the calibrated {_fmt(lo)}–{_fmt(hi)}")
        if self.nodes is not None and self.max_nodes_per_kernel > 0:
            ran = self.nodes(artifact)
            per = sum(ran.values()) / max(len(ks), 1)
            if per > self.max_nodes_per_kernel * self.node_margin:
                extra = (ran - Counter(k.nodes[0] for k in ks)).most_common(4)
                out.append(f"the runtime executes {sum(ran.values())} nodes for its {len(ks)} kernels ({per:.1f} per "
                           f"kernel, calibration at most {self.max_nodes_per_kernel:.1f}; "
                           + ", ".join(f"{n} ×{c}" for n, c in extra) + ")")
        return out


def _fmt(v: float) -> str:
    return f"{v / 1e6:.2f}M" if v >= 1e4 else f"{v:.0f}"
