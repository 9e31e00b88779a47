"""Kernels read raw from ONNX Runtime's profiler against net of its own per-node floor, from the same profiles.

Each model (ConvNets, then 12 torchvision and 3 timm models at two resolutions) is measured, and
right after, each of its kernels is isolated and profiled once. Every node's time is read twice
from that one profile: as the profiler reports it, and net of the floor it reports for a node that
does nothing. So the two readings differ only in the floor, never in the moment they were
taken. A linear correction is fitted on 40 ConvNets for each reading and scored on the held-out
ConvNets and on the 30 other models.

    .venv/bin/python bench/kernel_floor.py              # about 5 min on 2 cores

Prints markdown tables.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

FEATURES = {"sum": ("sum",), "sum+1": ("sum", "1"), "sum+weights+1": ("sum", "w", "1"),
            "sum+kernels+weights+1": ("sum", "n", "w", "1")}


def profile_both(target, onnx_bytes: bytes, feeds, floor_us: float, runs: int = 40) -> tuple[float, float]:
    """(raw ms, net-of-floor ms) per run of one isolated kernel, interquartile means over ``runs``."""
    import onnxruntime as ort

    from tradeoff.hardware.ort import PROVIDERS
    from tradeoff.hardware.ort_profile import BOUNDARY_OPS, _runs, session_options

    tmp = tempfile.mkdtemp(prefix="floor-")
    try:
        sess = ort.InferenceSession(onnx_bytes, session_options(target.settings, tmp + "/p"),
                                    providers=[PROVIDERS[target.settings["provider"]]])
        feed = dict(zip([i.name for i in sess.get_inputs()], feeds))
        for _ in range(runs):
            sess.run(None, feed)
        path = sess.end_profiling()           # one profile, read both ways
        raw, net = _runs(path, BOUNDARY_OPS, 0.0)[3:], _runs(path, BOUNDARY_OPS, floor_us)[3:]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def iqm(v):
        v = np.sort(v)
        q = len(v) // 4
        return float(v[q:len(v) - q].mean()) / 1000.0

    return iqm(np.array(raw)), iqm(np.array(net))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=40)
    ap.add_argument("--test", type=int, default=15)
    ap.add_argument("--resolutions", default="64,96")
    args = ap.parse_args()

    sys.path.insert(0, str(Path(__file__).parent))
    from latency_predictors import standard_models
    from scipy.stats import kendalltau

    from tradeoff.hardware.base import make_target
    from tradeoff.hardware.onnx_graph import Graph, inferred
    from tradeoff.hardware.ort_profile import profiler_floor_us
    from tradeoff.predictors.calibration import sample_architectures
    from tradeoff.predictors.kernels import isolate, model_kernels
    from tradeoff.workloads.convnets import convnet_space

    target = make_target("ort", threads=1, remeasure=True,
                         timing={"warmup": 3, "min_repeats": 10, "rel_ci": 0.03, "time_cap_s": 0.5})
    floor = profiler_floor_us(target)
    space = convnet_space()
    convnets = [space.build(c) for c in sample_architectures(space, args.train + args.test, 0)]
    others = standard_models(tuple(int(r) for r in args.resolutions.split(",")))
    rows = []
    for art in [*convnets, *others]:
        ms = target.measure(art).median_ms
        g, seen, raw, net = Graph(inferred(art.onnx_bytes())), {}, 0.0, 0.0
        ks = model_kernels(art)
        for k in ks:
            if k.key not in seen:
                seen[k.key] = profile_both(target, *isolate(g, k), floor)
            raw += seen[k.key][0]
            net += seen[k.key][1]
        rows.append({"ms": ms, "raw": raw, "net": net, "n": len(ks), "w": sum(k.params for k in ks) / 1e6})
        print(f"{art.name}: {ms:.3f} ms, kernels raw {raw:.3f}, net {net:.3f}", flush=True)

    def X(rs, reading, feats):
        return np.array([[{"sum": r[reading], "n": r["n"], "w": r["w"], "1": 1.0}[f] for f in feats] for r in rs])

    def score(y, p):
        rel = np.abs(p - y) / y
        return f"{np.mean(rel <= 0.10):.0%} | {rel.mean():.1%} | {kendalltau(y, p)[0]:.3f}"

    train, test, std = rows[:args.train], rows[args.train:len(convnets)], rows[len(convnets):]
    y = {n: np.array([r["ms"] for r in rs]) for n, rs in (("train", train), ("test", test), ("std", std))}
    print(f"\nprofiler floor {floor:.1f} µs per node; {len(train)} ConvNets fit each correction, {len(test)} held out, "
          f"{len(std)} models of other families\n")
    print("| correction | reading | ConvNets held out: within ±10% | MAPE | τ | other families: within ±10% | MAPE | τ |")
    print("|---|---|---|---|---|---|---|---|")
    for name, feats in FEATURES.items():
        for reading in ("raw", "net"):
            F = X(train, reading, feats)
            w = 1.0 / y["train"]
            coef, *_ = np.linalg.lstsq(F * w[:, None], y["train"] * w, rcond=None)
            print(f"| {name} | {reading} | {score(y['test'], X(test, reading, feats) @ coef)} | "
                  f"{score(y['std'], X(std, reading, feats) @ coef)} |")


if __name__ == "__main__":
    main()
