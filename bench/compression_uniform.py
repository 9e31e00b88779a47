"""Uniform channel pruning + int8, with a longer recovery fine-tune, against fp32 and uniform int8.

The simplest plans a user tries first: every channel group at one keep ratio, every layer W8A8,
each pruned model fine-tuned to recover. Accuracy on the deployed ONNX over the held-out split;
latency ONNX Runtime CPU, one thread, batch 1, the models timed in turns in the same run, so the
ratio to uniform int8 holds on a busy machine.

    .venv/bin/python bench/compression_uniform.py --models timm:resnet18,digits_cnn,mnist1d_cnn --finetune-steps 200
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
FLOOR = "runtime floor (one Mul node, same input)"


def session(blob: bytes, x1: np.ndarray):
    """One-thread ONNX Runtime session and its feed, warmed up."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    s = ort.InferenceSession(blob, so, providers=["CPUExecutionProvider"])
    feed = {s.get_inputs()[0].name: x1}
    for _ in range(20):
        s.run(None, feed)
    return s, feed


def median_ms(s, feed, seconds: float) -> float:
    ts, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end or len(ts) < 20:
        t = time.perf_counter()
        s.run(None, feed)
        ts.append(time.perf_counter() - t)
    return float(np.median(ts) * 1e3)


def floor_model(x1: np.ndarray) -> bytes:
    """One Mul node on the model's input: what a call costs the runtime with next to no compute."""
    import onnx
    from onnx import helper, numpy_helper

    shape = list(x1.shape)
    g = helper.make_graph([helper.make_node("Mul", ["x", "two"], ["y"])], "floor",
                          [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, shape)],
                          [numpy_helper.from_array(np.array(2.0, dtype=np.float32), "two")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString()


def interleaved(sessions: dict, rounds: int = 9, seconds: float = 0.25) -> dict[str, np.ndarray]:
    """Each model's median per round, the models taking turns, so contention hits all of them alike."""
    got = {k: [] for k in sessions}
    for _ in range(rounds):
        for k, (s, feed) in sessions.items():
            got[k].append(median_ms(s, feed, seconds))
    return {k: np.array(v) for k, v in got.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="timm:resnet18,digits_cnn,mnist1d_cnn")
    p.add_argument("--finetune-steps", type=int, default=120)
    p.add_argument("--finetune-lr", type=float, default=1e-2, help="the recovery fine-tune's peak learning rate")
    p.add_argument("--keep", default="1.0,0.75,0.5")
    p.add_argument("--rounds", type=int, default=9, help="interleaved timing rounds per model")
    p.add_argument("--out", default=str(HERE / "results" / "compression_uniform.md"))
    args = p.parse_args(argv)
    import torch

    from tradeoff.workloads import make_workload

    torch.set_num_threads(1)
    lines = ["| model | config | accuracy | drop vs fp32 (points) | latency ms | int8 latency / this (range over rounds) |",
             "|---|---|---|---|---|---|"]
    for model in args.models.split(","):
        opts = {"train_steps": 300} if model.startswith("timm:") else {}
        wl = make_workload("compression", model=model, bits=[8, 32], keep=[0.25, 0.5, 0.75, 1.0],
                           finetune_steps=args.finetune_steps, finetune_lr=args.finetune_lr, **opts)
        acc = wl.evaluators[0]
        x1 = wl.materialize(wl.baselines["fp32"]).example_inputs[0].numpy()
        quant = [k for k in wl.space.names if k.startswith("quant.")]
        prune = [k for k in wl.space.names if k.startswith("prune.")]
        rows = [("fp32", wl.baselines["fp32"])]
        rows += [(f"keep {k} + int8", {**{q: 8 for q in quant}, **{g: float(k) for g in prune}})
                 for k in args.keep.split(",")]
        accs, sessions = {}, {}
        for label, cfg in rows:
            art = wl.materialize(cfg)
            accs[label] = acc(art)["accuracy"]
            sessions[label] = session(art.onnx_bytes(), x1)
            print(model, label, accs[label], file=sys.stderr, flush=True)
        sessions[FLOOR] = session(floor_model(x1), x1)
        lat = interleaved(sessions, args.rounds)
        fp32_acc, int8 = accs["fp32"], lat["keep 1.0 + int8"]
        for label, a in accs.items():
            name = "uniform int8" if label == "keep 1.0 + int8" else label
            r = int8 / lat[label]   # per round: int8's median over this one's, timed side by side
            lines.append(f"| {model} | {name} | {a:.4f} | {100 * (fp32_acc - a):+.2f} | {np.median(lat[label]):.4f} | "
                         f"{np.median(r):.2f}x ({np.min(r):.2f}-{np.max(r):.2f}) |")
        r = int8 / lat[FLOOR]   # no compression can beat a model that computes nothing
        lines.append(f"| {model} | {FLOOR} | | | {np.median(lat[FLOOR]):.4f} | {np.median(r):.2f}x "
                     f"({np.min(r):.2f}-{np.max(r):.2f}) |")
    load = os.getloadavg()[0] / (os.cpu_count() or 1)
    head = (f"Uniform keep ratio + W8A8, {args.finetune_steps} recovery fine-tune steps (peak learning rate "
            f"{args.finetune_lr:g}) after pruning; latency ONNX Runtime CPU, 1 thread, batch 1: the median of "
            f"{args.rounds} rounds in which the models take turns, each round's figure a median over "
            f"0.25 s; load average per core at the end {load:.1f}.\n")
    text = head + "\n" + "\n".join(lines) + f"\n\nCommand: `python bench/compression_uniform.py {' '.join(argv or sys.argv[1:])}`\n"
    print(text)
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
