"""Uniform channel pruning + int8, with a longer recovery fine-tune, against fp32 and uniform int8.

The search (bench/compression.py) fine-tunes each pruned model for a few steps only; this checks
what a larger fine-tune budget buys on the simplest configs: every channel group at one keep ratio,
every layer W8A8. Accuracy on the deployed ONNX over the held-out split; latency ONNX Runtime CPU,
one thread, batch 1, median, all in the same run.

    .venv/bin/python bench/compression_uniform.py --models timm:resnet18,digits_cnn,mnist1d_cnn --finetune-steps 120
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def latency_ms(blob: bytes, x1: np.ndarray, seconds: float = 1.5) -> float:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    s = ort.InferenceSession(blob, so, providers=["CPUExecutionProvider"])
    feed = {s.get_inputs()[0].name: x1}
    for _ in range(20):
        s.run(None, feed)
    ts, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end or len(ts) < 50:
        t = time.perf_counter()
        s.run(None, feed)
        ts.append(time.perf_counter() - t)
    return float(np.median(ts) * 1e3)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="timm:resnet18,digits_cnn,mnist1d_cnn")
    p.add_argument("--finetune-steps", type=int, default=120)
    p.add_argument("--keep", default="1.0,0.75,0.5")
    p.add_argument("--out", default=str(HERE / "results" / "compression_uniform.md"))
    args = p.parse_args(argv)
    import torch

    from tradeoff.workloads import make_workload

    torch.set_num_threads(1)
    lines = ["| model | config | accuracy | drop vs fp32 (points) | latency ms | int8 latency / this |",
             "|---|---|---|---|---|---|"]
    for model in args.models.split(","):
        opts = {"train_steps": 300} if model.startswith("timm:") else {}
        wl = make_workload("compression", model=model, bits=[8, 32], keep=[0.25, 0.5, 0.75, 1.0],
                           finetune_steps=args.finetune_steps, **opts)
        acc = wl.evaluators[0]
        x1 = wl.materialize(wl.baselines["fp32"]).example_inputs[0].numpy()
        quant = [k for k in wl.space.names if k.startswith("quant.")]
        prune = [k for k in wl.space.names if k.startswith("prune.")]
        rows = [("fp32", wl.baselines["fp32"])]
        rows += [(f"keep {k} + int8", {**{q: 8 for q in quant}, **{g: float(k) for g in prune}})
                 for k in args.keep.split(",")]
        got = {}
        for label, cfg in rows:
            art = wl.materialize(cfg)
            got[label] = (acc(art)["accuracy"], latency_ms(art.onnx_bytes(), x1))
            print(model, label, got[label], file=sys.stderr, flush=True)
        fp32_acc, int8_lat = got["fp32"][0], got["keep 1.0 + int8"][1]
        for label, (a, lat) in got.items():
            name = "uniform int8" if label == "keep 1.0 + int8" else label
            lines.append(f"| {model} | {name} | {a:.4f} | {100 * (fp32_acc - a):+.2f} | {lat:.4f} | {int8_lat / lat:.2f}x |")
    load = os.getloadavg()[0] / (os.cpu_count() or 1)
    head = (f"Uniform keep ratio + W8A8, {args.finetune_steps} recovery fine-tune steps after pruning; latency ONNX "
            f"Runtime CPU, 1 thread, batch 1, median; load average per core at the end {load:.1f}.\n")
    text = head + "\n" + "\n".join(lines) + f"\n\nCommand: `python bench/compression_uniform.py {' '.join(argv or sys.argv[1:])}`\n"
    print(text)
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
