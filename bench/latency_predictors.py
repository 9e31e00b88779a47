"""Held-out accuracy of the latency predictors on this machine (ONNX Runtime CPU, one thread).

Samples ConvNets from ``convnet_space()``, times them on the target, fits every predictor on the
training models and scores it on models it never saw; also re-times some held-out models to
show how well the device reproduces its own figures (the ceiling for any predictor).

    .venv/bin/python bench/latency_predictors.py                        # 60 train / 40 held out
    .venv/bin/python bench/latency_predictors.py --train 30 --test 20 --stat p10_ms
    .venv/bin/python bench/latency_predictors.py --transfer             # ConvNets -> torchvision + timm
    .venv/bin/python bench/latency_predictors.py --transfer --busy      # the same, with a CPU hog running

``--transfer`` calibrates on ConvNets, then predicts 12 torchvision and 3 timm models (random
weights) at two resolutions, and reports per predictor the share within ±10%, MAPE and Kendall τ
over all of them and over those the gate accepts (the others are refused as outside the
calibrated family, with the reason). ``--busy`` starts a process spinning on one core for the
whole run and stops it at the end.

Prints markdown tables; writes bench/results/latency_predictors[_transfer][_busy].json.
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


def standard_models(resolutions=(64, 96)) -> list:
    """12 torchvision and 3 timm models at each resolution, random weights (nothing downloads)."""
    import timm
    import torch
    import torchvision.models as tv

    from tradeoff.hardware.base import Artifact

    makers = {"resnet18": tv.resnet18, "resnet34": tv.resnet34,
              "mobilenet_v2_0.5": lambda **kw: tv.mobilenet_v2(width_mult=0.5, **kw), "mobilenet_v2": tv.mobilenet_v2,
              "mobilenet_v3_small": tv.mobilenet_v3_small, "mobilenet_v3_large": tv.mobilenet_v3_large,
              "shufflenet_v2_x0_5": tv.shufflenet_v2_x0_5, "shufflenet_v2_x1_0": tv.shufflenet_v2_x1_0,
              "squeezenet1_1": tv.squeezenet1_1, "mnasnet0_5": tv.mnasnet0_5, "efficientnet_b0": tv.efficientnet_b0,
              "regnet_x_400mf": tv.regnet_x_400mf,
              **{f"timm:{n}": (lambda n=n, **kw: timm.create_model(n, pretrained=False, **kw))
                 for n in ("resnet10t", "efficientnet_lite0", "lcnet_050")}}
    out = []
    for hw in resolutions:
        for name, make in makers.items():
            torch.manual_seed(0)
            x = torch.randn(1, 3, hw, hw)
            out.append(Artifact(f"{name}-{hw}", (x,), module=make(num_classes=10).eval()))
    return out


def transfer(rep, target, stat: str, resolutions, log=print) -> dict:
    """Predict models of other families with predictors calibrated on ConvNets; the gate's verdict per model."""
    import copy

    import numpy as np

    from tradeoff.evaluators.predicted_latency import PredictedLatency
    from tradeoff.predictors.quality import quality

    rows = []
    tables = {id(p.table): p.table for p in rep.predictors.values() if hasattr(p, "table")}
    for art in standard_models(resolutions):
        st = target.measure(art)
        for table in tables.values():      # its kernels timed now, beside it, as in the calibration
            table.ensure(art)
        row = {"artifact": art.name, "measured_ms": float(getattr(st, stat)), "ci_rel": st.ci_rel, "noisy": st.noisy}
        for name, p in rep.predictors.items():
            gate = PredictedLatency(p, min_within_10pct=0.0, min_kendall_tau=0.0)
            row[name] = float(p.predict(art))
            row[f"{name}_refused"] = "; ".join(gate.family_gaps(art))
        rows.append(row)
        log(f"{art.name}: {row['measured_ms']:.3f} ms; " + ", ".join(
            f"{n} {row[n]:.3f}{' (refused)' if row[f'{n}_refused'] else ''}" for n in rep.predictors))
    y = np.array([r["measured_ms"] for r in rows])
    fresh = copy.copy(target)             # the device's own ceiling on these models: each re-timed once
    fresh.cache = None
    again = np.array([float(getattr(fresh.measure(a), stat)) for a in standard_models(resolutions)])
    rel = np.abs(again - y) / y
    out = {"rows": rows, "quality": {}, "accepted": {},
           "repeatability": {"n": len(rel), "within_10pct": float(np.mean(rel <= 0.10)), "mape": float(rel.mean())}}
    for name in rep.predictors:
        p = np.array([r[name] for r in rows])
        ok = np.array([not r[f"{name}_refused"] for r in rows])
        out["quality"][name] = quality(y, p)
        out["accepted"][name] = {**(quality(y[ok], p[ok]) if ok.sum() >= 3 else {}), "n_accepted": int(ok.sum())}
    return out


class CpuHog:
    """A child process spinning on one core for as long as the bench runs (the busy machine users have)."""

    def __enter__(self):
        import subprocess
        import sys

        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=60)
    ap.add_argument("--test", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--stat", default="median_ms", choices=("median_ms", "p10_ms"))
    ap.add_argument("--retest", type=int, default=20)
    ap.add_argument("--predictors", default=",".join(PREDICTORS))
    ap.add_argument("--transfer", action="store_true", help="predict torchvision and timm models too")
    ap.add_argument("--resolutions", default="64,96")
    ap.add_argument("--busy", action="store_true", help="run with a process spinning on one core")
    ap.add_argument("--timing", default='{"warmup": 3, "min_repeats": 10, "rel_ci": 0.03, "time_cap_s": 0.5}',
                    help="the target's timing policy, as JSON")
    args = ap.parse_args()

    import contextlib

    hog = CpuHog() if args.busy else contextlib.nullcontext()
    with hog:
        run(args)


def run(args) -> None:
    from tradeoff.hardware.base import make_target
    from tradeoff.predictors.calibration import calibrate
    from tradeoff.workloads.convnets import convnet_space

    # every figure timed now (remeasure), never taken from an earlier run's cache: a --busy run measures under load
    target = make_target("ort", threads=args.threads, timing=json.loads(args.timing), remeasure=True)
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
    if args.transfer:
        res = tuple(int(r) for r in args.resolutions.split(","))
        d["transfer"] = tr = transfer(rep, target, args.stat, res, log=lambda m: print(m, flush=True))
        rr = tr["repeatability"]
        print(f"\nTransfer: calibrated on ConvNets, predicting {len(tr['rows'])} torchvision/timm models at "
              f"{res}; the device re-timed {rr['within_10pct']:.0%} of them within ±10% of their first figure "
              f"(MAPE {rr['mape']:.1%})\n")
        print("| predictor | within ±10% | MAPE | Kendall τ | accepted by the gate | within ±10% of accepted |")
        print("|---|---|---|---|---|---|")
        for name, q in tr["quality"].items():
            a = tr["accepted"][name]
            acc = f"{a['within_10pct']:.0%}" if "within_10pct" in a else "-"
            print(f"| {name} | {q['within_10pct']:.0%} | {q['mape']:.1%} | {q['kendall_tau']:.3f} | "
                  f"{a['n_accepted']}/{len(tr['rows'])} | {acc} |")
        reasons = sorted({r[f"{n}_refused"] for r in tr["rows"] for n in rep.predictors if r[f"{n}_refused"]})
        for why in reasons[:6]:
            print(f"- refused: {why}")
    name = "latency_predictors" + ("_transfer" if args.transfer else "") + ("_busy" if args.busy else "")
    out = Path(__file__).parent / "results" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(d, indent=1, default=str))


if __name__ == "__main__":
    main()
