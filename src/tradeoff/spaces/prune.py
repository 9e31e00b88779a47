"""Structured pruning space: a channel keep ratio per coupled group, materialized by torch-pruning.

torch-pruning's DependencyGraph finds the groups of layers whose channels must go together
(a residual sum couples every layer that feeds it; a depthwise conv follows its input). Each group
is one param, named by its root layer; ``prune`` removes the lowest-magnitude channels of each
group from a copy of the model, so the result is physically smaller (fewer weights, fewer MACs).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from .params import Choice
from .space import Config, Space


def check_keep(keep: Sequence[float]) -> list[float]:
    """The keep ratios, sorted and distinct; refused by name, before any model is built, outside (0, 1]."""
    keep = sorted({float(k) for k in keep})
    if not keep:
        raise ValueError("keep: give at least one ratio in (0, 1]")
    bad = [k for k in keep if not 0 < k <= 1]
    if bad:
        raise ValueError(f"keep: {bad} outside (0, 1]; a keep ratio is the fraction of channels kept")
    return keep


class PruneSpace(Space):
    """Keep ratio per group; ``channels`` is each group's channel count before pruning."""

    def __init__(self, channels: Mapping[str, int], keep: Sequence[float], ignored: Sequence[str] = ()):
        keep = check_keep(keep)
        for name, c in sorted(channels.items(), key=lambda kv: kv[1]):   # the narrowest layer first
            if round(min(keep) * c) < 1:
                raise ValueError(f"keep: {min(keep):g} leaves 0 of the {c} channels of {name}; "
                                 f"allowed: ratios >= {1 / c:.3g} (at least one channel per layer)")
        super().__init__({name: Choice(keep) for name in channels})
        self.channels = dict(channels)
        self.keep = tuple(keep)
        self.ignored = tuple(ignored)

    def full(self) -> Config:
        return {n: 1.0 for n in self.names}


def _groups(model, example_inputs, ignored: Sequence[str]):
    import torch_pruning as tp
    from torch import nn

    modules = dict(model.named_modules())
    ignore = [modules[n] for n in ignored]
    dg = tp.DependencyGraph().build_dependency(model, example_inputs=tuple(example_inputs))
    names = {m: n for n, m in modules.items()}
    kinds = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
    out = {}
    for g in dg.get_all_groups(ignored_layers=ignore, root_module_types=list(kinds)):
        root = g[0].dep.target.module
        out[names[root]] = (root, g[0].dep.handler, len(g[0].idxs))
    return dg, out


def last_layer(model) -> str:
    """The classifier: the last Conv or Linear module (its outputs are the classes; never pruned)."""
    from torch import nn

    names = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))]
    if not names:
        raise ValueError("model: no Conv or Linear layers to prune")
    return names[-1]


def prune_space(model, example_inputs, keep: Sequence[float] = (0.25, 0.5, 0.75, 1.0),
                ignored: Sequence[str] | None = None) -> PruneSpace:
    """The groups of ``model`` that can lose channels (the classifier is kept whole), each a keep choice."""
    ignored = [last_layer(model)] if ignored is None else list(ignored)
    _, groups = _groups(model, example_inputs, ignored)
    if not groups:
        raise ValueError("model: torch-pruning found no prunable channel groups")
    return PruneSpace({n: c for n, (_, _, c) in groups.items()}, keep, ignored)


def prune(model, example_inputs, config: Mapping[str, float], space: PruneSpace) -> tuple[Any, dict[str, Any]]:
    """A pruned copy of ``model`` (eval mode) and a record: channels kept per group, params before/after."""
    import torch
    import torch_pruning as tp

    before = sum(p.numel() for p in model.parameters())
    net = copy.deepcopy(model).eval()
    todo = {n: float(k) for n, k in config.items() if float(k) < 1.0}
    kept = {n: space.channels[n] for n in space.names}
    if todo:
        dg, groups = _groups(net, example_inputs, space.ignored)
        imp = tp.importance.GroupMagnitudeImportance(p=2)
        for name, k in todo.items():
            root, handler, c = groups[name]
            n_keep = max(1, int(round(k * c)))
            group = dg.get_pruning_group(root, handler, idxs=list(range(c)))
            with torch.no_grad():
                scores = imp(group)
            drop = torch.argsort(scores)[: c - n_keep].tolist()
            if drop:
                dg.get_pruning_group(root, handler, idxs=sorted(drop)).prune()
            kept[name] = n_keep
    after = sum(p.numel() for p in net.parameters())
    return net, {"channels": kept, "params_before": before, "params_after": after}
