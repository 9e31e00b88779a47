"""Architecture search on a trained supernet, alone or joint with per-block bits and pruning (APQ).

A trial extracts its subnet's weights from the supernet (no training), recalibrates BatchNorm,
then for the joint space prunes each block's hidden channels (torch-pruning), fine-tunes briefly
when pruned, exports to ONNX and quantizes per block slot with ONNX Runtime; accuracy is scored
on those bytes over the held-out split at the subnet's resolution. Bits and keep ratios are keyed
by block slot (``s<stage>b<block>``, plus ``stem`` and ``head`` for bits); slots a subnet does not
run are ignored and counted in the trial (``slots_ignored``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..core.options import check_whole
from ..spaces.params import Bits
from ..spaces.space import Config, Space
from . import Workload, evaluate_on_artifact, register_workload
from .supernet import SPEC, InactiveSlots, SubnetCosts, Supernet, active_slots, extreme, load_supernet, slots


def supernet_workload(sup: Supernet, data: Mapping[int, Mapping[str, np.ndarray]], bits: Sequence[int] | None = None,
                      keep: Sequence[float] | None = None, finetune_steps: int = 0, name: str = "supernet",
                      info: Mapping[str, Any] | None = None) -> Workload:
    """Arch params (``arch.*`` when joint) and optionally ``quant.<slot>`` bits and ``prune.<slot>`` keeps."""
    from ..evaluators.accuracy import Accuracy
    from .compression import record_metrics

    check_whole("finetune_steps", finetune_steps, 0, "fine-tune steps per subnet")
    spec = sup.spec
    arch = sup.space
    parts: dict[str, Space] = {"arch": arch}
    qspace, pspace = slot_spaces(spec, bits, keep)
    if qspace is not None:
        parts["quant"] = Space({s: Bits(list(qspace.bits)) for s in qspace.names})
    if pspace is not None:
        parts["prune"] = pspace
    joint = len(parts) > 1
    space = Space.join(parts) if joint else arch
    if joint:  # a slot the subnet does not run has no bits or keep ratio either: one key per model
        space = space.with_canonical(InactiveSlots(space, spec, arch_prefix="arch")).with_features(
            SubnetCosts(spec, arch_prefix="arch", bits_prefix="quant" if qspace is not None else None,
                        keep_prefix="prune" if pspace is not None else None,
                        bits=tuple(qspace.bits) if qspace is not None else ()))
    accs = {r: Accuracy(d["x_val"], d["y_val"], split=d["split"]) for r, d in data.items()}

    def split(config: Config) -> tuple[Config, Config, Config]:
        if not joint:
            return config, {}, {}
        return Space.split(config, "arch"), Space.split(config, "quant"), Space.split(config, "prune")

    def materialize(config: Config):
        import torch

        from ..evaluators import TrialError
        from ..hardware.base import Artifact, TargetError, export_onnx

        a, q, p = split(space.validate(config))
        res = int(a["res"])
        d = data[res]
        active = active_slots(a, spec)
        t0 = time.perf_counter()
        net = sup.subnet(a, bn_data=d["x"])
        example = (torch.from_numpy(d["x_val"][:1]).clone(),)
        record: dict[str, Any] = {"resolution": res, "blocks": len(active),
                                  "params": sum(t.numel() for t in net.parameters()),
                                  "extract_s": time.perf_counter() - t0}
        ignored = 0
        if p:
            ignored += sum(s not in active for s in p)
            net, prec = _prune(net, example, {s: float(k) for s, k in p.items() if s in active}, d,
                               int(finetune_steps))
            record.update(prec)
        try:
            blob = export_onnx(net, example)
        except TargetError as e:
            raise TrialError(f"export: {e}") from None
        if q:
            ignored += sum(s not in active for s in q if s not in ("stem", "head"))
            blob, qrec = _quantize(blob, q, d["x"][:128])
            record.update(qrec)
        if joint:
            record["slots_ignored"] = ignored
        return Artifact(f"{name}-{space.key(config)}", example, module=net, onnx=blob,
                        meta={"compression": record, "resolution": res})

    def accuracy(artifact, context=None) -> dict[str, float]:
        return accs[artifact.meta["resolution"]](artifact, context)

    evaluators = [accuracy, record_metrics]

    evaluate = evaluate_on_artifact(materialize, evaluators)

    baselines = {"largest": _full(extreme("max", spec), qspace, pspace, joint),
                 "smallest": _full(extreme("min", spec), qspace, pspace, joint)}
    if qspace is not None and 8 in qspace.bits:
        baselines["largest_int8"] = _full(extreme("max", spec), qspace, pspace, joint, 8)
    wl_info = {"slots": slots(spec), "bits": list(qspace.bits) if qspace else [],
               "keep": list(pspace.keep) if pspace else [], "finetune_steps": int(finetune_steps), **dict(info or {})}
    return Workload(name, space, evaluate, metrics={"accuracy": "maximize"},
                    default_objectives={"accuracy": "maximize", "latency_ms": "minimize"}, info=wl_info,
                    materialize=materialize, evaluators=evaluators,
                    baselines={k: space.validate(v) for k, v in baselines.items()})


def slot_spaces(spec, bits: Sequence[int] | None, keep: Sequence[float] | None):
    """Bits per slot (stem, blocks, head) and keep per block slot; refuses bits outside 4/8/16/32 and
    a keep ratio that leaves the narrowest block (smallest expand ratio) no hidden channel."""
    from ..spaces.prune import PruneSpace
    from ..spaces.quant import QuantSpace
    from .supernet import _blocks

    qspace = QuantSpace({s: s for s in ["stem", *slots(spec), "head"]}, bits) if bits else None
    narrowest = {slot: cin * min(spec["expands"]) for slot, cin, _, _ in _blocks(spec)}
    return qspace, (PruneSpace(narrowest, keep) if keep else None)


def _full(arch: Config, qspace, pspace, joint: bool, bits: int | None = None) -> Config:
    if not joint:
        return arch
    out = {f"arch.{k}": v for k, v in arch.items()}
    if qspace is not None:
        out.update({f"quant.{s}": bits or max(qspace.bits) for s in qspace.names})
    if pspace is not None:
        out.update({f"prune.{s}": 1.0 for s in pspace.names})
    return out


def _prune(net, example, keep: dict[str, float], d, steps: int):
    """Each active block's hidden channels pruned to its keep ratio (torch-pruning), then fine-tuned."""
    from ..spaces.prune import PruneSpace, prune
    from .models import recovery_finetune

    # torch-pruning roots a block's hidden-channel group at its depthwise conv
    todo = {f"{s}.dw": k for s, k in keep.items() if k < 1.0}
    if not todo:
        return net, {"params_kept": 1.0, "finetune_steps": 0}
    hidden = {f"{s}.dw": getattr(net, s).dw.out_channels for s in keep}
    space = PruneSpace(hidden, sorted(set(todo.values())), ignored=["head"])
    net, rec = prune(net, example, todo, space)
    out: dict[str, Any] = {"params_kept": rec["params_after"] / max(1, rec["params_before"]), "finetune_steps": 0}
    if steps > 0:
        net, cost = recovery_finetune(net, d["x"], d["y"], steps, seed=0)
        out.update(cost)
    return net, out


def _quantize(blob: bytes, bits: Mapping[str, int], calib: np.ndarray) -> tuple[bytes, dict[str, Any]]:
    """Each ONNX layer takes its slot's bits (``s0b1.expand`` -> ``s0b1``); ONNX Runtime quantizes."""
    from ..evaluators import TrialError
    from ..spaces.quant import QuantError, quant_layers, quantize

    nodes = quant_layers(blob)
    config = {layer: int(bits[layer.split(".")[0]]) for layer in nodes}
    try:
        out, rec = quantize(blob, config, nodes, np.ascontiguousarray(calib, dtype=np.float32))
    except QuantError as e:
        raise TrialError(f"quantize: {e}") from None
    return out, {k: v for k, v in rec.items() if k != "runs"}


@register_workload("supernet")
def supernet(bits: Sequence[int] | None = None, keep: Sequence[float] | None = None, finetune_steps: int = 0,
                  train_steps: int = 400, seed: int = 0) -> Workload:
    """The digits supernet (trained once, cached): arch search, or joint with ``bits`` and/or ``keep``."""
    if int(train_steps) < 1:
        raise ValueError(f"train_steps: {train_steps}; allowed: 1 or more sandwich steps")
    slot_spaces(SPEC, bits, keep)   # bad bits, keep, steps or seed are refused before any training
    check_whole("finetune_steps", finetune_steps, 0, "fine-tune steps per subnet")
    check_whole("seed", seed, 0, "a random seed")
    sup, info = load_supernet(int(train_steps), seed, SPEC)
    data = info.pop("data")
    return supernet_workload(sup, data, bits, keep, finetune_steps, name="supernet:digits", info=info)
