"""Search efficiency: hypervolume regret 1 - HV(found)/HV(true front) after 50/100/200/400 evaluations.

Median over seeds, for every algorithm, on ZDT1 (5 reals), DTLZ2 (3 objectives) and the real
tabular benchmark NAS-Bench-Graph (Cora: validation accuracy vs latency, 59,040 configurations).

    .venv/bin/python bench/search_efficiency.py                      # everything, 5 seeds
    .venv/bin/python bench/search_efficiency.py --problems nbg --algorithms nsga2,predictive --seeds 3

Prints a markdown table; writes bench/results/search_efficiency.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

CHECKPOINTS = (50, 100, 200, 400)
PROBLEMS = {
    "zdt1": {"workload": ("zdt1", {"n_var": 5}), "objectives": {"f1": "minimize", "f2": "minimize"},
             "reference": {"f1": 1.1, "f2": 1.1}},
    "dtlz2": {"workload": ("dtlz2", {"n_obj": 3}), "objectives": {"f1": "minimize", "f2": "minimize", "f3": "minimize"},
              "reference": {"f1": 1.1, "f2": 1.1, "f3": 1.1}},
    "nbg": {"workload": ("nasbench_graph", {"dataset": "cora"}),
            "objectives": {"accuracy": "maximize", "latency_ms": "minimize"}, "reference": None},
}
# model-based samplers whose cost per ask grows with the trials seen: capped budgets (marked in the table)
BUDGET_CAP = {"optuna-gp": 100}


def default_algorithms() -> list[str]:
    from tradeoff import algorithm_names

    names = [n for n in algorithm_names() if not n.startswith("ng")]
    return names + ["ng:NGOpt", "ng:TwoPointsDE"]


def reference_for(name: str, wl) -> dict[str, float]:
    """Given for the synthetic problems; the true front's nadir + 10% of its range for tables."""
    p = PROBLEMS[name]
    if p["reference"]:
        return p["reference"]
    objs = list(p["objectives"])
    signs = np.array([1.0 if p["objectives"][o] == "minimize" else -1.0 for o in objs])
    F = wl.true_front(objs)
    ref = F.max(axis=0) + 0.1 * (F.max(axis=0) - F.min(axis=0))
    return {o: float(s * r) for o, s, r in zip(objs, signs, ref)}


def true_hv(name: str, wl, reference: dict[str, float]) -> float:
    from tradeoff.engine.front import hypervolume

    p = PROBLEMS[name]
    objs = list(p["objectives"])
    signs = np.array([1.0 if p["objectives"][o] == "minimize" else -1.0 for o in objs])
    return hypervolume(wl.true_front(objs), signs * np.array([reference[o] for o in objs]))


def one_run(problem: str, algorithm: str, seed: int, budget: int) -> dict:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import tradeoff as to
    from tradeoff.workloads import make_workload

    p = PROBLEMS[problem]
    wl = make_workload(p["workload"][0], **p["workload"][1])
    ref = reference_for(problem, wl)
    t = time.perf_counter()
    front = to.search(wl.space, p["objectives"], wl.evaluate, budget=budget, algorithm=algorithm, seed=seed,
                      tracking=None, reference_point=ref)
    seconds = time.perf_counter() - t
    curve = front.hypervolume_curve(ref)
    hv_true = true_hv(problem, wl, ref)
    regret = {str(k): float(1 - curve[min(k, len(curve)) - 1] / hv_true) for k in CHECKPOINTS if k <= budget}
    return {"problem": problem, "algorithm": algorithm, "seed": seed, "budget": budget, "regret": regret,
            "seconds": seconds,
            "trials": len(front.trials), "failed": len(front.failed), "curve": (1 - curve / hv_true).tolist()}


def table(results: list[dict], problems: list[str], algorithms: list[str]) -> str:
    head = "| algorithm | " + " | ".join(f"{p} @{k}" for p in problems for k in CHECKPOINTS) + " | s/run |"
    sep = "|---|" + "---|" * (len(problems) * len(CHECKPOINTS)) + "---|"
    lines = [head, sep]
    for a in algorithms:
        cells = []
        secs = []
        for p in problems:
            runs = [r for r in results if r["algorithm"] == a and r["problem"] == p]
            secs += [r["seconds"] for r in runs]
            for k in CHECKPOINTS:
                vals = [r["regret"][str(k)] for r in runs if str(k) in r["regret"]]
                vals = [v for v in vals if v is not None]
                cells.append(f"{np.median(vals):.3f}" if vals else "—")
        lines.append(f"| {a} | " + " | ".join(cells) + f" | {np.median(secs):.1f} |" if secs else f"| {a} | " +
                     " | ".join(cells) + " | — |")
    return "\n".join(lines)


def plot(results: list[dict], problems: list[str], algorithms: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(problems), figsize=(5.5 * len(problems), 4.2), squeeze=False)
    for ax, p in zip(axes[0], problems):
        for a in algorithms:
            curves = [r["curve"] for r in results if r["algorithm"] == a and r["problem"] == p]
            if not curves:
                continue
            n = min(len(c) for c in curves)
            med = np.median(np.array([c[:n] for c in curves]), axis=0)
            ax.plot(np.arange(1, n + 1), np.maximum(med, 1e-4), label=a, lw=1.6 if a == "predictive" else 1.0)
        ax.set_yscale("log")
        ax.axhline(0.01, color="k", ls=":", lw=0.8)
        ax.set_title(f"{p}: median HV regret")
        ax.set_xlabel("evaluations")
        ax.set_ylabel("1 - HV/HV*")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problems", default=",".join(PROBLEMS))
    ap.add_argument("--algorithms", default=None, help="comma-separated; default: every registered one")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--budget", type=int, default=max(CHECKPOINTS))
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    ap.add_argument("--fresh", action="store_true", help="forget earlier runs logged in the output folder")
    args = ap.parse_args(argv)
    problems = args.problems.split(",")
    algorithms = args.algorithms.split(",") if args.algorithms else default_algorithms()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(p, a, s, min(args.budget, BUDGET_CAP.get(a, args.budget)))
            for p in problems for a in algorithms for s in range(args.seeds)]
    # every finished run is appended to a log, so an interrupted benchmark continues where it stopped
    log = out / "search_efficiency.jsonl"
    if args.fresh and log.exists():
        log.unlink()
    done = {}
    if log.exists():
        for line in log.read_text().splitlines():
            r = json.loads(line)
            done[(r["problem"], r["algorithm"], r["seed"], r["budget"])] = r
    results = [done[j] for j in jobs if j in done]
    jobs = [j for j in jobs if j not in done]
    t0 = time.time()
    with ProcessPoolExecutor(args.workers) as pool:
        futs = {pool.submit(one_run, *j): j for j in jobs}
        for i, f in enumerate(as_completed(futs), 1):
            j = futs[f]
            try:
                r = f.result()
                results.append(r)
                with open(log, "a") as fh:
                    fh.write(json.dumps(r) + "\n")
                print(f"[{i}/{len(jobs)}] {j[0]} {j[1]} seed {j[2]}: regret@100 {r['regret'].get('100', float('nan')):.4f}"
                      f" ({r['seconds']:.1f} s)", file=sys.stderr, flush=True)
            except Exception as e:  # noqa: BLE001 - a broken algorithm is reported, not fatal
                print(f"[{i}/{len(jobs)}] {j} failed: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
    md = table(results, problems, algorithms)
    import platform

    note = (f"\nMedian hypervolume regret over {args.seeds} seeds (lower is better; 0 = the true front). "
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {time.time() - t0:.0f} s in all. "
            + ", ".join(f"{a} capped at {b} evaluations" for a, b in BUDGET_CAP.items() if a in algorithms))
    print(md + "\n" + note)
    (out / "search_efficiency.md").write_text(md + "\n" + note + "\n")
    (out / "search_efficiency.json").write_text(json.dumps(results))
    plot(results, problems, algorithms, out / "search_efficiency.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
