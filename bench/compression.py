"""Compression figures: the measured front (accuracy, ORT CPU latency, size) against fp32, int8,
int4 weight-only and the sensitivity allocation, for the digits CNN, a timm model and mnist1d.

For each model it prints whether the search's front dominates each baseline, the best latency and
size within 0.5 and 1 accuracy points of fp32 (and that latency against uniform int8's), and the
search's cost in evaluations and minutes. Latency is one ONNX Runtime CPU thread, batch 1.

    .venv/bin/python bench/compression.py                                  # all three
    .venv/bin/python bench/compression.py --models digits_cnn --budget 30
    .venv/bin/python bench/compression.py --timm test_resnet               # a smaller timm model
    .venv/bin/python bench/compression.py --act-bits 8,32                  # activation bits searched too

Writes bench/results/compression.{md,png}.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
OBJECTIVES = {"accuracy": "maximize", "latency_ms": "minimize", "size_mb": "minimize"}
BASELINES = ("fp32", "int8", "int4_weight_only", "sensitivity")


def uniform_seeds(wl, keeps=(0.75, 0.5)) -> list[dict]:
    """The obvious plans a user would try first: one keep ratio for every group, every layer W8A8."""
    quant = [k for k in wl.space.names if k.startswith("quant.") and not k.endswith(":act")]
    prune = [k for k in wl.space.names if k.startswith("prune.")]
    return [{**wl.baselines["int8"], **{q: 8 for q in quant}, **{g: float(k) for g in prune}} for k in keeps]


def run_one(model: str, budget: int, finetune_steps: int, seed: int, act_bits: list[int] | None = None,
            seed_uniform: bool = False, finetune_lr: float = 1e-2):
    import tradeoff as to
    from tradeoff.workloads import make_workload

    keep = [0.25, 0.5, 0.75, 1.0]
    opts = {"train_steps": 300} if model.startswith("timm:") else {}
    if act_bits:
        opts["act_bits"] = act_bits
    t0 = time.perf_counter()
    wl = make_workload("compression", model=model, bits=[4, 8, 32], keep=keep, finetune_steps=finetune_steps,
                       finetune_lr=finetune_lr, **opts)
    setup_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    initial = [*wl.baselines.values(), *uniform_seeds(wl)] if seed_uniform else "baselines"
    # the reference model is timed between the candidate's repeats: its ratio cancels contention and drift
    target = {"runtime": "ort", "threads": 1, "timing": {"reference": True}}
    front = to.search(wl, OBJECTIVES, targets={"cpu": target}, budget=budget,
                      initial=initial, tracking=None, seed=seed, name=f"bench-{model}", progress=True)
    return wl, front, setup_s, time.perf_counter() - t0


def speed_key(*ms: dict) -> str:
    """Compare latencies by their ratio to the reference timed beside each (the raw medians where one lacks it)."""
    return "latency_ref_ratio" if all(m.get("latency_ref_ratio") for m in ms) else "latency_ms"


def faster_than(m: dict, base: dict) -> float:
    """How many times faster than ``base`` (fp32, uniform int8) ``m`` runs."""
    k = speed_key(m, base)
    return base[k] / m[k]


def dominates(a: dict, b: dict) -> bool:
    k = speed_key(a, b)
    ge = a["accuracy"] >= b["accuracy"] and a[k] <= b[k] and a["size_mb"] <= b["size_mb"]
    gt = a["accuracy"] > b["accuracy"] or a[k] < b[k] or a["size_mb"] < b["size_mb"]
    return ge and gt


def summarise(model: str, wl, front, setup_s: float, search_s: float) -> dict:
    base = front.baselines
    searched = [t.metrics for t in front.searched if t.ok]
    fp32 = base["fp32"]["accuracy"]
    out = {"model": model, "val": f"{wl.info.get('val_n')} held-out ({wl.info.get('split', '')})",
           "baselines": base, "n_eval": len(front.trials), "n_search": len(front.searched),
           "n_failed": len(front.failed), "failed_why": sorted({(t.reason or "")[:90] for t in front.failed}),
           "search_min": search_s / 60, "setup_min": setup_s / 60,
           "dominates": {n: any(dominates(m, base[n]) for m in searched) for n in base}}
    pool = searched + list(base.values())
    for tol in (0.005, 0.01):
        ok = [m for m in pool if m["accuracy"] >= fp32 - tol]
        out[f"best_latency_{tol}"] = max(ok, key=lambda m: faster_than(m, base["int8"])) if ok else None
        out[f"best_size_{tol}"] = min(ok, key=lambda m: m["size_mb"]) if ok else None
    return out


def table(rows: list[dict]) -> str:
    lines = ["| model | baseline | accuracy | latency ms | latency / fp32's | size MB | front dominates it |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        for n in BASELINES:
            if n in r["baselines"]:
                m = r["baselines"][n]
                rel = 1.0 / faster_than(m, r["baselines"]["fp32"])
                lines.append(f"| {r['model']} | {n} | {m['accuracy']:.4f} | {m['latency_ms']:.4f} | {rel:.2f} | "
                             f"{m['size_mb']:.4f} | {'yes' if r['dominates'][n] else 'no'} |")
    lines += ["", "| model | within | best latency ms (acc) | vs fp32 | vs int8 (raw medians) | vs int8 (reference "
              "ratios) | best size MB (acc) | vs int8 size |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        b = r["baselines"]
        for tol in (0.005, 0.01):
            lat, size = r[f"best_latency_{tol}"], r[f"best_size_{tol}"]
            if lat is None:
                lines.append(f"| {r['model']} | {tol:.1%} | none | | | | | |")
                continue
            lines.append(f"| {r['model']} | {tol:.1%} | {lat['latency_ms']:.4f} ({lat['accuracy']:.4f}) | "
                         f"{faster_than(lat, b['fp32']):.2f}x | "
                         f"{b['int8']['latency_ms'] / lat['latency_ms']:.2f}x | {faster_than(lat, b['int8']):.2f}x | "
                         f"{size['size_mb']:.4f} ({size['accuracy']:.4f}) | {b['int8']['size_mb'] / size['size_mb']:.2f}x |")
    lines += ["", "| model | held-out split | evaluations (search + baselines) | failed | search min | model setup min |",
              "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['val']} | {r['n_eval']} ({r['n_search']} + {r['n_eval'] - r['n_search']}) | "
                     f"{r['n_failed']} | {r['search_min']:.1f} | {r['setup_min']:.1f} |")
    why = [f"- {r['model']}: {w}" for r in rows for w in r["failed_why"]]
    if why:
        lines += ["", "Failed trials (each recorded with its reason; the search went on):", *why]
    return "\n".join(lines)


def corrected_ms(front) -> Callable[[dict], float]:
    """Latency with the contention taken out: each trial's ratio to the reference, times the reference's median."""
    import numpy as np

    ms = [t.metrics for t in front.trials if t.ok]
    refs = [m["latency_ms"] / m["latency_ref_ratio"] for m in ms if m.get("latency_ref_ratio")]
    if not refs:
        return lambda m: m["latency_ms"]
    ref = float(np.median(refs))
    return lambda m: m["latency_ref_ratio"] * ref if m.get("latency_ref_ratio") else m["latency_ms"]


def plot(results: list[tuple[str, object]], path: Path) -> None:
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
    from matplotlib.figure import Figure

    from tradeoff.core.pareto import nondominated_mask

    fig = Figure(figsize=(5.2 * len(results), 4.6), layout="constrained")
    markers = dict(zip(BASELINES, "Ds^P"))
    for i, (model, front) in enumerate(results):
        ax = fig.add_subplot(1, len(results), i + 1)
        lat = corrected_ms(front)
        pts = [t.metrics for t in front.searched if t.ok]
        if pts:
            F = np.array([[-m["accuracy"], lat(m), m["size_mb"]] for m in pts])
            keep = nondominated_mask(F)
            xs = np.array([lat(m) for m in pts])
            ys = np.array([m["accuracy"] for m in pts])
            ax.scatter(xs[~keep], ys[~keep], s=14, color="#a9a9a9", label="searched, dominated")
            ax.scatter(xs[keep], ys[keep], s=36, color="#1f6fb4", edgecolors="white",
                       label="searched, on the 3-D front")
        for n, m in front.baselines.items():
            ax.scatter([lat(m)], [m["accuracy"]], s=80, marker=markers.get(n, "X"), facecolors="none",
                       edgecolors="black", lw=1.4, label=f"{n} ({m['size_mb'] * 1000:.0f} kB)")
        fp32 = front.baselines.get("fp32", {}).get("accuracy")
        if fp32 is not None:
            ax.axhline(fp32 - 0.005, color="#b03a2e", lw=0.8, ls="--", label="fp32 - 0.5 points")
            ax.set_ylim(max(0.0, fp32 - 0.15), min(1.0, fp32 + 0.02))
        ax.set_xscale("log")
        ax.set_xlabel("latency ms, contention corrected by the reference (ORT CPU, 1 thread; log)", fontsize=8)
        ax.set_ylabel("held-out accuracy (deployed ONNX)")
        ax.set_title(model, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle("Compression search vs baselines (accuracy, latency; size in the legend)", fontsize=11)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def per_model(spec: str) -> dict[str, int]:
    """``"40,timm:resnet18=16"``: a default (key "") and per-model overrides."""
    out = {}
    for part in spec.split(","):
        k, _, v = part.rpartition("=")
        out[k] = int(v)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="digits_cnn,timm,mnist1d_cnn")
    p.add_argument("--timm", default="resnet18", help="the timm model name (trained briefly on digits)")
    p.add_argument("--budget", default="40,timm:resnet18=16",
                   help="search trials per model (baselines not counted): a default, then model=trials overrides")
    p.add_argument("--finetune-steps", default="200,timm:resnet18=120",
                   help="recovery fine-tune steps after pruning: a default, then model=steps overrides")
    p.add_argument("--finetune-lr", type=float, default=1e-2,
                   help="the recovery fine-tune's peak learning rate (cosine decay); 0.01 recovers most in 100+ steps")
    p.add_argument("--seed-uniform", action="store_true",
                   help="also seed the search with one keep ratio everywhere (0.75, 0.5) + W8A8, the plans tried first")
    p.add_argument("--act-bits", default="", help="e.g. 8,32: activation bits as params of their own "
                                                    "(default: tied to the weights, W8A8/W4A32/W32A32)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(HERE / "results"))
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    models = [f"timm:{args.timm}" if m == "timm" else m for m in args.models.split(",")]
    steps, budgets = per_model(args.finetune_steps), per_model(args.budget)
    act_bits = [int(b) for b in args.act_bits.split(",") if b] or None
    rows, fronts, finetunes = [], [], {}
    for model in models:
        print(f"== {model}", file=sys.stderr, flush=True)
        ft = steps.get(model, steps[""])
        budgets[model] = budget = budgets.get(model, budgets[""])
        wl, front, setup_s, search_s = run_one(model, budget, ft, args.seed, act_bits, args.seed_uniform,
                                                args.finetune_lr)
        finetunes[model] = ft
        rows.append(summarise(model, wl, front, setup_s, search_s))
        fronts.append((model, front))
    text = table(rows)
    load = os.getloadavg()[0] / (os.cpu_count() or 1)
    ft = ", ".join(f"{m} {n}" for m, n in finetunes.items())
    acts = f"activation bits {act_bits} per layer" if act_bits else "activation bits tied to the weights"
    trials = ", ".join(f"{m} {budgets[m]}" for m in models)
    head = (f"Compression search (trials: {trials}; nsga2 seeded with the baselines, {acts}, "
            f"recovery fine-tune after pruning, peak learning rate {args.finetune_lr:g}, steps: {ft}). Latency: ONNX Runtime CPU, 1 thread, batch 1, median; "
            f"load average per core at the end {load:.1f} (other work shares this machine: latencies are noisy). "
            f"'vs int8 (reference ratios)' compares each model's median over a fixed reference model's, timed "
            f"between its repeats, so contention that slows both cancels; 'latency / fp32's', 'vs fp32', the "
            f"dominance test and the plot use those ratios too.\n")
    print(head)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compression.md").write_text(f"{head}\n{text}\n\n![front](compression.png)\n\n"
                                        f"Command: `python bench/compression.py {' '.join(argv or sys.argv[1:])}`\n")
    plot(fronts, out / "compression.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
