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
    out.update(front_needed(F, r, hv_true))
    return out


def front_needed(F: np.ndarray, r: np.ndarray, hv_true: float, target: float = 0.01) -> dict:
    """How much of the true front itself a search must find: the regret of every other architecture
    (each front member's runner-ups), and the fewest front members that, with all the rest, reach ``target``
    (every subset tried for fronts of up to 16 members, else added greedily by hypervolume)."""
    from itertools import combinations

    from tradeoff.core.pareto import hypervolume, nondominated_mask

    on = nondominated_mask(F)
    front, rest = F[on], F[~on]
    rest = rest[nondominated_mask(rest)]

    def regret(extra) -> float:
        pts = np.vstack([rest, front[list(extra)]]) if len(extra) else rest
        return float(1 - hypervolume(pts[nondominated_mask(pts)], r) / hv_true)

    without = regret(())
    # each member's lead: its accuracy (objective 0, minimised) over the best other architecture as cheap or cheaper
    others = F[~on]
    cheaper = [others[others[:, 1] <= f[1], 0] for f in front]
    lead = [float((c.min() if len(c) else r[0]) - f[0]) for c, f in zip(cheaper, front)]
    need = 0
    if without > target:
        need = len(front)
        if len(front) <= 16:
            need = next((k for k in range(1, len(front) + 1)
                         if any(regret(c) <= target for c in combinations(range(len(front)), k))), len(front))
        else:
            chosen: list[int] = []
            while regret(chosen) > target and len(chosen) < len(front):
                chosen.append(min((i for i in range(len(front)) if i not in chosen), key=lambda i: regret([*chosen, i])))
            need = len(chosen)
    return {"front_size": int(len(front)), "without_front": without, "front_needed": int(need),
            "median_lead": float(np.median(lead))}


def table(rows: list[dict]) -> str:
    lines = ["| problem | best val. acc. | within 0.005 of it | " + " | ".join(f"regret without best {k}" for k in KS)
             + " | val. acc. of the best left (k=3) | its test acc. / best test acc. | front members"
             " | regret without any of them | of them needed for 0.01 | median lead |",
             "|---|---|---|" + "---|" * len(KS) + "---|---|---|---|---|---|"]
    for q in rows:
        lines.append(f"| {q['problem']} | {q['best']:.4f} | {q['near']} | "
                     + " | ".join(f"{q['regret'][k]:.3f}" for k in KS)
                     + f" | {q['best'] - q['gap'][3]:.4f} | {q['best_test']:.4f} / {q['test_best']:.4f} | "
                     f"{q['front_size']} | {q['without_front']:.3f} | {q['front_needed']} | {q['median_lead']:.4f} |")
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
    needed = [q["front_needed"] / q["front_size"] for q in rows]
    md = (table(rows) + f"\n\nOn {n_below} of {len(rows)} tables a search that never finds one of the 3 architectures "
          f"with the best validation accuracy cannot reach regret 0.01. A search that found every architecture but "
          f"the true front's members would be left with regret {min(q['without_front'] for q in rows):.3f}-"
          f"{max(q['without_front'] for q in rows):.3f}; regret 0.01 needs a median {np.median(needed):.0%} of the "
          f"front's members found exactly (lead: a member's accuracy above the best other architecture as cheap or "
          f"cheaper). {time.time() - t0:.0f} s.")
    print(md)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "regret_target.md").write_text(md + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
