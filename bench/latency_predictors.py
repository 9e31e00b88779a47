"""Held-out accuracy of the latency predictors on this machine (ONNX Runtime CPU, one thread).

Samples ConvNets from ``convnet_space()``, times them on the target, fits every predictor on the
training models and scores it on models it never saw; also re-times some held-out models to
show how well the device reproduces its own figures (the ceiling for any predictor).

    .venv/bin/python bench/latency_predictors.py                        # 60 train / 40 held out
    .venv/bin/python bench/latency_predictors.py --train 30 --test 20 --stat p10_ms

Prints a markdown table; writes bench/results/latency_predictors.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

PREDICTORS = ("lut", "lut-constant", "lut-wall", "kernel-rf", "kernel-gbm", "model", "model-rf")


def quality_on_precise(rep, rel_ci: float) -> dict:
    """The same scores on the held-out models whose own measurement is precise (CI within the policy's)."""
    import numpy as np

    from tradeoff.predictors.quality import quality

    n_train = rep.summary["n_train"]
    y = np.array(rep.summary["held_out"]["measured_ms"])
    precise = np.array(rep.summary["models"]["ci_rel"][n_train:]) <= rel_ci + 1e-9
    if precise.sum() < 3:
        return {}
    return {n: quality(y[precise], p.last_predictions[precise]) for n, p in rep.predictors.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=60)
    ap.add_argument("--test", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--stat", default="median_ms", choices=("median_ms", "p10_ms"))
    ap.add_argument("--retest", type=int, default=20)
    ap.add_argument("--predictors", default=",".join(PREDICTORS))
    ap.add_argument("--timing", default='{"warmup": 3, "min_repeats": 10, "rel_ci": 0.03, "time_cap_s": 0.5}',
                    help="the target's timing policy, as JSON")
    args = ap.parse_args()

    from tradeoff.hardware.base import make_target
    from tradeoff.predictors.calibration import calibrate
    from tradeoff.workloads.convnets import convnet_space

    target = make_target("ort", threads=args.threads, timing=json.loads(args.timing))
    t0 = time.perf_counter()
    rep = calibrate(target, convnet_space(), n_train=args.train, n_test=args.test, seed=args.seed, stat=args.stat,
                    retest=min(args.retest, args.test), predictors=args.predictors.split(","),
                    log=lambda m: print(m, flush=True))
    d = rep.to_dict()
    d["wall_s"] = time.perf_counter() - t0
    d["quality_precise"] = quality_on_precise(rep, target.policy.rel_ci)
    m, r = d["models"], d.get("repeatability", {})
    print(f"\n{target.describe()['device']}, ORT threads={args.threads}, stat={args.stat}, "
          f"policy={json.loads(args.timing)}; {args.train} train / {args.test} held-out models, "
          f"{m['min_ms']:.2f}-{m['max_ms']:.2f} ms; calibration {d['wall_s']:.0f} s")
    if r:
        print(f"re-timed held-out models within ±10% of their first figure: {r['within_10pct']:.0%} "
              f"(n={r['n']}, MAPE {r['mape']:.1%}); median CI of the median ±{m['ci_rel_median']:.1%}, "
              f"load per core {m['load_per_core_median']:.2f}\n")
    print("| predictor | within ±10% | MAPE | Kendall τ | fit + predict s |")
    print("|---|---|---|---|---|")
    for name, q in d["quality"].items():
        c = d["predictor_costs"][name]
        print(f"| {name} | {q['within_10pct']:.0%} | {q['mape']:.1%} | {q['kendall_tau']:.3f} | "
              f"{c['fit_s'] + c['evaluate_s']:.1f} |")
    out = Path(__file__).parent / "results" / "latency_predictors.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(d, indent=1, default=str))


if __name__ == "__main__":
    main()
