"""Compression of a trained model: per-layer bits and channel keep ratios, measured on what ships.

A config is materialized in one order: prune (torch-pruning), fine-tune briefly (a step budget),
export to ONNX once, quantize the chosen layers with ONNX Runtime's own tooling. Accuracy is
scored on those bytes by an ONNX Runtime session over the held-out split; latency and size
(added by ``tradeoff.compose`` from the targets) are measured on the same bytes.

Baselines (evaluated first, tagged, drawn): ``fp32`` (where 16 or 32 is among the bits); ``int8``
(every layer, ONNX Runtime's static QDQ with per-channel weights); ``int4_weight_only`` (every layer,
where 4 is among the bits); ``sensitivity`` (a HAWQ-style 4/8-bit allocation from Fisher traces, by
integer program).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..core.options import check_positive, check_whole
from ..spaces.space import Config, Space
from . import Workload, evaluate_on_artifact, register_workload

PRUNED_CACHE = 8   # pruned + fine-tuned models kept, so a joint search re-quantizes without re-training


def _as_tuple(x) -> tuple:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def check_compression(bits, keep, finetune_steps, finetune_lr, size_budget, act_bits) -> None:
    """The options of a compression workload, refused by name before any model is loaded or trained."""
    from ..spaces.prune import check_keep
    from ..spaces.quant import check_bits

    if not bits and not keep:
        raise ValueError("bits, keep: give bit-widths to quantize and/or keep ratios to prune")
    if bits:
        check_bits(bits, act_bits)
        check_positive("size_budget", size_budget, "a share of the int8 weights' bytes")
        # the sensitivity baseline (with 4 and 8 bits) allocates within it: all-int4 is half the int8 bytes
        if {4, 8} <= {int(b) for b in bits} and float(size_budget) < 0.5:
            raise ValueError(f"size_budget: {size_budget} is below what 4-bit weights reach (0.5 of the int8 "
                             f"weights' bytes); allowed: 0.5 or more")
    if keep:
        check_keep(keep)
    check_whole("finetune_steps", finetune_steps, 0, "recovery fine-tune steps after pruning")
    check_positive("finetune_lr", finetune_lr, "the fine-tune's peak learning rate")


def compression(model, example_inputs, val: tuple[np.ndarray, np.ndarray], calib: np.ndarray | None = None,
                bits: Sequence[int] | None = (4, 8, 32), keep: Sequence[float] | None = None,
                finetune: tuple[np.ndarray, np.ndarray] | None = None, finetune_steps: int = 0,
                name: str = "compression", split: str = "held-out (given as val)", baselines: bool = True,
                size_budget: float = 0.75, sensitivity_data: tuple[np.ndarray, np.ndarray] | None = None,
                info: Mapping[str, Any] | None = None, act_bits: Sequence[int] | None = None,
                finetune_lr: float = 3e-3) -> Workload:
    """A workload over per-layer ``bits`` (quant.*) and/or per-group ``keep`` ratios (prune.*).

    ``val``: (inputs, labels) the deployed model is scored on; ``calib``: inputs for int8
    activation ranges (default: the fine-tune inputs, else ``val``'s); ``finetune``: (inputs,
    labels) for a recovery fine-tune of ``finetune_steps`` (peak learning rate ``finetune_lr``, cosine
    decay) after pruning; ``sensitivity_data``:
    (inputs, labels) for the sensitivity baseline's Fisher traces (default: ``finetune``, else ``val``);
    ``act_bits``: activation bit-widths per layer (8, 32) as params of their own (``<layer>:act``);
    without it activations follow the weights (W8A8, W4A32, W32A32).
    """
    from ..evaluators.accuracy import Accuracy
    from ..hardware.base import TargetError, export_onnx
    from ..spaces.prune import prune_space
    from ..spaces.quant import quant_space

    check_compression(bits, keep, finetune_steps, finetune_lr, size_budget, act_bits)
    if finetune_steps and finetune is None:
        raise ValueError("finetune_steps: a recovery fine-tune needs finetune=(inputs, labels)")
    model = model.eval()
    example_inputs = _as_tuple(example_inputs)
    x_val, y_val = (np.asarray(a) for a in val)
    calib_src = "calib" if calib is not None else ("finetune inputs" if finetune is not None else "val inputs")
    if calib is None:
        calib = (finetune[0] if finetune is not None else x_val)[:128]
    calib = np.ascontiguousarray(calib, dtype=np.float32)
    qspace = pspace = None
    if bits:
        try:
            fp32 = export_onnx(model, example_inputs)
        except TargetError as e:
            raise ValueError(f"model: {e}") from None
        qspace = quant_space(fp32, bits, act_bits)
    if keep:
        pspace = prune_space(model, example_inputs, keep)
    space = Space.join(quant=qspace, prune=pspace) if qspace and pspace else (qspace or pspace)
    joint = bool(qspace and pspace)
    pruned: OrderedDict[str, tuple[Any, dict]] = OrderedDict()

    def parts(config: Config) -> tuple[Config | None, Config | None]:
        if joint:
            return Space.split(config, "quant"), Space.split(config, "prune")
        return (config, None) if qspace else (None, config)

    def materialize(config: Config):
        from ..evaluators import TrialError
        from ..hardware.base import Artifact
        from ..spaces.quant import QuantError, quantize

        q, p = parts(space.validate(config))
        net, record = _pruned(model, example_inputs, p, pspace, pruned, finetune, int(finetune_steps),
                              float(finetune_lr))
        try:
            blob = export_onnx(net, example_inputs)
        except TargetError as e:
            raise TrialError(f"export: {e}") from None
        if q:
            try:
                blob, qrec = quantize(blob, q, qspace.nodes, calib)
            except QuantError as e:
                raise TrialError(f"quantize: {e}") from None
            record.update({k: v for k, v in qrec.items() if k != "runs"}, runs=qrec["runs"])
        return Artifact(f"{name}-{space.key(config)}", example_inputs, module=net, onnx=blob,
                        meta={"compression": record})

    acc = Accuracy(x_val, y_val, split=split)
    evaluators = [acc, record_metrics]

    evaluate = evaluate_on_artifact(materialize, evaluators)

    named: dict[str, Config] = {}
    if baselines:
        labelled = sensitivity_data or finetune or (x_val, y_val)
        named = compression_baselines(space, qspace, pspace, joint, model, labelled, size_budget)
    wl_info = {"val_split": split, "val_n": int(len(y_val)), "calib": f"{len(calib)} samples ({calib_src})",
               "finetune_steps": int(finetune_steps), "finetune_lr": float(finetune_lr), "quant_layers": list(qspace.nodes) if qspace else [],
               "prune_groups": dict(pspace.channels) if pspace else {}, "bits": list(qspace.bits) if qspace else [],
               "act_bits": list(qspace.act_bits) if qspace and qspace.act_bits else "tied to weights",
               "keep": list(pspace.keep) if pspace else [], "kernels": KERNELS, **dict(info or {})}
    return Workload(name, space, evaluate, metrics={"accuracy": "maximize"},
                    default_objectives={"accuracy": "maximize", "latency_ms": "minimize"}, info=wl_info,
                    materialize=materialize, evaluators=evaluators, baselines=named)


KERNELS = {"W32A32": "fp32", "W16": "fp32 (fallback: no 16-bit integer kernel in ONNX Runtime CPU)",
           "W8A8": "int8 QDQ: per-channel weights, int8 activations (static calibration)",
           "W8A32": "weight-only: MatMulNBits 8-bit for Gemm/MatMul; Conv keeps int8 weights, fp32 compute (fallback)",
           "W4A32": "weight-only: MatMulNBits for Gemm/MatMul; Conv keeps int4 weights, fp32 compute (fallback)",
           "W4A8": "no kernel: runs W4A32 (fallback)", "W32A8": "no kernel: runs W32A32 (fallback)"}


def record_metrics(artifact, context=None) -> dict[str, float]:
    """What the materialized model is: layers per kind, fallbacks, parameters kept, fine-tune cost."""
    rec = artifact.meta.get("compression", {})
    return {k: float(v) for k, v in rec.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _pruned(model, example_inputs, p, pspace, cache, finetune, steps, lr):
    """The pruned (and fine-tuned) model for prune config ``p``, from a small cache; the float model if none."""
    from ..spaces.prune import prune

    if not p or all(float(v) >= 1.0 for v in p.values()):
        return model, {"params_kept": 1.0, "finetune_steps": 0}
    key = pspace.key(p)
    if key in cache:
        cache.move_to_end(key)
        net, rec = cache[key]
        return net, dict(rec)
    net, rec = prune(model, example_inputs, p, pspace)
    record: dict[str, Any] = {"params_kept": rec["params_after"] / max(1, rec["params_before"]),
                              "finetune_steps": 0}
    if finetune is not None and steps > 0:
        from .models import recovery_finetune

        net, cost = recovery_finetune(net, finetune[0], finetune[1], steps, seed=int(key[:8], 16) % 2**31, lr=lr)
        record.update(cost)
    cache[key] = (net, record)
    while len(cache) > PRUNED_CACHE:
        cache.popitem(last=False)
    return net, dict(record)


def compression_baselines(space, qspace, pspace, joint, model, labelled, size_budget) -> dict[str, Config]:
    """fp32, int8, int4 weight-only and the sensitivity allocation, as configs of ``space``."""
    def full(q: Config | None) -> Config:
        if joint:
            q = qspace.with_acts(q)
            return {**{f"quant.{k}": v for k, v in q.items()}, **{f"prune.{k}": 1.0 for k in pspace.names}}
        return qspace.with_acts(q) if qspace else pspace.full()

    out: dict[str, Config] = {}
    if qspace is None:
        return {"fp32": full(None)}
    top = max(qspace.bits)
    if top >= 16:  # with 8 as the widest, "fp32" would be the int8 baseline again
        out["fp32"] = full(qspace.uniform(top))
    if 8 in qspace.bits:
        out["int8"] = full(qspace.uniform(8))
    if 4 in qspace.bits:
        out["int4_weight_only"] = full(qspace.uniform(4))
    if 4 in qspace.bits and 8 in qspace.bits:
        from .sensitivity import sensitivity_bits

        alloc = sensitivity_bits(model, list(qspace.nodes), labelled, [b for b in qspace.bits if b != 16],
                                 size_budget=size_budget)
        out["sensitivity"] = full(alloc)
    return {k: space.validate(v) for k, v in out.items()}


@register_workload("compression")
def make_compression(model: str = "digits_cnn", bits: Sequence[int] | None = (4, 8, 32),
                     keep: Sequence[float] | None = None, finetune_steps: int = 0, train_steps: int | None = None,
                     pretrained: bool = False, size_budget: float = 0.75, seed: int = 0,
                     act_bits: Sequence[int] | None = None, finetune_lr: float = 3e-3) -> Workload:
    """A built-in model (``digits_cnn``, ``mnist1d_cnn``, ``timm:<name>``) or ``python: module:function``
    returning a ``TrainedModel`` (or a dict with model, example_inputs, val, and optionally train, calib)."""
    from .models import TrainedModel, load_model

    check_compression(bits, keep, finetune_steps, finetune_lr, size_budget, act_bits)
    check_whole("seed", seed, 0, "a random seed")
    if train_steps is not None:
        if model.startswith("python:"):
            raise ValueError("train_steps: only for a built-in model (digits_cnn, mnist1d_cnn, timm:<name>); "
                             "a python: model comes trained")
        train_steps = check_whole("train_steps", train_steps, 1, "the built-in model's training steps")
    if model.startswith("python:"):
        from ..core.registry import import_from

        got = import_from(model[len("python:"):].strip())()
        tm = got if isinstance(got, TrainedModel) else TrainedModel(
            model, got["model"], _as_tuple(got["example_inputs"]), got.get("train"), got["val"], got.get("calib"),
            dict(got.get("info", {})))
    else:
        tm = load_model(model, steps=train_steps, seed=seed, pretrained=pretrained)
    return compression(tm.model, tm.example_inputs, tm.val, tm.calib, bits=bits, keep=keep,
                       finetune=tm.train if finetune_steps else None, finetune_steps=finetune_steps,
                       name=f"compression:{model}", split=tm.info.get("split", "held-out"),
                       size_budget=size_budget, sensitivity_data=tm.train, info=tm.info, act_bits=act_bits,
                       finetune_lr=finetune_lr)
