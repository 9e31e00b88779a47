"""How often each algorithm proposes candidates that crash, on a space with a crashing region.

A toy with the shape of a real search: deeper and wider models are more accurate and costlier,
and one activation raises an exception when the model is deep (as an export error or a NaN
would). Random search fails about 15% of the time here. An algorithm that learns nothing from
its failures keeps proposing deep models with that activation; ``predictive`` now fits a
success classifier on every trial, failed ones included, and weighs its picks by it. Printed:
per algorithm, the median over seeds of the failed trials (all, and in the second half of the
budget) and of the hypervolume at a fixed reference point.

    .venv/bin/python bench/failure_regions.py [--seeds 10] [--budget 80]
"""

from __future__ import annotations

import argparse
import math
import time
import warnings

import numpy as np

import tradeoff as to


def evaluate(c: dict) -> dict:
    if c["act"] == "bad" and c["depth"] > 6:
        raise RuntimeError("act 'bad' diverges when deep")
    acc = 1 - 1 / (1 + c["depth"] * c["width"] / 64) - abs(math.log10(c["lr"]) + 2.5) * 0.05
    return {"acc": acc + 0.01 * (c["act"] == "gelu"),
            "cost": c["depth"] * c["width"] * (1.2 if c["act"] == "gelu" else 1.0)}


SPACE = to.Space({"depth": to.Int(2, 10), "width": to.Choice([16, 32, 64, 128]),
                  "lr": to.Float(1e-4, 0.1, log=True), "act": to.Choice(["relu", "gelu", "bad"])})
VARIANTS = {"predictive, failures ignored": ("predictive", {"learn_failures": False})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--budget", type=int, default=80)
    ap.add_argument("--algorithms", default="predictive,predictive, failures ignored,random,motpe,local,nsga2",
                    help="comma-separated; 'predictive, failures ignored' is predictive with learn_failures=False")
    args = ap.parse_args()
    names = [a.strip() for a in args.algorithms.replace("predictive, failures", "predictive|failures").split(",")]
    names = [n.replace("|", ", ") for n in names]
    warnings.filterwarnings("ignore", category=to.api.SearchWarning)
    half = args.budget // 2
    print(f"| algorithm | failed trials of {args.budget} | failed in the last {args.budget - half} | hypervolume | s/run |")
    print("|---|---|---|---|---|")
    for name in names:
        kind, options = VARIANTS.get(name, (name, {}))
        failed, late, hv, secs = [], [], [], []
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            front = to.search(SPACE, {"acc": "maximize", "cost": "minimize"}, evaluate, budget=args.budget,
                              algorithm=to.make_algorithm(kind, **options), seed=seed, tracking=None, progress=False,
                              reference_point={"acc": 0.3, "cost": 1500})
            secs.append(time.perf_counter() - t0)
            bad = [not t.ok for t in front.trials]
            failed.append(sum(bad))
            late.append(sum(bad[half:]))
            hv.append(front.hypervolume())
        print(f"| {name} | {np.median(failed):g} | {np.median(late):g} | {np.median(hv):.1f} | {np.median(secs):.1f} |",
              flush=True)
    print(f"\nmedians over {args.seeds} seeds; reference point acc 0.3, cost 1500")


if __name__ == "__main__":
    main()
