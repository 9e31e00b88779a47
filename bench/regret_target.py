"""What hypervolume regret 0.01 asks of a search on each NAS-Bench-Graph table.

For each table (validation accuracy against latency, ``nbg-<dataset>``, or against parameters,
``nbgp-<dataset>``) and each k: the regret left to a search that evaluated every architecture but
the k with the best validation accuracy, the lowest regret any search can reach without finding one
of them. Beside it, how many architectures lie within 0.005 of the best validation accuracy, and the
test accuracy of the validation-best one against the table's best test accuracy.
Reference point and true front as in ``bench/search_efficiency.py``.

    .venv/bin/python bench/regret_target.py                    # all 18 tables, under a minute
    .venv/bin/python bench/regret_target.py --problems nbg-cora,nbgp-cora

Prints a markdown table; writes bench/results/regret_target.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import search_efficiency as se  # noqa: E402  (the problems, their reference points and true fronts)

KS = (1, 2, 3, 5, 10)


def regret_without_top(problem: str, ks=KS) -> dict:
    """Per k, the regret of the true front of the table without its k best architectures by validation accuracy."""
    from tradeoff.core.pareto import hypervolume, nondominated_mask
    from tradeoff.workloads.nasbench_graph import nasbench_graph_frame

    p = se.PROBLEMS[problem]
    wl = se.workload(problem)
    objs = list(p["objectives"])
    signs = np.array([1.0 if p["objectives"][o] == "minimize" else -1.0 for o in objs])
    ref = se.reference_for(problem, wl)
    r = signs * np.array([ref[o] for o in objs])
    hv_true = se.true_hv(problem, wl, ref)
    frame = nasbench_graph_frame(p["workload"][1]["dataset"]).drop_duplicates("arch")
    frame = frame.sort_values("accuracy", ascending=False, kind="stable")
    F = frame[objs].to_numpy(float) * signs
    acc = frame["accuracy"].to_numpy(float)
    out = {"problem": problem, "architectures": len(frame), "best": float(acc[0]),
           "best_test": float(frame["test_accuracy"].iloc[0]), "test_best": float(frame["test_accuracy"].max()),
           "near": int((acc >= acc[0] - 0.005).sum()), "regret": {}, "gap": {}}
    for k in ks:
        rest = F[k:]
        out["regret"][k] = float(1 - hypervolume(rest[nondominated_mask(rest)], r) / hv_true)
        out["gap"][k] = float(acc[0] - acc[k])   # how far the best left is below the table's best
    return out


def table(rows: list[dict]) -> str:
    lines = ["| problem | best val. acc. | within 0.005 of it | " + " | ".join(f"regret without best {k}" for k in KS)
             + " | val. acc. of the best left (k=3) | its test acc. / best test acc. |",
             "|---|---|---|" + "---|" * len(KS) + "---|---|"]
    for q in rows:
        lines.append(f"| {q['problem']} | {q['best']:.4f} | {q['near']} | "
                     + " | ".join(f"{q['regret'][k]:.3f}" for k in KS)
                     + f" | {q['best'] - q['gap'][3]:.4f} | {q['best_test']:.4f} / {q['test_best']:.4f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", default="nbg,nbgp", help="nbg, nbgp or nbg-<dataset> / nbgp-<dataset>, comma-separated")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args(argv)
    problems = [q for p in args.problems.split(",") for q in se.GROUPS.get(p, [p])]
    unknown = [p for p in problems if not p.startswith("nbg") or p not in se.PROBLEMS]
    if unknown:
        ap.error(f"--problems: {', '.join(unknown)}: not a NAS-Bench-Graph table ({', '.join(se.GROUPS['nbg'] + se.GROUPS['nbgp'])})")
    t0 = time.time()
    rows = []
    for p in problems:
        rows.append(regret_without_top(p))
        print(f"{p}: regret without the best 1 / 3 / 10: "
              f"{rows[-1]['regret'][1]:.3f} / {rows[-1]['regret'][3]:.3f} / {rows[-1]['regret'][10]:.3f}",
              file=sys.stderr, flush=True)
    n_below = sum(q["regret"][3] > 0.01 for q in rows)
    md = (table(rows) + f"\n\nOn {n_below} of {len(rows)} tables a search that never finds one of the 3 architectures "
          f"with the best validation accuracy cannot reach regret 0.01. {time.time() - t0:.0f} s.")
    print(md)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "regret_target.md").write_text(md + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
