"""Driver + tracking overhead per trial: random search on a free evaluator, untracked vs MLflow's local store.

    .venv/bin/python bench/overhead.py                  # 1,000 trials, 3 repeats of each
    .venv/bin/python bench/overhead.py --trials 200 --repeats 1

The evaluator costs nothing, so the wall time per trial is what the loop and tracking add.
"Start" is from the call to the first trial (a new SQLite store, the parent run, its params and
artifacts); "finish" covers the final front, plots, the front's child runs and the last
checkpoint upload. Each tracked run gets a new store; the one-off costs of a process (importing
MLflow's store) and of a machine (the first store ever, kept as a template) are paid once before
timing and printed on their own. Prints medians and the ratio taken in the same run; writes
bench/results/overhead.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import tradeoff as to


def run_once(trials: int, tracked: bool, workdir: Path) -> dict:
    marks: dict[str, float] = {}

    def evaluate(c):
        marks.setdefault("first", time.perf_counter())
        marks["last"] = time.perf_counter()
        return {"f1": c["x"], "f2": (1 - c["x"]) ** 2 + c["y"]}

    space = to.Space({"x": to.Float(0.0, 1.0), "y": to.Float(0.0, 1.0)})
    tracking = {"uri": f"sqlite:///{workdir}/mlflow.db", "experiment": "overhead"} if tracked else None
    t0 = time.perf_counter()
    front = to.search(space, {"f1": "minimize", "f2": "minimize"}, evaluate, budget=trials, algorithm="random",
                      tracking=tracking, batch_size=10)
    end = time.perf_counter()
    assert len(front.trials) == trials
    return {"total_s": end - t0, "start_s": marks["first"] - t0, "loop_ms_per_trial": 1000 * (marks["last"] - marks["first"]) / max(trials - 1, 1),
            "finish_s": end - marks["last"], "ms_per_trial": 1000 * (end - t0) / trials}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "overhead.json"))
    args = ap.parse_args(argv)
    import os

    home = tempfile.TemporaryDirectory()
    os.environ["TRADEOFF_HOME"] = str(Path(home.name) / "home")
    t0 = time.perf_counter()
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401

    import tradeoff.tracking.plots  # noqa: F401 - imports matplotlib
    from tradeoff.tracking.store import open_client  # noqa: F401 - imports MLflow
    imports_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as d:  # the machine's first store: MLflow migrates it, then it is the template
        t0 = time.perf_counter()
        open_client(f"sqlite:///{d}/first.db")
        first_store_s = time.perf_counter() - t0
    results: dict[str, list[dict]] = {"untracked": [], "tracked": []}
    for _ in range(args.repeats):
        for mode in ("untracked", "tracked"):
            with tempfile.TemporaryDirectory() as d:
                results[mode].append(run_once(args.trials, mode == "tracked", Path(d)))
    med = {m: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for m, rs in results.items()}
    print(f"{args.trials} trials, random search, free evaluator, median of {args.repeats} (load avg {os.getloadavg()[0]:.2f}, "
          f"{os.cpu_count()} cores)")
    print("| mode | ms/trial (all) | loop ms/trial | start s | finish s |")
    print("|---|---|---|---|---|")
    for m, v in med.items():
        print(f"| {m} | {v['ms_per_trial']:.2f} | {v['loop_ms_per_trial']:.2f} | {v['start_s']:.2f} | {v['finish_s']:.2f} |")
    over = med["tracked"]["ms_per_trial"] - med["untracked"]["ms_per_trial"]
    print(f"once per process: importing MLflow's store and matplotlib {imports_s:.2f} s; once per machine: the first store "
          f"{first_store_s:.2f} s (later new stores copy it)")
    print(f"tracking overhead: {over:.2f} ms/trial (tracked/untracked = "
          f"{med['tracked']['ms_per_trial'] / med['untracked']['ms_per_trial']:.1f}x)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"trials": args.trials, "median": med, "runs": results,
                                          "overhead_ms_per_trial": over,
                                          "imports_s": imports_s, "first_store_s": first_store_s}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
