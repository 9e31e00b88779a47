"""Search efficiency: hypervolume regret 1 - HV(found)/HV(true front) after 25/50/100/200 evaluations.

Median over seeds, for each algorithm, on ZDT1 (5 reals), DTLZ2 (3 objectives) and the real
tabular benchmark NAS-Bench-Graph: every dataset, validation accuracy against latency
(``nbg-<dataset>``) and against parameters (``nbgp-<dataset>``), 59,040 raw configurations each;
and the joint digits recipe's space (``digits-joint``: supernet architecture x per-block bits x
pruning, accuracy against the deployed model's size), which has no exact front, so its regret is
taken against the front pooled over every logged run of every algorithm.
Also the evaluations needed to reach regret 0.02 and 0.01, the predictor loop's own seconds per
batch, and (``--predictors``) each predictor's held-out Kendall tau on each table.

    .venv/bin/python bench/search_efficiency.py                      # everything, 10 seeds
    .venv/bin/python bench/search_efficiency.py --problems nbg-cora,nbgp-cora --algorithms predictive,local --seeds 3
    .venv/bin/python bench/search_efficiency.py --problems nbg --predictors   # all accuracy-latency tables
    .venv/bin/python bench/search_efficiency.py --problems digits-joint --seeds 3 --budget 100

Prints markdown tables; writes bench/results/search_efficiency.{json,md,png}.
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

CHECKPOINTS = (25, 50, 100, 200)
THRESHOLDS = (0.02, 0.01)
NBG_DATASETS = ("cora", "citeseer", "pubmed", "cs", "physics", "photo", "computers", "arxiv", "proteins")
PROBLEMS = {
    "zdt1": {"workload": ("zdt1", {"n_var": 5}), "objectives": {"f1": "minimize", "f2": "minimize"},
             "reference": {"f1": 1.1, "f2": 1.1}},
    "dtlz2": {"workload": ("dtlz2", {"n_obj": 3}), "objectives": {"f1": "minimize", "f2": "minimize", "f3": "minimize"},
              "reference": {"f1": 1.1, "f2": 1.1, "f3": 1.1}},
}
for _d in NBG_DATASETS:
    PROBLEMS[f"nbg-{_d}"] = {"workload": ("nasbench_graph", {"dataset": _d}),
                             "objectives": {"accuracy": "maximize", "latency_ms": "minimize"}, "reference": None}
    PROBLEMS[f"nbgp-{_d}"] = {"workload": ("nasbench_graph", {"dataset": _d}),
                              "objectives": {"accuracy": "maximize", "params_m": "minimize"}, "reference": None}
    # a search sees the validation accuracy; the test accuracy (on other nodes) is how the models it
    # keeps would do once deployed: the held-out regret
    for _k in (f"nbg-{_d}", f"nbgp-{_d}"):
        PROBLEMS[_k]["held_out"] = {"accuracy": "test_accuracy"}
# a real workload has no exact front: regret is taken against the front pooled over every run of
# every algorithm (its nadir + 10% of its range as the reference), so a run is judged against the
# best that anyone found. The joint digits recipe's space, with size as the cost: the bytes of the
# deployed ONNX file are exact, where a latency on a shared 2-core machine would move the front itself.
PROBLEMS["digits-joint"] = {"workload": ("supernet", {"bits": (4, 8, 32), "keep": (0.5, 0.75, 1.0), "finetune_steps": 10}),
                            "objectives": {"accuracy": "maximize", "size_mb": "minimize"}, "reference": None,
                            "pooled": True}
GROUPS = {"nbg": [f"nbg-{d}" for d in NBG_DATASETS], "nbgp": [f"nbgp-{d}" for d in NBG_DATASETS]}
DEFAULT_ALGORITHMS = ["predictive", "local", "botorch", "optuna-gp", "motpe", "nsga2", "random"]
# model-based samplers whose cost per ask grows with the trials seen: capped budgets (marked in the table)
BUDGET_CAP = {"optuna-gp": 100, "botorch": 100}


def default_algorithms() -> list[str]:
    return list(DEFAULT_ALGORITHMS)


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


def held_out_objectives(problem: str) -> dict[str, str]:
    """The problem's objectives with each searched metric replaced by its held-out twin."""
    p = PROBLEMS[problem]
    return {p["held_out"].get(o, o): d for o, d in p["objectives"].items()}


_HELD_OUT: dict = {}


def held_out_scale(problem: str, wl) -> tuple[np.ndarray, float]:
    """The held-out true front's reference point (its nadir + 10% of its range, minimised) and hypervolume."""
    from tradeoff.core.pareto import hypervolume

    if problem not in _HELD_OUT:
        F = wl.true_front(list(held_out_objectives(problem)))
        ref = F.max(axis=0) + 0.1 * (F.max(axis=0) - F.min(axis=0))
        _HELD_OUT[problem] = (ref, hypervolume(F, ref))
    return _HELD_OUT[problem]


def held_out_regret(problem: str, wl, rows: list[dict]) -> float:
    """``1 - HV/HV*`` on held-out values of the models a search keeps: those nondominated on the values
    it searched. ``HV*`` is the held-out true front's, which no choice made on the searched values need reach."""
    from tradeoff.core.pareto import hypervolume, nondominated_mask

    if not rows:
        return 1.0
    p = PROBLEMS[problem]
    signs = np.array([1.0 if d == "minimize" else -1.0 for d in p["objectives"].values()])
    searched, held = list(p["objectives"]), list(held_out_objectives(problem))
    V = np.array([[r[o] for o in searched] for r in rows], float) * signs
    H = np.array([[r[o] for o in held] for r in rows], float) * signs
    ref, hv = held_out_scale(problem, wl)
    return float(1 - hypervolume(H[nondominated_mask(V)], ref) / hv)


def oracle_held_out_regret(problem: str, wl) -> float:
    """The held-out regret of the searched values' exact front: what a search that found it, and kept
    it, would deploy (every row of the table evaluated, once per problem)."""
    if problem not in _EXACT:
        _EXACT[problem] = held_out_regret(problem, wl, [wl.evaluate(c) for c in wl.space.rows])
    return _EXACT[problem]


_EXACT: dict[str, float] = {}


_WORKLOAD: dict = {}


def workload(problem: str):
    """The problem's workload, kept for the next run in this worker (a table takes seconds to load)."""
    from tradeoff.workloads import make_workload

    name, kwargs = PROBLEMS[problem]["workload"]
    key = (name, tuple(sorted(kwargs.items())))
    if key not in _WORKLOAD:
        _WORKLOAD.clear()  # runs come grouped by problem: one table held at a time
        _WORKLOAD[key] = make_workload(name, **kwargs)
    return _WORKLOAD[key]


def make_variant(spec: str):
    """An algorithm from ``name`` or ``name/option=value/...`` (``predictive/batch_size=5``), so
    variants of one algorithm run side by side under their own names."""
    import ast

    import tradeoff as to

    name, *opts = spec.split("/")
    options = {}
    for o in opts:
        k, sep, v = o.partition("=")
        if not sep:
            raise ValueError(f"algorithm variant {spec!r}: options are name=value, got {o!r}")
        if v.lower() in ("true", "false"):   # as YAML reads them, not as truthy strings
            options[k] = v.lower() == "true"
            continue
        try:
            options[k] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            options[k] = v
    return to.make_algorithm(name, **options)


# the search code a logged run depends on: a run logged under other code is not reused (a changed
# default would otherwise be reported under the algorithm's old name)
SEARCH_CODE = ("core", "engine/algorithms", "predictors", "spaces", "workloads")


def code_fingerprint() -> str:
    """A hash of the search code's sources (the packages in ``SEARCH_CODE``)."""
    import hashlib

    import tradeoff

    root = Path(tradeoff.__file__).parent
    h = hashlib.sha256()
    for sub in SEARCH_CODE:
        for f in sorted((root / sub).glob("*.py")):
            h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:12]


def split_top(text: str) -> list[str]:
    """``text`` split at the commas outside brackets: ``predictive/arms=('local','inner'),local``."""
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += (ch in "([{") - (ch in ")]}")
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    return [a for a in out + [cur] if a]


def one_run(problem: str, algorithm: str, seed: int, budget: int) -> dict:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import tradeoff as to

    p = PROBLEMS[problem]
    wl = workload(problem)
    if p.get("pooled"):
        return pooled_run(problem, algorithm, seed, budget, wl)
    ref = reference_for(problem, wl)
    algo = make_variant(algorithm)
    t = time.perf_counter()
    front = to.search(wl.space, p["objectives"], wl.evaluate, budget=budget, algorithm=algo, seed=seed,
                      tracking=None, reference_point=ref)
    seconds = time.perf_counter() - t
    curve = front.hypervolume_curve(ref)
    hv_true = true_hv(problem, wl, ref)
    regret = {str(k): float(1 - curve[min(k, len(curve)) - 1] / hv_true) for k in CHECKPOINTS if k <= budget}
    reach = {str(th): next((i + 1 for i, v in enumerate(curve) if 1 - v / hv_true <= th), None) for th in THRESHOLDS}
    overhead = [r["seconds"] for r in getattr(algo, "arm_log", [])]
    out = {"problem": problem, "algorithm": algorithm, "seed": seed, "budget": budget, "regret": regret,
           "seconds": seconds, "reach": reach, "overhead_s": float(np.median(overhead)) if overhead else None,
           "chosen": [q["chosen"] for q in getattr(algo, "quality_log", [])],
           "trials": len(front.trials), "failed": len(front.failed), "curve": (1 - curve / hv_true).tolist(),
           "stand_ins": sum(1 for t in front.trials if t.stands_in_for)}
    if p.get("held_out"):
        out["held_out"] = {str(k): held_out_regret(problem, wl, [t.metrics for t in front.trials[:k]
                                                                 if t.ok and t.feasible])
                           for k in CHECKPOINTS if k <= budget}
    return out


def pooled_run(problem: str, algorithm: str, seed: int, budget: int, wl) -> dict:
    """A run on a workload with no exact front: its objective vectors (minimised), in trial order."""
    import dataclasses

    import tradeoff as to

    p = PROBLEMS[problem]
    signs = [1.0 if d == "minimize" else -1.0 for d in p["objectives"].values()]
    algo = make_variant(algorithm)
    t = time.perf_counter()
    # no baselines and no reference point: every algorithm starts from nothing, as on the tables
    front = to.search(dataclasses.replace(wl, baselines={}), p["objectives"], budget=budget, algorithm=algo,
                      seed=seed, tracking=None)
    points = [[s * float(tr.metrics[o]) for s, o in zip(signs, p["objectives"])] if tr.ok and tr.feasible else None
              for tr in front.trials]
    overhead = [r["seconds"] for r in getattr(algo, "arm_log", [])]
    return {"problem": problem, "algorithm": algorithm, "seed": seed, "budget": budget, "points": points,
            "seconds": time.perf_counter() - t, "overhead_s": float(np.median(overhead)) if overhead else None,
            "chosen": [q["chosen"] for q in getattr(algo, "quality_log", [])],
            "trials": len(front.trials), "failed": len(front.failed)}


def pooled_regret(results: list[dict]) -> list[dict]:
    """Fill in regret, reach and curve of pooled runs, against the front of every run of their problem."""
    from tradeoff.core.pareto import hypervolume, nondominated_mask

    for problem in {r["problem"] for r in results if "points" in r}:
        runs = [r for r in results if r["problem"] == problem]
        P = np.array([q for r in runs for q in r["points"] if q is not None])
        F = P[nondominated_mask(P)]
        span = F.max(axis=0) - F.min(axis=0)
        span = np.where(span > 0, span, 0.1 * np.abs(F.max(axis=0)) + 1e-9)   # a front of one point
        ref = F.max(axis=0) + 0.1 * span
        hv_true = hypervolume(F, ref)
        for r in runs:
            curve, seen = [], []
            for q in r["points"]:
                if q is not None:
                    seen.append(q)
                curve.append(1 - hypervolume(np.array(seen), ref) / hv_true if seen else 1.0)
            r["curve"] = curve
            r["regret"] = {str(k): curve[min(k, len(curve)) - 1] for k in CHECKPOINTS if k <= r["budget"]}
            r["reach"] = {str(th): next((i + 1 for i, v in enumerate(curve) if v <= th), None) for th in THRESHOLDS}
            r["pooled_front"] = len(F)
    return results


def table(results: list[dict], problems: list[str], algorithms: list[str]) -> str:
    """One row per (problem, algorithm): median regret at each checkpoint, evaluations to 0.02 / 0.01."""
    head = ("| problem | algorithm | " + " | ".join(f"@{k}" for k in CHECKPOINTS) + " | "
            + " | ".join(f"evals to {t}" for t in THRESHOLDS) + " | s/run | loop s/batch |")
    lines = [head, "|" + "---|" * (len(CHECKPOINTS) + len(THRESHOLDS) + 4)]
    for p in problems:
        for a in algorithms:
            runs = [r for r in results if r["algorithm"] == a and r["problem"] == p]
            if not runs:
                continue
            cells = []
            for k in CHECKPOINTS:
                vals = [r["regret"][str(k)] for r in runs if str(k) in r["regret"]]
                cells.append(f"{np.median(vals):.3f}" if vals else "—")
            for t in THRESHOLDS:  # the median, counting a run that never got there as past its budget
                n = [r["reach"].get(str(t)) or np.inf for r in runs]
                m = float(np.median(n))
                cells.append(f"{m:.0f}" if np.isfinite(m) else f">{max(r['budget'] for r in runs)}")
            over = [r["overhead_s"] for r in runs if r.get("overhead_s") is not None]
            cells.append(f"{np.median([r['seconds'] for r in runs]):.1f}")
            cells.append(f"{np.median(over):.2f}" if over else "—")
            lines.append(f"| {p} | {a} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def wins(results: list[dict], problems: list[str], algorithms: list[str], who: str = "predictive",
         key: str = "regret") -> str:
    """How often ``who`` has the lowest median regret (``key``: or the held-out one) at each checkpoint
    (ties count as wins)."""
    out = []
    for k in CHECKPOINTS:
        n = won = 0
        for p in problems:
            med = {a: np.median([r[key][str(k)] for r in results if r["algorithm"] == a and r["problem"] == p
                                 and str(k) in r.get(key, {})] or [np.nan]) for a in algorithms}
            if who not in med or not np.isfinite(med[who]):
                continue
            n += 1
            won += all(med[who] <= v + 1e-12 for a, v in med.items() if a != who and np.isfinite(v))
        out.append(f"@{k}: best on {won}/{n}")
    return f"{who}: " + ", ".join(out)


def pairwise(results: list[dict], problems: list[str], algorithms: list[str], who: str = "predictive") -> str:
    """``who`` against each other algorithm alone, on the tables and seeds both ran: tables where ``who``'s
    median regret is at most the other's, runs (same table and seed) where it is lower / higher, and the
    geometric mean of the regret ratio (+0.001, so a regret of 0 counts)."""
    budgets = CHECKPOINTS[:3]
    head = ("| against | paired runs | " + " | ".join(f"@{k}: tables at or below" for k in budgets) + " | "
            + " | ".join(f"@{k}: runs lower / higher, geo. mean" for k in budgets) + " |")
    lines = [head, "|---|---|" + "---|" * (2 * len(budgets))]
    mine = {(r["problem"], r["seed"]): r for r in results if r["algorithm"] == who}
    for a in algorithms:
        if a == who:
            continue
        theirs = {(r["problem"], r["seed"]): r for r in results if r["algorithm"] == a and r["problem"] in problems}
        both = sorted(k for k in theirs if k in mine)
        if not both:
            continue
        tables, runs = [], []
        for k in budgets:
            key = str(k)
            per: dict[str, list[tuple[float, float]]] = {}
            for j in both:
                if key in mine[j]["regret"] and key in theirs[j]["regret"]:
                    per.setdefault(j[0], []).append((mine[j]["regret"][key], theirs[j]["regret"][key]))
            pairs = [x for v in per.values() for x in v]
            at_or_below = sum(np.median([x for x, _ in v]) <= np.median([y for _, y in v]) + 1e-12 for v in per.values())
            tables.append(f"{at_or_below} of {len(per)}")
            lo = sum(x < y - 1e-12 for x, y in pairs)
            hi = sum(x > y + 1e-12 for x, y in pairs)
            gm = float(np.exp(np.mean([np.log((x + 1e-3) / (y + 1e-3)) for x, y in pairs]))) if pairs else np.nan
            runs.append(f"{lo} / {hi}, {gm:.2f}")
        lines.append(f"| {a} | {len(both)} | " + " | ".join(tables) + " | " + " | ".join(runs) + " |")
    return "\n".join(lines)


def top_agreement(problem: str, wl, share: float = 0.01) -> float:
    """Kendall tau between the searched and the held-out value of the quality objective over the best
    ``share`` of the table's models by the searched one: how far the order at the top is reproducible."""
    from scipy.stats import kendalltau

    (o, h), = PROBLEMS[problem]["held_out"].items()
    rows = {wl.space.key(c): wl.evaluate(c) for c in wl.space.rows}   # one row per model
    v = np.array([r[o] for r in rows.values()])
    t = np.array([r[h] for r in rows.values()])
    top = np.argsort(-v if PROBLEMS[problem]["objectives"][o] == "maximize" else v)[: max(int(share * len(v)), 10)]
    return float(kendalltau(v[top], t[top])[0])


def held_out_table(results: list[dict], problems: list[str], algorithms: list[str]) -> str:
    """Per problem with a held-out metric: the held-out regret of the exact front of the searched values
    (what finding it exactly would deploy), and each algorithm's median at each checkpoint; the first
    column is the searched and held-out quality's Kendall tau over the best 1% of models."""
    ks = [k for k in CHECKPOINTS if any(str(k) in r.get("held_out", {}) for r in results)]
    lines = ["| problem | tau, top 1% | exact front | "
             + " | ".join(f"{a} @" + "/".join(map(str, ks)) for a in algorithms) + " |",
             "|" + "---|" * (len(algorithms) + 3)]
    for p in problems:
        if not PROBLEMS[p].get("held_out"):
            continue
        cells = []
        for a in algorithms:
            runs = [r for r in results if r["algorithm"] == a and r["problem"] == p and "held_out" in r]
            cells.append(" / ".join(f"{np.median([r['held_out'][str(k)] for r in runs if str(k) in r['held_out']]):.3f}"
                                    if any(str(k) in r["held_out"] for r in runs) else "—" for k in ks)
                         if runs else "—")
        if any(c != "—" for c in cells):
            wl = workload(p)
            lines.append(f"| {p} | {top_agreement(p, wl):.2f} | {oracle_held_out_regret(p, wl):.3f} | "
                         + " | ".join(cells) + " |")
    return "\n".join(lines)


def near_exact(results: list[dict], problems: list[str], algorithms: list[str],
               tolerances: tuple[float, ...] = (0.0, 0.01, 0.02)) -> str:
    """Per algorithm and checkpoint: on how many problems its median held-out regret is at most the exact
    front's (plus each tolerance), i.e. it deploys about as well as finding the searched front exactly."""
    held = [p for p in problems if PROBLEMS[p].get("held_out")]
    exact = {p: oracle_held_out_regret(p, workload(p)) for p in held}
    ks = [k for k in CHECKPOINTS if any(str(k) in r.get("held_out", {}) for r in results)]
    lines = ["| algorithm | " + " | ".join(f"@{k}: <= exact / +0.01 / +0.02" for k in ks) + " |",
             "|" + "---|" * (len(ks) + 1)]
    for a in algorithms:
        cells = []
        for k in ks:
            med = {p: [r["held_out"][str(k)] for r in results if r["algorithm"] == a and r["problem"] == p
                       and str(k) in r.get("held_out", {})] for p in held}
            med = {p: float(np.median(v)) for p, v in med.items() if v}
            cells.append(" / ".join(str(sum(m <= exact[p] + t + 1e-12 for p, m in med.items())) for t in tolerances)
                         + f" of {len(med)}")
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary(results: list[dict], problems: list[str], algorithms: list[str], who: str = "predictive") -> str:
    """One row per problem: ``who``'s median regret at each checkpoint beside the best other algorithm's."""
    others = [a for a in algorithms if a != who]
    lines = ["| problem | " + " | ".join(f"@{k}: {who} / best other" for k in CHECKPOINTS) + " |",
             "|" + "---|" * (len(CHECKPOINTS) + 1)]
    for p in problems:
        cells = []
        for k in CHECKPOINTS:
            med = {a: float(np.median(v)) for a in algorithms
                   if (v := [r["regret"][str(k)] for r in results
                             if r["algorithm"] == a and r["problem"] == p and str(k) in r["regret"]])}
            if who not in med:
                cells.append("—")
                continue
            rest = {a: med[a] for a in others if a in med}
            best = min(rest, key=rest.get) if rest else None
            mine = f"{med[who]:.3f}"
            if best is None:
                cells.append(mine)
                continue
            mine = f"**{mine}**" if med[who] <= rest[best] + 1e-12 else mine
            cells.append(f"{mine} / {rest[best]:.3f} {best}")
        if any(c != "—" for c in cells):
            lines.append(f"| {p} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def stand_in_table(results: list[dict], algorithms: list[str]) -> str:
    """Per algorithm: runs with stand-ins, their share of all evaluations, the most in one run."""
    lines = ["| algorithm | runs with any | of all evaluations | most in a run |", "|---|---|---|---|"]
    for a in algorithms:
        runs = [r for r in results if r["algorithm"] == a and "stand_ins" in r]
        if runs:
            n = [r["stand_ins"] for r in runs]
            lines.append(f"| {a} | {sum(x > 0 for x in n)} of {len(runs)} | {sum(n)} of "
                         f"{sum(r['trials'] for r in runs)} | {max(n)} |")
    return "\n".join(lines)


def median_curve(results: list[dict], problem: str, algorithm: str) -> np.ndarray | None:
    """The pointwise median regret over seeds, as long as the shortest run."""
    curves = [r["curve"] for r in results if r["algorithm"] == algorithm and r["problem"] == problem]
    if not curves:
        return None
    n = min(len(c) for c in curves)
    return np.median(np.array([c[:n] for c in curves]), axis=0)


def evaluations_to_match(results: list[dict], problems: list[str], algorithms: list[str],
                         who: str = "predictive") -> str:
    """Per problem and checkpoint k: ``who``'s median regret after k evaluations, and the evaluations
    each other algorithm's median curve needs to reach it (and that as a multiple of k): the
    "n times fewer evaluations" figure of LINAS and of issue-style goals."""
    others = [a for a in algorithms if a != who]
    lines = ["| problem | k | " + who + " regret @k | " + " | ".join(others) + " |",
             "|" + "---|" * (len(others) + 3)]
    ratios: dict[str, list[float]] = {a: [] for a in others}
    for p in problems:
        mine = median_curve(results, p, who)
        if mine is None:
            continue
        for k in CHECKPOINTS:
            if len(mine) < k:
                continue
            target = mine[k - 1]
            cells = []
            for a in others:
                c = median_curve(results, p, a)
                if c is None:
                    cells.append("—")
                    continue
                hit = np.flatnonzero(c <= target + 1e-12)
                if len(hit):
                    n = int(hit[0]) + 1
                    ratios[a].append(n / k)
                    cells.append(f"{n} ({n / k:.1f}x)")
                else:
                    ratios[a].append(np.inf)
                    cells.append(f">{len(c)} (>{len(c) / k:.1f}x)")
            lines.append(f"| {p} | {k} | {target:.3f} | " + " | ".join(cells) + " |")
    med = []
    for a in others:
        if ratios[a]:
            m = float(np.median(ratios[a]))
            med.append(f"{a} {m:.1f}x" if np.isfinite(m) else f"{a} beyond its budget")
    return "\n".join(lines) + ("\n\nMedian multiple over every (problem, k): " + ", ".join(med) if med else "")


def before_after(before: list[dict], after: list[dict], problems: list[str], algorithms: list[str]) -> str:
    """Median regret of each (problem, algorithm) in an earlier run's results and in these, same seeds;
    a problem with no exact front is scored against the front pooled over both."""
    import copy

    tag = lambda rs, t: [dict(copy.deepcopy(r), _set=t) for r in rs]  # noqa: E731
    both = pooled_regret(tag(before, "before") + tag(after, "after"))  # pooled: one front over both sets
    lines = ["| problem | algorithm | seeds | " + " | ".join(f"@{k} before -> after" for k in CHECKPOINTS) + " |",
             "|" + "---|" * (len(CHECKPOINTS) + 3)]
    for p in problems:
        for a in algorithms:
            runs = {t: {r["seed"]: r for r in both if r["_set"] == t and r["problem"] == p and r["algorithm"] == a}
                    for t in ("before", "after")}
            seeds = sorted(set(runs["before"]) & set(runs["after"]))
            if not seeds:
                continue
            cells = []
            for k in CHECKPOINTS:
                v = {t: [runs[t][s]["regret"][str(k)] for s in seeds if str(k) in runs[t][s]["regret"]]
                     for t in runs}
                cells.append(f"{np.median(v['before']):.3f} -> {np.median(v['after']):.3f}"
                             if v["before"] and v["after"] else "—")
            lines.append(f"| {p} | {a} | {len(seeds)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def predictor_quality(problems: list[str], n_train: int = 100, seed: int = 0,
                      sets: tuple[str, ...] = ("encode", "structured", "cell")) -> str:
    """Held-out Kendall tau (3-fold CV on ``n_train`` random configs) of each predictor on each table,
    on each set of features: ``encode`` (a column per param), ``structured`` (plus operation counts
    and co-occurrences) and ``cell`` (plus the space's own: depths and paths in the cell)."""
    from tradeoff.predictors.encodings import structured_features
    from tradeoff.predictors.models import make_predictor
    from tradeoff.predictors.quality import cross_validated
    from tradeoff.workloads import make_workload

    kinds = ["ridge", "rf", "extra-trees", "gp", "gbm", "mlp"]
    lines = ["| problem | objective | features | " + " | ".join(kinds) + " |", "|" + "---|" * (len(kinds) + 3)]
    for p in problems:
        spec = PROBLEMS[p]
        wl = make_workload(spec["workload"][0], **spec["workload"][1])
        rng = np.random.default_rng(seed)
        configs = [wl.space.sample(rng) for _ in range(n_train)]
        rows = [wl.evaluate(c) for c in configs]
        feature_sets = {"encode": lambda: wl.space.encode_many(configs),
                        "structured": lambda: structured_features(wl.space.with_features(None), configs),
                        "cell": lambda: structured_features(wl.space, configs)}
        for name in sets:
            if name == "cell" and wl.space.extra_features is None:
                continue
            feats = feature_sets[name]()
            for o in spec["objectives"]:
                y = np.array([r[o] for r in rows])
                taus = [cross_validated(make_predictor(k, seed), feats, y, folds=3, seed=seed)["kendall_tau"] for k in kinds]
                lines.append(f"| {p} | {o} | {name} | " + " | ".join(f"{t:.2f}" for t in taus) + " |")
                print(lines[-1], file=sys.stderr, flush=True)
    return "\n".join(lines)


def plot(results: list[dict], problems: list[str], algorithms: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(len(problems), 4)
    rows = -(-len(problems) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), squeeze=False)
    for ax in axes.ravel()[len(problems):]:
        ax.axis("off")
    for ax, p in zip(axes.ravel(), problems):
        for a in algorithms:
            curves = [r["curve"] for r in results if r["algorithm"] == a and r["problem"] == p]
            if not curves:
                continue
            n = min(len(c) for c in curves)
            med = np.median(np.array([c[:n] for c in curves]), axis=0)
            ax.plot(np.arange(1, n + 1), np.maximum(med, 1e-4), label=a, lw=2.0 if a == "predictive" else 1.0)
        ax.set_yscale("log")
        ax.axhline(0.01, color="k", ls=":", lw=0.8)
        ax.set_title(f"{p}: median HV regret", fontsize=9)
        ax.set_xlabel("evaluations")
        ax.set_ylabel("1 - HV/HV*")
        ax.grid(alpha=0.3)
    axes.ravel()[0].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problems", default="zdt1,dtlz2,nbg,nbgp",
                    help="comma-separated: " + ", ".join(PROBLEMS) + "; nbg / nbgp: every dataset")
    ap.add_argument("--algorithms", default=None, help="comma-separated; default: every registered one")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--predictors", action="store_true", help="also each predictor's held-out Kendall tau")
    ap.add_argument("--budget", type=int, default=max(CHECKPOINTS))
    ap.add_argument("--peer-budget", type=int, default=None,
                    help="a longer budget for every algorithm but predictive, to count the evaluations each "
                         "needs to match predictive's regret (the evaluations-to-match table)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    ap.add_argument("--fresh", action="store_true", help="forget earlier runs logged in the output folder")
    ap.add_argument("--reuse-stale", action="store_true",
                    help="also reuse logged runs made with other search code (by default they are run again)")
    ap.add_argument("--logged-only", action="store_true",
                    help="run nothing: report the runs logged in the output folder (each algorithm's seeds as logged)")
    ap.add_argument("--before", default=None,
                    help="an earlier run's search_efficiency.json: also print its median regret beside these")
    args = ap.parse_args(argv)
    problems = [q for p in args.problems.split(",") for q in GROUPS.get(p, [p])]
    unknown = [p for p in problems if p not in PROBLEMS]
    if unknown:
        ap.error(f"--problems: {', '.join(unknown)} not among {', '.join(PROBLEMS)}, nbg, nbgp")
    algorithms = split_top(args.algorithms) if args.algorithms else default_algorithms()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    budget_of = {a: args.budget if a.split("/")[0] == "predictive" or not args.peer_budget else args.peer_budget
                 for a in algorithms}
    jobs = [(p, a, s, min(budget_of[a], BUDGET_CAP.get(a.split("/")[0], budget_of[a])))
            for p in problems for a in algorithms for s in range(args.seeds)]
    # every finished run is appended to a log, so an interrupted benchmark continues where it stopped
    log = out / "search_efficiency.jsonl"
    if args.fresh and log.exists():
        log.unlink()
    code = code_fingerprint()
    done, stale = {}, 0
    if log.exists():
        for line in log.read_text().splitlines():
            r = json.loads(line)
            if r.get("code") != code and not args.reuse_stale:
                stale += 1
                continue
            done[(r["problem"], r["algorithm"], r["seed"], r["budget"])] = r
    if stale:
        print(f"{stale} logged runs in {log} were made with other search code: run again "
              "(--reuse-stale keeps them)", file=sys.stderr)
    results = [done[j] for j in jobs if j in done]
    if args.logged_only and not results:
        print(f"--logged-only: {log} holds no run of these problems and algorithms"
              + ("" if args.reuse_stale else " made with this search code (--reuse-stale takes the others)"),
              file=sys.stderr)
        return 1
    jobs = [] if args.logged_only else [j for j in jobs if j not in done]
    t0 = time.time()
    with ProcessPoolExecutor(args.workers) as pool:
        futs = {pool.submit(one_run, *j): j for j in jobs}
        for i, f in enumerate(as_completed(futs), 1):
            j = futs[f]
            try:
                r = {**f.result(), "code": code}
                results.append(r)
                with open(log, "a") as fh:
                    fh.write(json.dumps(r) + "\n")
                at100 = r["regret"].get("100", float("nan")) if "regret" in r else float("nan")  # pooled: at the end
                print(f"[{i}/{len(jobs)}] {j[0]} {j[1]} seed {j[2]}: regret@100 {at100:.4f}"
                      f" ({r['seconds']:.1f} s)", file=sys.stderr, flush=True)
            except Exception as e:  # noqa: BLE001 - a broken algorithm is reported, not fatal
                print(f"[{i}/{len(jobs)}] {j} failed: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
    results = pooled_regret(results)
    md = (table(results, problems, algorithms) + "\n\n" + wins(results, problems, algorithms) + "\n\n"
          + summary(results, problems, algorithms))
    if "predictive" in algorithms and len(algorithms) > 1:
        md += ("\n\npredictive against each algorithm alone, on the tables and seeds both ran (runs: same table "
               "and seed; geo. mean: of predictive's regret over the other's, +0.001):\n\n"
               + pairwise(results, problems, algorithms))
    if any(a != "predictive" and max((r["budget"] for r in results if r["algorithm"] == a), default=0)
           > max(CHECKPOINTS) for a in algorithms):
        md += ("\n\nEvaluations each algorithm needs to match predictive's median regret at 25 / 50 / 100 / 200 "
               "evaluations (median curve over seeds; in brackets, how many times predictive's count):\n\n"
               + evaluations_to_match(results, problems, algorithms))
    if any("held_out" in r for r in results):
        md += ("\n\nHeld-out regret: the models each search keeps (nondominated on validation accuracy), "
               "judged on their test accuracy against the test accuracy's true front; 'exact front' is the "
               "validation accuracy's true front itself, what a search that found it exactly would deploy:\n\n"
               + held_out_table(results, problems, algorithms) + "\n\n"
               + wins(results, problems, algorithms, key="held_out") + "\n\n"
               + "Problems where the median held-out regret is at most the exact front's (or within 0.01, 0.02):\n\n"
               + near_exact(results, problems, algorithms))
    if any(r.get("stand_ins") for r in results):
        md += ("\n\nTrials a table answered with the nearest row because the algorithm asked for a config it "
               "lacks (stands_in_for):\n\n" + stand_in_table(results, algorithms))
    if args.before:
        md += ("\n\nBefore -> after (the same seeds; the earlier run: " + Path(args.before).name + "):\n\n"
               + before_after(json.loads(Path(args.before).read_text()), results, problems, algorithms))
    if args.predictors:
        md += "\n\nHeld-out Kendall tau (3-fold CV, 100 random configs):\n\n" + predictor_quality(
            [p for p in problems if p.startswith("nbg")])
    import platform

    runs = {a: sum(r["algorithm"] == a for r in results) for a in algorithms}
    over = (f"{args.seeds} seeds" if len(set(runs.values())) <= 1
            else "the seeds logged (runs: " + ", ".join(f"{a} {n}" for a, n in runs.items()) + ")")
    note = (f"\nMedian hypervolume regret over {over} (lower is better; 0 = the true front). "
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {time.time() - t0:.0f} s in all. "
            + ", ".join(f"{a} capped at {b} evaluations" for a, b in BUDGET_CAP.items() if a in algorithms))
    for p in problems:
        runs = [r for r in results if r["problem"] == p and "pooled_front" in r]
        if runs:
            note = note.rstrip() + (f" {p}: no exact front; regret against the front of all {len(runs)} runs pooled "
                     f"({runs[0]['pooled_front']} points).")
    print(md + "\n" + note)
    (out / "search_efficiency.md").write_text(md + "\n" + note + "\n")
    (out / "search_efficiency.json").write_text(json.dumps(results))
    plot(results, problems, algorithms, out / "search_efficiency.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
