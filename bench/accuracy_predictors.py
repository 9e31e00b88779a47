"""Accuracy and latency predictors on the architecture spaces: held-out quality by cross-validation.

Samples configurations of a built-in workload, evaluates each for real (accuracy on the held-out
split of the deployed model, latency measured on ONNX Runtime CPU with one thread, the deployed
ONNX file's size), then scores
every registered predictor by 5-fold cross-validation on the space's own encoding
(``Space.encode``) and on the structured one (``predictors.encodings.structured_features``; on
the supernet, with each subnet's weights, bytes and multiply-adds: ``supernet.SubnetCosts``):
Kendall tau, MAPE and top-10% recall (the best tenth found among the predicted best tenth).
This is what ``predictive`` and ``auto`` see when they pick a predictor.

    .venv/bin/python bench/accuracy_predictors.py                          # OFA supernet, 150 subnets
    .venv/bin/python bench/accuracy_predictors.py --workload joint --n 80  # arch x bits x keep (APQ setting)

Prints a markdown table; writes bench/results/accuracy_predictors_<workload>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

WORKLOADS = {
    "ofa": {"name": "supernet", "options": {}},
    "joint": {"name": "supernet", "options": {"bits": [4, 8, 32], "keep": [0.5, 0.75, 1.0], "finetune_steps": 10}},
}
METRICS = {"accuracy": "maximize", "latency_ms": "minimize", "size_mb": "minimize"}


def sample(wl, n: int, seed: int) -> list[dict]:
    """``n`` distinct configurations, the workload's baselines first."""
    rng = np.random.default_rng(seed)
    out, keys = [], set()
    for c in [*wl.baselines.values(), *(wl.space.sample(rng) for _ in range(50 * n))]:
        k = wl.space.key(c)
        if k not in keys:
            keys.add(k)
            out.append(c)
        if len(out) >= n:
            break
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", default="ofa", choices=sorted(WORKLOADS))
    ap.add_argument("--n", type=int, default=150, help="configurations evaluated for real")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--folds", type=int, default=5)
    args = ap.parse_args()

    import torch

    from tradeoff.compose import compose
    from tradeoff.predictors.encodings import structured_features
    from tradeoff.predictors.models import make_predictor, predictor_names
    from tradeoff.predictors.quality import cross_validated, selection_score
    from tradeoff.workloads import make_workload

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    spec = WORKLOADS[args.workload]
    wl = make_workload(spec["name"], **spec["options"])
    comp = compose(wl, {"accuracy": {}, "latency_ms": {"target": "cpu"}, "size_mb": {}},
                   {"cpu": {"runtime": "ort", "threads": 1}}, cache=False)
    configs = sample(wl, args.n, args.seed)
    rows, failed = [], 0
    t_eval = time.perf_counter()
    for i, c in enumerate(configs):
        try:
            m = comp.evaluate(c)
        except Exception as e:  # noqa: BLE001 - a failed candidate is left out and counted
            failed += 1
            print(f"{i + 1}/{len(configs)} failed: {e}", flush=True)
            continue
        rows.append((c, m))
        if (i + 1) % 10 == 0:
            el = time.perf_counter() - t_eval
            print(f"{i + 1}/{len(configs)} evaluated, {el:.0f}s, ETA {el / (i + 1) * (len(configs) - i - 1):.0f}s",
                  flush=True)
    eval_s = time.perf_counter() - t_eval
    cs = [c for c, _ in rows]
    enc = {"encode": wl.space.encode_many(cs), "structured": structured_features(wl.space, cs)}
    results: dict = {}
    for metric, sense in METRICS.items():
        y = np.array([m[metric] for _, m in rows], float)
        # the quality function ranks "best" as smallest: maximised metrics are negated (|error| / |y| is unchanged)
        y_fit = -y if sense == "maximize" else y
        for ename, X in enc.items():
            if ename == "structured" and X.shape[1] == enc["encode"].shape[1]:
                continue       # no structure beyond the plain encoding
            for name in predictor_names():
                t1 = time.perf_counter()
                q = cross_validated(make_predictor(name, args.seed), X, y_fit, folds=args.folds, seed=args.seed)
                results[f"{metric}|{ename}|{name}"] = {**q, "cv_s": time.perf_counter() - t1,
                                                     "score": selection_score(q)}
    hdr = (f"{wl.name} ({args.workload}): {len(rows)} configurations evaluated ({failed} failed) in {eval_s:.0f}s; "
           f"{wl.space.n_genes if hasattr(wl.space, 'n_genes') else len(wl.space.names)} genes, "
           f"{args.folds}-fold cross-validation")
    lines = [hdr, "", "| metric | features | predictor | Kendall τ | MAPE | top-10% recall | picked by auto |",
             "|---|---|---|---|---|---|---|"]
    for metric in METRICS:
        for ename in enc:
            keys = [k for k in results if k.startswith(f"{metric}|{ename}|")]
            if not keys:
                continue
            best = max(keys, key=lambda k: results[k]["score"])
            for k in keys:
                q = results[k]
                lines.append(f"| {metric} | {ename} | {k.split('|')[2]} | {q['kendall_tau']:.3f} | {q['mape']:.1%} | "
                             f"{q['top10_recall']:.0%} | {'yes' if k == best else ''} |")
    y_acc = np.array([m["accuracy"] for _, m in rows])
    y_lat = np.array([m["latency_ms"] for _, m in rows])
    lines += ["", f"accuracy {y_acc.min():.3f}–{y_acc.max():.3f} (median {np.median(y_acc):.3f}); "
              f"latency {y_lat.min():.3f}–{y_lat.max():.3f} ms; total {time.perf_counter() - t0:.0f}s"]
    text = "\n".join(lines)
    print("\n" + text)
    out = Path(__file__).parent / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"accuracy_predictors_{args.workload}.md").write_text(text + "\n")
    (out / f"accuracy_predictors_{args.workload}.json").write_text(json.dumps(
        {"args": vars(args), "results": results, "metrics": [m for _, m in rows], "eval_s": eval_s,
         "failed": failed}, indent=1, default=str))


if __name__ == "__main__":
    main()
