"""How well accuracy predictors rank the *top* of NAS-Bench-Graph, where the front is.

A search's last regret is spent telling apart the best architectures of a table. This fits each
predictor on ``--n`` random architectures (the features ``predictive`` sees) and predicts the
validation accuracy of all 26,206, then reports, averaged over ``--repeats`` draws:

- the share of the table's best 1% found among the predicted best 1% (random: 0.01);
- where the best of the predicted top 10 ranks in the table (percentile; lower is better);
- Kendall's tau within the table's best 10% (does it order the architectures that matter?).

Each predictor is also fitted on warped targets (``<name>+warp``: Yeo-Johnson, as HEBO does).
``--across`` prints, instead, Kendall's tau between datasets over each one's best 10%: whether the
top of one dataset says anything about the top of another (what a search warm-started from another
dataset's results would lean on).

    .venv/bin/python bench/predictor_top.py                       # 9 datasets, rf / gp / ridge, raw and warped
    .venv/bin/python bench/predictor_top.py --datasets cora,arxiv --predictors gp,gp+warp
    .venv/bin/python bench/predictor_top.py --across

Prints a markdown table.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from scipy.stats import kendalltau

DATASETS = ("cora", "citeseer", "pubmed", "cs", "physics", "photo", "computers", "arxiv", "proteins")
PARAMS = ["link", "op1", "op2", "op3", "op4"]


def architectures(dataset: str):
    """One config per architecture (its first row), its validation accuracy, and the space."""
    from tradeoff.workloads import make_workload
    from tradeoff.workloads.nasbench_graph import nasbench_graph_frame

    wl = make_workload("nasbench_graph", dataset=dataset)
    frame = nasbench_graph_frame(dataset).drop_duplicates("arch")
    configs = frame[PARAMS].to_dict("records")
    return wl.space, configs, frame["accuracy"].to_numpy(float), frame["arch"].to_numpy()


def top_quality(y: np.ndarray, pred: np.ndarray, seen: np.ndarray) -> dict[str, float]:
    """``y`` and ``pred`` are minimised; the ``seen`` (training) rows are left out of the picks."""
    n = len(y)
    k = max(1, n // 100)
    order = np.argsort(np.where(seen, np.inf, pred))
    rank = np.argsort(np.argsort(y))
    best10 = np.argsort(y)[: n // 10]
    return {"recall1": len(set(order[:k]) & set(np.argsort(y)[:k])) / k,
            "best_of_10": float(rank[order[:10]].min() / n * 100),
            "tau10": float(kendalltau(y[best10], pred[best10]).statistic)}


def one_dataset(dataset: str, kinds: list[str], n: int, repeats: int) -> list[str]:
    from tradeoff.predictors.encodings import structured_features
    from tradeoff.predictors.models import make_predictor

    space, configs, acc, _ = architectures(dataset)
    X = structured_features(space, configs)
    y = -acc
    lines = []
    for kind in kinds:
        rows = []
        for r in range(repeats):
            train = np.random.default_rng(r).choice(len(y), n, replace=False)
            seen = np.zeros(len(y), bool)
            seen[train] = True
            pred = make_predictor(kind, r).fit(X[train], y[train]).predict(X)[0]
            rows.append(top_quality(y, pred, seen))
        m = {k: float(np.mean([q[k] for q in rows])) for k in rows[0]}
        lines.append(f"| {dataset} | {kind} | {m['recall1']:.3f} | {m['best_of_10']:.2f} | {m['tau10']:.3f} |")
        print(lines[-1], file=sys.stderr, flush=True)
    return lines


def across(datasets: list[str]) -> str:
    from tradeoff.workloads.nasbench_graph import nasbench_graph_frame

    acc = {}
    for d in datasets:   # the accuracies alone: no workload (space, features) is built
        frame = nasbench_graph_frame(d).drop_duplicates("arch")
        acc[d] = dict(zip(frame["arch"], frame["accuracy"].astype(float)))
        nasbench_graph_frame.cache_clear()   # one table held at a time
    common = sorted(set.intersection(*(set(a) for a in acc.values())))
    M = np.array([[acc[d][k] for k in common] for d in datasets])
    lines = [f"Kendall's tau over the row dataset's best 10% ({len(common)} architectures in every dataset)", "",
             "| best 10% of | " + " | ".join(datasets) + " |", "|---|" + "---|" * len(datasets)]
    for i, d in enumerate(datasets):
        top = np.argsort(-M[i])[: len(common) // 10]
        lines.append(f"| {d} | " + " | ".join(f"{kendalltau(M[i, top], M[j, top]).statistic:.2f}"
                                             for j in range(len(datasets))) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--predictors", default="rf,rf+warp,gp,gp+warp,ridge,ridge+warp")
    ap.add_argument("--n", type=int, default=100, help="architectures each predictor is fitted on")
    ap.add_argument("--repeats", type=int, default=6)
    ap.add_argument("--across", action="store_true", help="tau between datasets over each one's best 10%%")
    args = ap.parse_args(argv)
    datasets = [d for d in args.datasets.split(",") if d]
    unknown = sorted(set(datasets) - set(DATASETS))
    if unknown:
        ap.error(f"--datasets: {', '.join(unknown)} not among {', '.join(DATASETS)}")
    t0 = time.time()
    if args.across:
        print(across(datasets))
        return 0
    lines = ["| dataset | predictor | best 1% found in predicted best 1% | best of predicted top 10 (percentile) "
             "| tau within best 10% |", "|---|---|---|---|---|"]
    for d in datasets:
        lines += one_dataset(d, args.predictors.split(","), args.n, args.repeats)
    print("\n".join(lines))
    print(f"\nFitted on {args.n} random architectures, mean of {args.repeats} draws; "
          f"{time.time() - t0:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
