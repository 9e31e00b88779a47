"""Latency figures on this machine: stability, runtimes side by side, measurement cost and cache hits.

1. Stability: for 5 models of different sizes, the spread (coefficient of variation) of the
   reported median over 5 independent measurements (fresh session, no cache, each one timed
   until its median's 95% CI is within ±2%).
2. ONNX Runtime vs TVM (untuned, and tuned with a small MetaSchedule budget) vs PyTorch eager
   and torch.compile, on the same models, one thread, batch 1.
3. Predictor accuracy is its own script: bench/latency_predictors.py.
4. Cost of a measurement (seconds per model, export/compile included) and the cache hit rate
   over a 200-trial search, then over a second search of the same space.

    .venv/bin/python bench/latency.py                    # all parts (about 10-15 minutes on 2 cores)
    .venv/bin/python bench/latency.py --parts 1,4 --tune 0
    .venv/bin/python bench/latency.py --parts 1 --busy --timing '{"reference": true, "wait_for_quiet_s": 10}'

Prints markdown tables; writes bench/results/latency.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def models():
    """Five models from ~0.05 ms to ~20 ms on one CPU thread (random weights: latency only)."""
    import torch
    import torchvision

    from tradeoff.hardware.base import Artifact
    from tradeoff.workloads.convnets import convnet_space

    space = convnet_space(resolution=32)
    small = space.build({**{f"d{i}": 1 for i in range(4)}, **{f"w{i}": space[f"w{i}"].values[0] for i in range(4)},
                         **{f"k{i}": 3 for i in range(4)}, **{f"b{i}": "dwsep" for i in range(4)}})
    mid = space.build({**{f"d{i}": 2 for i in range(4)}, **{f"w{i}": space[f"w{i}"].values[1] for i in range(4)},
                       **{f"k{i}": 5 for i in range(4)}, **{f"b{i}": "mbconv" for i in range(4)}})

    def tv(name, fn, hw):
        torch.manual_seed(0)
        return Artifact(name, (torch.randn(1, 3, hw, hw),), module=fn(num_classes=10).eval())

    return [
        Artifact("convnet-small-32", small.example_inputs, module=small.module),
        Artifact("convnet-mbconv-32", mid.example_inputs, module=mid.module),
        tv("mobilenet_v3_small-96", torchvision.models.mobilenet_v3_small, 96),
        tv("resnet18-64", torchvision.models.resnet18, 64),
        tv("resnet50-64", torchvision.models.resnet50, 64),
    ]


def part1(arts, repeats: int, timing: dict | None = None) -> list[dict]:
    """CV of the median over independent sessions, of the p10 (less disturbed by contention) and, with a
    reference in the policy, of the ratio to it."""
    from tradeoff.hardware.base import make_target

    rows = []
    for a in arts:
        meds, p10s, ratios, ns, noisy, ci, waited = [], [], [], [], 0, [], []
        for _ in range(repeats):
            s = make_target("ort", threads=1, cache=False, timing=timing or {}).measure(a)
            meds.append(s.median_ms)
            p10s.append(s.p10_ms)
            ratios.append(s.ref_ratio)
            ns.append(s.n)
            ci.append(s.ci_rel)
            waited.append(s.waited_s)
            noisy += s.noisy
        cv = statistics.pstdev(meds) / statistics.mean(meds)
        cv_ratio = statistics.pstdev(ratios) / statistics.mean(ratios) if all(ratios) else float("nan")
        cv_p10 = statistics.pstdev(p10s) / statistics.mean(p10s)
        rows.append({"model": a.name, "median_ms": statistics.median(meds), "cv": cv, "cv_ratio": cv_ratio,
                     "cv_p10": cv_p10,
                     "min": min(meds), "max": max(meds), "n": statistics.median(ns),
                     "ci_rel": statistics.median(ci), "noisy": noisy, "waited_s": round(sum(waited), 1)})
        print(f"  {a.name}: medians {[round(m, 4) for m in meds]} cv {cv:.2%}, ratio cv {cv_ratio:.2%}",
              file=sys.stderr, flush=True)
    return rows


def part2(arts, tune: int) -> list[dict]:
    from tradeoff.hardware.base import TargetError, make_target

    targets = {
        "ort": lambda: make_target("ort", threads=1, cache=False),
        "tvm": lambda: make_target("tvm", threads=1, cache=False),
        f"tvm tuned ({tune})": lambda: make_target("tvm", threads=1, tune=tune, cache=False),
        "torch eager": lambda: make_target("torch", threads=1, cache=False),
        "torch.compile": lambda: make_target("torch", threads=1, mode="compile", cache=False),
    }
    if not tune:
        targets.pop(f"tvm tuned ({tune})")
    rows = []
    for a in arts:
        row = {"model": a.name}
        for name, make in targets.items():
            t = time.perf_counter()
            try:
                s = make().measure(a)
                row[name] = s.median_ms
                row[name + " noisy"] = s.noisy
            except TargetError as e:
                row[name] = None
                row[name + " error"] = str(e)[:120]
            row[name + " s"] = time.perf_counter() - t
            print(f"  {a.name} {name}: {row[name]} ({row[name + ' s']:.1f} s)", file=sys.stderr, flush=True)
        rows.append(row)
    return rows


def part4(budget: int) -> dict:
    import tradeoff as to
    from tradeoff.compose import compose
    from tradeoff.hardware.cache import MeasurementCache
    from tradeoff.workloads import make_workload

    out = {}
    cache = MeasurementCache(Path(os.environ["TRADEOFF_HOME"]) / "bench-cache.sqlite")
    wl = make_workload("convnet_latency")
    comp = compose(wl, {"latency_ms": {}, "params_m": {}}, {"cpu": {"runtime": "ort", "threads": 1}}, cache=cache)
    target = comp.targets["cpu"]
    searches = (("first search", 0, None), ("same search, other seed", 1, None),
                ("same search, latency_ms <= 1 added", 0, {"latency_ms": ("<=", 1.0)}))
    for label, seed, constraints in searches:
        h0, m0 = cache.hits, cache.misses
        t = time.perf_counter()
        front = to.search(wl.space, {"latency_ms": "minimize", "params_m": "maximize"}, comp.evaluate, budget=budget,
                          algorithm="nsga2", seed=seed, tracking=None, constraints=constraints)
        wall = time.perf_counter() - t
        hits, misses = cache.hits - h0, cache.misses - m0
        costs = [tr.metrics.get("latency_cost_s") for tr in front.complete if not tr.metrics.get("latency_cached")]
        out[label] = {"trials": len(front.trials), "failed": len(front.failed), "hits": hits, "misses": misses,
                      "hit_rate": hits / max(hits + misses, 1), "wall_s": wall,
                      "s_per_trial": wall / max(len(front.trials), 1),
                      "measure_s_median": statistics.median(costs) if costs else 0.0,
                      "measure_s_p90": float(np.percentile(costs, 90)) if costs else 0.0}
        print(f"  {label}: {out[label]}", file=sys.stderr, flush=True)
    out["target"] = target.describe()
    return out


def md_table(rows: list[dict], cols: list[str], fmt=lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)) -> str:
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join("—" if r.get(c) is None else fmt(r.get(c)) for c in cols) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="1,2,4")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--tune", type=int, default=64, help="MetaSchedule trials for the tuned TVM column (0: skip)")
    ap.add_argument("--budget", type=int, default=200)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    ap.add_argument("--timing", default="{}", help="timing policy for part 1, as JSON, e.g. "
                    '\'{"reference": true, "wait_for_quiet_s": 10}\'')
    ap.add_argument("--busy", action="store_true", help="part 1 again with a process spinning on one core")
    args = ap.parse_args(argv)
    parts = {int(p) for p in args.parts.split(",")}
    os.environ.setdefault("TRADEOFF_HOME", tempfile.mkdtemp(prefix="tradeoff-bench-"))
    from tradeoff.hardware.ort import cpu_name

    header = (f"{cpu_name()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start, "
              f"python {platform.python_version()}")
    print(f"Machine: {header}\n")
    result: dict = {"machine": header}
    arts = models() if parts & {1, 2} else []
    if 1 in parts:
        from latency_predictors import CpuHog

        timing = json.loads(args.timing)
        for label in ("as found", "one core busy") if args.busy else ("as found",):
            hog = CpuHog() if label != "as found" else contextlib.nullcontext()
            with hog:
                rows = part1(arts, args.repeats, timing)
            result.setdefault("stability", {})[label] = rows
            print(f"### 1. Stability of the reported median (ORT CPU, 1 thread, {args.repeats} independent "
                  f"measurements, {label}, policy {timing})\n")
            print(md_table([{**r, "cv": f"{r['cv']:.2%}", "cv_ratio": f"{r['cv_ratio']:.2%}",
                             "cv_p10": f"{r['cv_p10']:.2%}", "ci_rel": f"±{r['ci_rel']:.1%}"} for r in rows],
                           ["model", "median_ms", "cv", "cv_ratio", "cv_p10", "min", "max", "n", "ci_rel", "noisy",
                            "waited_s"]) + "\n")
    if 2 in parts:
        rows = part2(arts, args.tune)
        result["runtimes"] = rows
        cols = ["model", "ort", "tvm"] + ([f"tvm tuned ({args.tune})"] if args.tune else []) + ["torch eager", "torch.compile"]
        print("### 2. Median latency (ms), one thread, batch 1\n")
        print(md_table(rows, cols) + "\n")
        print("Seconds per measurement, export/compile/tuning included:\n")
        print(md_table([{"model": r["model"], **{c: r.get(c + " s") for c in cols[1:]}} for r in rows], cols) + "\n")
    if 4 in parts:
        r4 = part4(args.budget)
        result["cache"] = r4
        print(f"### 4. Measurement cost and cache hits over {args.budget}-trial searches (convnet_latency, ORT)\n")
        rows = [{"search": k, **v} for k, v in r4.items() if k != "target"]
        print(md_table(rows, ["search", "trials", "hits", "misses", "hit_rate", "measure_s_median", "measure_s_p90",
                              "s_per_trial"]) + "\n")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "latency.json").write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
