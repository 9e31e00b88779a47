"""A parametric CNN family (plain conv, depthwise-separable, inverted-residual stages) and its space.

Latency predictors learn on it and architecture spaces search it, so it spans a real range of
cost on a CPU (about 0.1 ms to 20 ms single-threaded) with elastic depth, width, kernel and
block type per stage.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from ..spaces.params import Choice, Int
from ..spaces.space import Config, Space
from . import Workload, register_workload

BLOCKS = ("conv", "dwsep", "mbconv")


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: str | None = "relu"):
    from torch import nn

    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act == "relu":
        layers.append(nn.ReLU(inplace=True))
    elif act == "relu6":
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


@lru_cache(maxsize=1)
def _classes() -> dict[str, type]:
    """The torch module classes, defined on first use so importing this module does not import torch."""
    import torch
    from torch import nn

    class ConvBlock(nn.Module):
        """One block; ``conv`` and ``mbconv`` add a residual when the shape is kept."""

        def __init__(self, kind: str, cin: int, cout: int, k: int, stride: int, expand: int):
            super().__init__()
            self.kind = kind
            self.residual = stride == 1 and cin == cout and kind != "dwsep"
            if kind == "conv":
                self.body = _conv_bn(cin, cout, k, stride, act=None if self.residual else "relu")
                self.post = nn.ReLU(inplace=True) if self.residual else nn.Identity()
            elif kind == "dwsep":
                self.body = nn.Sequential(_conv_bn(cin, cin, k, stride, groups=cin), _conv_bn(cin, cout, 1))
                self.post = nn.Identity()
            elif kind == "mbconv":
                mid = cin * expand
                self.body = nn.Sequential(_conv_bn(cin, mid, 1, act="relu6"),
                                          _conv_bn(mid, mid, k, stride, groups=mid, act="relu6"),
                                          _conv_bn(mid, cout, 1, act=None))
                self.post = nn.Identity()
            else:
                raise ValueError(f"block {kind!r} is not one of {', '.join(BLOCKS)}")

        def forward(self, x):
            y = self.body(x)
            return self.post(y + x) if self.residual else y

    class ConvNetModule(nn.Module):
        """Stem, stages of blocks, global average pool, linear classifier."""

        def __init__(self, stages, in_ch, classes, input_hw, expand, block, stem, stem_stride):
            super().__init__()
            self.stages, self.in_ch, self.input_hw = [tuple(s) for s in stages], in_ch, input_hw
            self.stem = _conv_bn(in_ch, stem, 3, stem_stride)
            blocks, cin = [], stem
            for st in self.stages:
                depth, width, k, stride = (int(v) for v in st[:4])
                kind = st[4] if len(st) > 4 else block
                for i in range(depth):
                    blocks.append(ConvBlock(kind, cin, width, k, stride if i == 0 else 1, expand))
                    cin = width
            self.blocks = nn.Sequential(*blocks)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(cin, classes)

        def forward(self, x):
            x = self.pool(self.blocks(self.stem(x)))
            return self.fc(torch.flatten(x, 1))

    for cls in (ConvBlock, ConvNetModule):
        cls.__module__, cls.__qualname__ = __name__, cls.__name__
    return {"ConvBlock": ConvBlock, "ConvNetModule": ConvNetModule}


def __getattr__(name: str):  # the module classes, importable (and picklable) by name
    if name in ("ConvBlock", "ConvNetModule"):
        return _classes()[name]
    raise AttributeError(name)


def ConvNet(stages: Sequence[Sequence[Any]], in_ch: int = 3, classes: int = 10, input_hw: int = 32,
            expand: int | None = None, block: str = "conv", stem: int = 16, stem_stride: int = 1):
    """A CNN (torch.nn.Module, eval mode) from ``stages``: each ``(depth, width, kernel, stride[, block])``.

    ``block`` is the default block type (conv | dwsep | mbconv); ``expand`` is the inverted
    residual's expansion ratio and, given without a block type, makes ``mbconv`` the default.
    """
    import torch
    from torch import nn

    if block not in BLOCKS:
        raise ValueError(f"block {block!r} is not one of {', '.join(BLOCKS)}")
    default_block = "mbconv" if expand is not None and block == "conv" else block
    net = _classes()["ConvNetModule"](stages, in_ch, classes, input_hw, int(expand or 4), default_block, stem,
                                      stem_stride)
    # BN statistics as after training, so the folded weights are not a plain identity
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return net.eval()


class ConvNetSpace(Space):
    """Space of ConvNets: per stage depth (Int), width, kernel and block type (Choice); ``build`` makes one."""

    def __init__(self, params: Mapping[str, Any], *, strides: Sequence[int], resolution: int, in_ch: int,
                 classes: int, stem: int, stem_stride: int, expand: int):
        super().__init__(params)
        self.strides = tuple(int(s) for s in strides)
        self.resolution, self.in_ch, self.classes = int(resolution), int(in_ch), int(classes)
        self.stem, self.stem_stride, self.expand = int(stem), int(stem_stride), int(expand)

    def stages(self, config: Config) -> list[tuple]:
        return [(config[f"d{i}"], config[f"w{i}"], config[f"k{i}"], s, config[f"b{i}"])
                for i, s in enumerate(self.strides)]

    def build(self, config: Mapping[str, Any]):
        """The artifact for ``config``: the module in eval mode and a batch-1 example input."""
        import torch

        from ..hardware.base import Artifact

        config = self.validate(config)
        hw = int(config.get("res", self.resolution))
        name = "convnet-" + self.key(config)
        with torch.random.fork_rng(devices=[]):   # equal configs give equal bytes: measured once, ever
            torch.manual_seed(int(name[-8:], 16))
            net = ConvNet(self.stages(config), self.in_ch, self.classes, hw, expand=self.expand,
                          stem=self.stem, stem_stride=self.stem_stride)
        x = torch.randn(1, self.in_ch, hw, hw, generator=torch.Generator().manual_seed(0))
        return Artifact(name, (x,), module=net, meta={"config": self.to_json(config), "space": "convnet"})


def convnet_space(n_stages: int = 4, depth: tuple[int, int] = (1, 4),
                  widths: Sequence[Sequence[int]] = ((16, 24, 32), (24, 32, 48), (32, 48, 64), (64, 96, 128)),
                  kernels: Sequence[int] = (3, 5, 7), blocks: Sequence[str] = BLOCKS,
                  strides: Sequence[int] = (1, 2, 2, 2), resolution: int | Sequence[int] = (32, 48, 64),
                  in_ch: int = 3,
                  classes: int = 10, stem: int = 16, stem_stride: int = 1, expand: int = 4) -> ConvNetSpace:
    """Elastic depth, width, kernel and block type per stage; several resolutions add a ``res`` choice."""
    if len(widths) < n_stages or len(strides) < n_stages:
        raise ValueError(f"need widths and strides for {n_stages} stages")
    bad = [b for b in blocks if b not in BLOCKS]
    if bad:
        raise ValueError(f"block types {bad} are not among {', '.join(BLOCKS)}")
    params: dict[str, Any] = {}
    for i in range(n_stages):
        params[f"d{i}"] = Int(int(depth[0]), int(depth[1]))
        params[f"w{i}"] = Choice(list(widths[i]))
        params[f"k{i}"] = Choice(list(kernels))
        params[f"b{i}"] = Choice(list(blocks), ordered=False)
    res = [int(resolution)] if np.isscalar(resolution) else [int(r) for r in resolution]
    if len(res) > 1:
        params["res"] = Choice(res)
    return ConvNetSpace(params, strides=strides[:n_stages], resolution=res[0], in_ch=in_ch, classes=classes,
                        stem=stem, stem_stride=stem_stride, expand=expand)


@register_workload("convnet_latency")
def make_convnet_latency(target: Mapping[str, Any] | None = None, **space_options: Any) -> Workload:
    """ConvNets measured on a target (default: ONNX Runtime CPU, one thread): latency, params, MACs."""
    from ..hardware.base import make_target

    space = convnet_space(**space_options)
    spec = dict(target or {"runtime": "ort", "threads": 1})
    tgt = make_target(spec.pop("runtime", "ort"), **spec)

    def evaluate(config: Config) -> dict[str, float]:
        art = space.build(config)
        stats = tgt.measure(art)
        return {**stats.metrics("latency"), **_complexity(art)}

    # a model workload: a recipe's targets and cost metrics replace this default evaluate (tradeoff.compose)
    return Workload("convnet_latency", space, evaluate,
                    metrics={"latency_ms": "minimize", "params_m": "maximize", "macs_m": "minimize"},
                    default_objectives={"latency_ms": "minimize", "params_m": "maximize"},
                    info={"target": tgt.describe()}, materialize=space.build)


def _complexity(artifact) -> dict[str, float]:
    """MACs and params of the deployed graph, as the complexity evaluator counts them."""
    from ..evaluators.complexity import Complexity

    out = Complexity()(artifact)
    return {"macs_m": out["macs_m"], "params_m": out["params_m"]}
