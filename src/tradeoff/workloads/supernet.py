"""An elastic Once-for-All supernet for scikit-learn digits: train once, extract subnets, never retrain.

A MobileNet-style CNN whose every choice is elastic: input resolution, depth per stage, and per
block slot the expand ratio and depthwise kernel size. Weights are shared as in OFA: a block runs
the first ``expand * c_in`` hidden channels, and a small kernel is the centre of the large one.
It is trained once with the sandwich rule (largest, smallest and two random subnets each step, the
smaller ones also distilled from the largest's logits, in place) and cached on disk by its spec.
``Supernet.subnet(config)`` returns a standalone static model with sliced copies of the weights
(its ONNX file is physically smaller), with BatchNorm statistics recalibrated on training batches.
"""

from __future__ import annotations

import copy
import sys
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..spaces.params import Choice
from ..spaces.space import Config, Space

SPEC: dict[str, Any] = {
    "resolutions": (12, 16, 20), "stem": 8, "stem_stride": 2, "widths": (8, 16, 24), "strides": (1, 2, 1),
    "depths": (1, 2, 3), "expands": (2, 3, 4), "kernels": (3, 5), "classes": 10,
}
BN_BATCHES = 4      # training batches of 64 that recalibrate an extracted subnet's BatchNorm


def slots(spec: Mapping[str, Any] = SPEC) -> list[str]:
    """Every block position of the supernet, ``s<stage>b<block>``: the stable key of per-block params."""
    return [f"s{s}b{b}" for s in range(len(spec["widths"])) for b in range(max(spec["depths"]))]


def arch_space(spec: Mapping[str, Any] = SPEC) -> Space:
    """Resolution, depth per stage, and expand ratio and kernel per block slot; configs that differ
    only in slots below their stage's depth are one subnet, with one key."""
    params: dict[str, Any] = {"res": Choice(list(spec["resolutions"]))}
    params.update({f"depth{s}": Choice(list(spec["depths"])) for s in range(len(spec["widths"]))})
    for slot in slots(spec):
        params[f"{slot}.expand"] = Choice(list(spec["expands"]))
        params[f"{slot}.kernel"] = Choice(list(spec["kernels"]))
    space = Space(params)
    return space.with_canonical(InactiveSlots(space, spec)).with_features(SubnetCosts(spec))


class InactiveSlots:
    """One key per subnet: the params of block slots a config does not run (past its stage's depth)
    are set to their defaults before keying, whatever part of a joined space they are in."""

    def __init__(self, space: Space, spec: Mapping[str, Any] = SPEC, arch_prefix: str = ""):
        self.spec = dict(spec)
        self.arch_prefix = arch_prefix
        every = set(slots(spec))
        default = space.default()
        self.fixed: dict[str, tuple[str, Any]] = {}  # param -> (its slot, the value it is keyed at)
        for name in space.names:
            slot = next((part for part in name.split(".") if part in every), None)
            if slot is not None:
                self.fixed[name] = (slot, default[name])

    def __call__(self, config: Config) -> Config:
        arch = Space.split(config, self.arch_prefix) if self.arch_prefix else config
        active = set(active_slots(arch, self.spec))
        out = dict(config)
        for name, (slot, value) in self.fixed.items():
            if slot not in active:
                out[name] = value
        return out


class SubnetCosts:
    """The predictors' view of a subnet's cost (``Space.with_features``): its weights, the bytes they
    take at each slot's bits (with each block's hidden channels cut to its keep ratio) and its
    multiply-adds at its resolution, in total and per stage, each as a share of the largest subnet's
    at 32 bits; the share of block slots it runs; and, with bits, the share of its layers (stem,
    blocks, head) at each bit width below the widest. A deployed model's size and much of its
    accuracy and latency follow them, and no column per param says them: a block's cost is its
    expand ratio times its kernel times its channels, counted only when its stage is deep enough
    to run it, and a small quantized model's file is as much its layers' quantization nodes as its
    weights. Reads ``<arch_prefix>.`` params and, in a joint space, ``<bits_prefix>.<slot>`` bits
    (of ``bits``) and ``<keep_prefix>.<slot>`` keep ratios."""

    def __init__(self, spec: Mapping[str, Any] = SPEC, arch_prefix: str = "", bits_prefix: str | None = None,
                 keep_prefix: str | None = None, bits: tuple[int, ...] = ()):
        self.spec = dict(spec)
        self.arch_prefix, self.bits_prefix, self.keep_prefix = arch_prefix, bits_prefix, keep_prefix
        self.levels = sorted(set(bits))[:-1] if bits_prefix else []   # the widest is what the others are not
        largest = self._costs(extreme("max", self.spec), {}, {})
        n_layers = len(slots(self.spec)) + 2
        self.scale = np.maximum(np.concatenate([largest[: len(largest) - len(self.levels)],
                                                np.full(len(self.levels), n_layers)]), 1.0)

    def _costs(self, arch: Mapping[str, Any], bits: Mapping[str, float], keep: Mapping[str, float]) -> np.ndarray:
        spec = self.spec
        n_stages = len(spec["widths"])
        size = -(-int(arch["res"]) // spec["stem_stride"])         # the stem's output side (padding 1)
        weights = 9.0 * spec["stem"]
        nbytes = weights * bits.get("stem", 32.0) / 8
        macs = weights * size * size
        stage_bytes, stage_macs = np.zeros(n_stages), np.zeros(n_stages)
        active = set(active_slots(arch, spec))
        for slot, cin, cout, stride in _blocks(spec):
            if slot not in active:
                continue
            k = int(arch[f"{slot}.kernel"])
            hidden = max(1, int(round(cin * int(arch[f"{slot}.expand"]) * keep.get(slot, 1.0))))
            out = -(-size // stride)
            w = cin * hidden + hidden * k * k + hidden * cout
            m = cin * hidden * size * size + (hidden * k * k + hidden * cout) * out * out
            stage = int(slot[1:slot.index("b")])
            b = w * bits.get(slot, 32.0) / 8
            weights, nbytes, macs = weights + w, nbytes + b, macs + m
            stage_bytes[stage] += b
            stage_macs[stage] += m
            size = out
        head = float(spec["widths"][-1] * spec["classes"] + spec["classes"])
        weights, nbytes, macs = weights + head, nbytes + head * bits.get("head", 32.0) / 8, macs + head
        layers = ["stem", *sorted(active), "head"]
        at = [sum(bits.get(n, 32.0) == b for n in layers) for b in self.levels]
        return np.concatenate([[weights, nbytes, macs], stage_bytes, stage_macs, [len(active)], at])

    def __call__(self, configs: list[Config]) -> np.ndarray:
        rows = []
        names = ["stem", *slots(self.spec), "head"]
        for c in configs:
            arch = Space.split(c, self.arch_prefix) if self.arch_prefix else c
            bits = {n: float(c[f"{self.bits_prefix}.{n}"]) for n in names} if self.bits_prefix else {}
            keep = {n: float(c[f"{self.keep_prefix}.{n}"]) for n in slots(self.spec)} if self.keep_prefix else {}
            rows.append(self._costs(arch, bits, keep))
        return np.array(rows, dtype=float).reshape(len(configs), -1) / self.scale


def active_slots(config: Mapping[str, Any], spec: Mapping[str, Any] = SPEC) -> list[str]:
    """The block slots a config runs (the first ``depth<s>`` of each stage)."""
    return [f"s{s}b{b}" for s in range(len(spec["widths"])) for b in range(int(config[f"depth{s}"]))]


def extreme(which: str, spec: Mapping[str, Any] = SPEC) -> Config:
    """The largest (``max``) or smallest (``min``) subnet's config."""
    f = max if which == "max" else min
    cfg: Config = {"res": f(spec["resolutions"])}
    cfg.update({f"depth{s}": f(spec["depths"]) for s in range(len(spec["widths"]))})
    for slot in slots(spec):
        cfg.update({f"{slot}.expand": f(spec["expands"]), f"{slot}.kernel": f(spec["kernels"])})
    return cfg


def _torch():
    import torch
    from torch import nn
    from torch.nn import functional as F

    return torch, nn, F


def _blocks(spec: Mapping[str, Any]):
    """(slot, c_in, c_out, stride) for every block slot, in order."""
    out, cin = [], spec["stem"]
    for s, (w, st) in enumerate(zip(spec["widths"], spec["strides"])):
        for b in range(max(spec["depths"])):
            out.append((f"s{s}b{b}", cin if b == 0 else w, w, st if b == 0 else 1))
        cin = w
    return out


def _block(cin: int, hidden: int, cout: int, stride: int, k: int):
    """An inverted-residual block (expand 1x1, depthwise kxk, project 1x1), each with BatchNorm."""
    _, nn, _ = _torch()

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.expand, self.bn1 = nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden)
            self.dw = nn.Conv2d(hidden, hidden, k, stride, k // 2, groups=hidden, bias=False)
            self.bn2 = nn.BatchNorm2d(hidden)
            self.project, self.bn3 = nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)
            self.residual = stride == 1 and cin == cout

        def forward(self, x):
            h = self.bn1(self.expand(x)).relu()
            h = self.bn2(self.dw(h)).relu()
            h = self.bn3(self.project(h))
            return x + h if self.residual else h

    return Block()


def build_net(spec: Mapping[str, Any], arch: Mapping[str, Any] | None = None):
    """The static net of ``arch`` (the full supernet's shapes when None): modules stem, s<i>b<j>, head."""
    torch, nn, _ = _torch()
    arch = arch or extreme("max", spec)
    active = active_slots(arch, spec)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.stem_bn = nn.Conv2d(1, spec["stem"], 3, spec["stem_stride"], 1, bias=False), nn.BatchNorm2d(spec["stem"])
            self.order = []
            for slot, cin, cout, stride in _blocks(spec):
                if slot in active:
                    setattr(self, slot, _block(cin, cin * int(arch[f"{slot}.expand"]), cout, stride,
                                               int(arch[f"{slot}.kernel"])))
                    self.order.append(slot)
            self.head = nn.Linear(spec["widths"][-1], spec["classes"])

        def forward(self, x):
            x = self.stem_bn(self.stem(x)).relu()
            for slot in self.order:
                x = getattr(self, slot)(x)
            return self.head(x.mean((2, 3)))

    return Net()


class Supernet:
    """The elastic net: the largest static net's weights, run at any sub-config by slicing them."""

    def __init__(self, spec: Mapping[str, Any] = SPEC, net=None):
        self.spec = dict(spec)
        self.net = net if net is not None else build_net(self.spec)
        self.space = arch_space(self.spec)

    def forward(self, x, config: Mapping[str, Any]):
        """The logits of subnet ``config`` (resolution is the input's), with the shared weights sliced."""
        _, _, F = _torch()
        net, ks = self.net, max(self.spec["kernels"])
        x = F.relu(net.stem_bn(net.stem(x)))
        for slot, cin, cout, stride in _blocks(self.spec):
            if slot not in active_slots(config, self.spec):
                continue
            blk, e, k = getattr(net, slot), int(config[f"{slot}.expand"]), int(config[f"{slot}.kernel"])
            h, o = cin * e, (ks - k) // 2
            y = F.relu(_bn(F.conv2d(x, blk.expand.weight[:h]), blk.bn1, h))
            y = F.relu(_bn(F.conv2d(y, blk.dw.weight[:h, :, o:o + k, o:o + k], None, stride, k // 2, 1, h),
                           blk.bn2, h))
            y = blk.bn3(F.conv2d(y, blk.project.weight[:, :h]))
            x = x + y if blk.residual else y
        return net.head(x.mean((2, 3)))

    def subnet(self, config: Mapping[str, Any], bn_data: np.ndarray | None = None, bn_batches: int = BN_BATCHES):
        """A standalone static model of ``config`` with sliced weight copies (eval mode); BatchNorm
        statistics recalibrated on ``bn_data`` (inputs at the config's resolution) when given."""
        torch, _, _ = _torch()
        cfg = self.space.validate(config)
        sub = build_net(self.spec, cfg)
        src = self.net.state_dict()
        ks = max(self.spec["kernels"])
        with torch.no_grad():
            for name, t in sub.state_dict().items():
                w = src[name]
                if name.endswith("dw.weight"):
                    o = (ks - t.shape[-1]) // 2
                    w = w[:, :, o:o + t.shape[-1], o:o + t.shape[-1]]
                t.copy_(w[tuple(slice(0, n) for n in t.shape)] if t.dim() else w)
        if bn_data is not None:
            recalibrate_bn(sub, bn_data, bn_batches)
        return sub.eval()


def _bn(x, bn, n: int):
    """BatchNorm over the first ``n`` channels of ``bn`` (its running statistics updated in place)."""
    _, _, F = _torch()
    return F.batch_norm(x, bn.running_mean[:n], bn.running_var[:n], bn.weight[:n], bn.bias[:n],
                        bn.training, bn.momentum, bn.eps)


def recalibrate_bn(model, x: np.ndarray, batches: int = BN_BATCHES, batch: int = 64):
    """Reset every BatchNorm's running statistics and re-estimate them (cumulative average) on ``x``."""
    torch, nn, _ = _torch()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        for i in range(min(batches, max(1, len(x) // batch))):
            model(torch.from_numpy(np.ascontiguousarray(x[i * batch:(i + 1) * batch], dtype=np.float32)))
    for m, mom in zip(bns, saved):
        m.momentum = mom
    return model.eval()


def train_supernet(sup: Supernet, data: Mapping[int, Mapping[str, np.ndarray]], steps: int, seed: int = 0,
                   lr: float = 3e-3, batch: int = 64, log_every: int = 50) -> Supernet:
    """The sandwich rule: each step sums the loss of the largest, the smallest and two random subnets;
    the smaller ones learn from the labels and (in-place distillation) the largest's soft logits."""
    torch, _, F = _torch()
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    xs = {r: torch.from_numpy(d["x"]) for r, d in data.items()}
    y = torch.from_numpy(next(iter(data.values()))["y"])
    opt = torch.optim.AdamW(sup.net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, steps))
    sup.net.train()
    t0 = time.perf_counter()
    for step in range(int(steps)):
        idx = torch.randint(0, len(y), (batch,), generator=g)
        opt.zero_grad()
        configs = [extreme("max", sup.spec), extreme("min", sup.spec),
                   sup.space.sample(rng), sup.space.sample(rng)]
        teacher = None
        total = 0.0
        for i, cfg in enumerate(configs):
            logits = sup.forward(xs[int(cfg["res"])][idx], cfg)
            loss = F.cross_entropy(logits, y[idx])
            if teacher is None:
                teacher = logits.detach().softmax(1)
            else:
                loss = loss + F.kl_div(logits.log_softmax(1), teacher, reduction="batchmean")
            loss.backward()
            total += float(loss.detach())
        opt.step()
        sched.step()
        if log_every and ((step + 1) % log_every == 0 or step + 1 == steps):
            print(f"supernet: step {step + 1}/{steps}, sandwich loss {total / len(configs):.3f}, "
                  f"{time.perf_counter() - t0:.0f}s", file=sys.stderr, flush=True)
    sup.net.eval()
    return sup


def digits_multires(spec: Mapping[str, Any] = SPEC, seed: int = 0) -> dict[int, dict[str, np.ndarray]]:
    """The digits split (same samples, same order) at every resolution of ``spec``."""
    from .models import digits_data

    return {int(r): digits_data(int(r), seed) for r in spec["resolutions"]}


def load_supernet(steps: int = 600, seed: int = 0, spec: Mapping[str, Any] = SPEC) -> tuple[Supernet, dict]:
    """The digits supernet, trained once with the sandwich rule and cached by spec, steps and seed."""
    import torch

    from .models import _cached

    data = digits_multires(spec, seed)
    key = {"name": "supernet:digits", "spec": {k: list(v) if isinstance(v, tuple) else v for k, v in spec.items()},
           "steps": int(steps), "seed": seed, "split": data[max(data)]["split"],
           "torch": torch.__version__.split("+")[0]}
    fit = lambda net: train_supernet(Supernet(spec, net), data, int(steps), seed).net
    net, path, trained = _cached(key, lambda: build_net(spec), fit)
    info = {"supernet": "digits", "supernet_steps": int(steps), "cache": path.name, "trained_now": trained,
            "spec": key["spec"]}
    return Supernet(spec, net), {"data": data, **info}


def clone(sup: Supernet) -> Supernet:
    return Supernet(sup.spec, copy.deepcopy(sup.net))
