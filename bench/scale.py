"""Scale and faults: trials per minute through each executor, the driver's own cost per trial, MLflow's cost
per trial, and each fault of the fault table injected for real (trials lost, trials re-run).

    .venv/bin/python bench/scale.py                 # everything (several minutes on a busy 2-core machine)
    .venv/bin/python bench/scale.py --skip-ray --kills 3

Prints markdown tables; writes bench/results/scale.{json,md}. Timings are wall-clock medians of
``--repeats`` runs on whatever else the machine is doing: compare ratios taken in the same run.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DELAY = float(os.environ.get("SCALE_DELAY", "0.05"))
_HOARD: list = []


# -- evaluators (module level: picklable by reference, importable as `scale:NAME` from a recipe) -----
def zdt(config):
    x = [config[f"x{i}"] for i in range(4)]
    g = 1 + 9 * sum(x[1:]) / 3
    return {"f1": x[0], "f2": g * (1 - (x[0] / g) ** 0.5)}


def sleepy(config):
    time.sleep(DELAY)
    log = os.environ.get("SCALE_LOG")
    if log:
        with open(log, "a") as f:
            f.write(repr(sorted(config.items())) + "\n")
    return zdt(config)


def instant(config):
    return zdt(config)


def segfault(config):
    if config["x0"] > 0.8:
        ctypes.string_at(0)
    return sleepy(config)


def leak(config):
    _HOARD.append(bytearray(100 * 2**20))  # 100 MB kept per call
    _HOARD[-1][:: 4096] = b"x" * len(range(0, len(_HOARD[-1]), 4096))
    return sleepy(config)


def space():
    from tradeoff import Float, Space

    return Space({f"x{i}": Float(0.0, 1.0) for i in range(4)})


OBJ = {"f1": "minimize", "f2": "minimize"}


# -- throughput and overheads --------------------------------------------------------------------
def trials_per_minute(executor: str, workers: int, budget: int) -> float:
    import tradeoff as to
    from tradeoff.engine.executors import make_executor

    ex = make_executor(executor, workers=workers) if executor != "local" else executor
    t = time.perf_counter()
    to.search(space(), OBJ, sleepy, budget=budget, algorithm="random", seed=0, tracking=None, batch_size=2 * workers,
              executor=ex)
    return budget / (time.perf_counter() - t) * 60


def driver_overhead_ms(budget: int, tracking: bool, home: Path) -> tuple[float, float]:
    """Milliseconds per trial for the whole loop with an instant evaluator, and MLflow's share of it."""
    import tradeoff as to
    from tradeoff.tracking.mlflow import MlflowTracker

    tracker = MlflowTracker(uri=f"sqlite:///{home}/mlflow.db", experiment="scale") if tracking else None
    t = time.perf_counter()
    to.search(space(), OBJ, instant, budget=budget, algorithm="nsga2", seed=0, tracking=tracker, batch_size=20)
    total = (time.perf_counter() - t) / budget * 1000
    mlflow = tracker.trial_seconds / max(tracker.trials_logged, 1) * 1000 if tracker else 0.0
    return total, mlflow


# -- faults --------------------------------------------------------------------------------------
def write_recipe(d: Path, function: str, budget: int, executor: str = "local", extra: str = "") -> Path:
    sp = "{" + ", ".join(f"x{i}: {{kind: float, low: 0, high: 1}}" for i in range(4)) + "}"
    p = d / "r.yaml"
    p.write_text(f"name: scale\nworkload: {{name: function, function: 'scale:{function}'}}\nspace: {sp}\n"
                 f"objectives: {{f1: minimize, f2: minimize}}\n"
                 f"search: {{algorithm: nsga2, budget: {budget}, seed: 1, batch_size: 8, executor: {executor}{extra}}}\n"
                 f"tracking: true\n")
    return p


def env_for(d: Path) -> dict:
    src = HERE.parent / "src"
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(src), os.environ.get("PYTHONPATH", "")]),
            "TRADEOFF_HOME": str(d / ".tradeoff"), "MLFLOW_TRACKING_URI": f"sqlite:///{d}/mlflow.db",
            "SCALE_LOG": str(d / "calls.txt")}


def cli(*args, env, cwd, wait=True, **kw):
    cmd = [sys.executable, "-m", "tradeoff.cli", *args, "-q"]
    if not wait:
        return subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=600, **kw)


def lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def wait_lines(runs: Path, n: int, timeout: float = 300) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for d in runs.glob("*") if runs.exists() else []:
            if lines(d / "trials.jsonl") >= n:
                return d
        time.sleep(0.005)
    raise RuntimeError("no progress")


def audit(d: Path, run_dir: Path, budget: int) -> dict:
    """Trials lost (log or MLflow), trials logged twice (log or MLflow), evaluations repeated."""
    from mlflow.tracking import MlflowClient

    from tradeoff.engine.trial_log import read_trials

    keys = []
    for line in (run_dir / "trials.jsonl").read_bytes().splitlines():
        try:
            keys.append(json.loads(line.decode())["key"])
        except (ValueError, KeyError):  # the planted garbage: skipped by the reader too
            continue
    trials = read_trials(run_dir, warn=False)
    client = MlflowClient(f"sqlite:///{d}/mlflow.db")
    exp = client.get_run(run_dir.name).info.experiment_id
    if client.get_run(run_dir.name).data.tags.get("tradeoff.trials") == "steps":  # trials: one point per step
        by_number = {t.number: t.key for t in trials}
        steps = [m.step for m in client.get_metric_history(run_dir.name, "trial.duration_s")]
        kid_keys = [by_number.get(s, f"step {s}, not in the log") for s in steps]
    else:
        kids = client.search_runs([exp], f"tags.mlflow.parentRunId = '{run_dir.name}'", max_results=5000)
        kid_keys = [c.data.tags.get("key") for c in kids if c.info.status in ("FINISHED", "FAILED")]
    calls = (d / "calls.txt").read_text().splitlines() if (d / "calls.txt").exists() else []
    return {"lost": max(0, budget - len(set(keys))) + len(set(keys) - set(kid_keys)),
            "rerun": (len(keys) - len(set(keys))) + (len(kid_keys) - len(set(kid_keys))) + len(set(kid_keys) - set(keys)),
            "repeated_evaluations": len(calls) - len(set(calls)),
            "failed": sum(1 for t in trials if not t.ok), "parent": client.get_run(run_dir.name).info.status}


def fault_kill(d: Path, kills: int, budget: int = 60) -> dict:
    env, runs, rng = env_for(d), d / ".tradeoff" / "runs", random.Random(0)
    r = write_recipe(d, "sleepy", budget)
    proc = cli("run", str(r), env=env, cwd=d, wait=False)
    run_dir = wait_lines(runs, 1)
    for _ in range(kills):
        done = lines(run_dir / "trials.jsonl")
        time.sleep(rng.uniform(0, 0.3))
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc = cli("run", "--resume", run_dir.name, env=env, cwd=d, wait=False)
        wait_lines(runs, min(budget, done + 1))
    proc.wait()
    return audit(d, run_dir, budget)


def fault_segfault(d: Path, budget: int = 24) -> dict:
    env = env_for(d)
    out = cli("run", str(write_recipe(d, "segfault", budget, "processes", ", workers: 2")), env=env, cwd=d)
    run_dir = next((d / ".tradeoff" / "runs").iterdir())
    cli("run", "--resume", run_dir.name, env=env, cwd=d)  # a finished run: must evaluate nothing again
    return {**audit(d, run_dir, budget), "rc": out.returncode}


def fault_leak(d: Path, budget: int = 16) -> dict:
    env = env_for(d)
    out = cli("run", str(write_recipe(d, "leak", budget, "processes", ", workers: 1, memory_mb: 400")), env=env, cwd=d)
    run_dir = next((d / ".tradeoff" / "runs").iterdir())
    return {**audit(d, run_dir, budget), "rc": out.returncode}


def fault_concurrent(d: Path, budget: int = 40) -> dict:
    env, runs = env_for(d), d / ".tradeoff" / "runs"
    firsts = [cli("run", str(write_recipe(d, "sleepy", budget)), env=env, cwd=d, wait=False) for _ in range(2)]
    run_dir = wait_lines(runs, 10)
    holder = json.loads((run_dir / "lock").read_text())["pid"]
    next(p for p in firsts if p.pid == holder).kill()
    for p in firsts:
        p.wait()
    two = [cli("run", "--resume", run_dir.name, env=env, cwd=d, wait=False) for _ in range(2)]
    codes = sorted(p.wait() for p in two)
    return {**audit(d, run_dir, budget), "rcs": codes}


def fault_torn(d: Path, budget: int = 24) -> dict:
    env, runs = env_for(d), d / ".tradeoff" / "runs"
    r = write_recipe(d, "sleepy", budget)
    proc = cli("run", str(r), env=env, cwd=d, wait=False)
    run_dir = wait_lines(runs, 8)
    proc.kill()
    proc.wait()
    with open(run_dir / "trials.jsonl", "ab") as f:
        f.write(b'{"number": 99, "key": "\xff\xfe garbage"}\n{"batch": 0, "con')
    (run_dir / "state.pkl").write_bytes(b"garbage")
    cli("run", "--resume", run_dir.name, env=env, cwd=d)
    return audit(d, run_dir, budget)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--skip-ray", action="store_true")
    ap.add_argument("--skip-faults", action="store_true")
    args = ap.parse_args()
    sys.path.insert(0, str(HERE))
    os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
    import scale  # noqa: F401  (workers unpickle `scale.sleepy`, not `__main__.sleepy`)

    out: dict = {"delay_s": DELAY, "throughput": {}, "faults": {}}
    tmp = Path(tempfile.mkdtemp(prefix="scale-"))
    os.environ["TRADEOFF_HOME"] = str(tmp / ".tradeoff")
    try:
        combos = [("local", 1), ("processes", 1), ("processes", 2)] + ([] if args.skip_ray else [("ray", 1), ("ray", 2)])
        if not args.skip_ray:  # Ray starts once per process (seconds): not counted against its throughput
            trials_per_minute("ray", 2, 4)
        for ex, w in combos:
            runs = [trials_per_minute(ex, w, args.budget) for _ in range(args.repeats)]
            out["throughput"][f"{ex}x{w}"] = statistics.median(runs)
            print(f"{ex:9s} workers={w}: {out['throughput'][f'{ex}x{w}']:.0f} trials/min "
                  f"(ideal {60 / DELAY * w:.0f})", flush=True)
        over = [driver_overhead_ms(1000, False, tmp) for _ in range(args.repeats)]
        tracked = [driver_overhead_ms(1000, True, tmp) for _ in range(args.repeats)]
        out["driver_ms"] = statistics.median(o[0] for o in over)
        out["driver_tracked_ms"] = statistics.median(o[0] for o in tracked)
        out["mlflow_ms"] = statistics.median(o[1] for o in tracked)
        print(f"driver overhead: {out['driver_ms']:.2f} ms/trial untracked, {out['driver_tracked_ms']:.1f} ms/trial "
              f"with MLflow (logging a trial: {out['mlflow_ms']:.1f} ms)", flush=True)
        scenarios = {"kill -9 at random moments": lambda d: fault_kill(d, args.kills),
                     "segfaulting evaluator (processes)": fault_segfault,
                     "evaluator leaking 100 MB per call (processes, memory_mb 400)": fault_leak,
                     "two resumes at once (and two first runs on a new store)": fault_concurrent,
                     "torn last line + garbled line + damaged state.pkl": fault_torn}
        for name, fn in ({} if args.skip_faults else scenarios).items():
            d = Path(tempfile.mkdtemp(dir=tmp))
            out["faults"][name] = fn(d)
            print(f"{name}: {out['faults'][name]}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    md = ["| executor | trials/min |", "|---|---|"] + [f"| {k} | {v:.0f} |" for k, v in out["throughput"].items()]
    md += ["", f"driver overhead per trial: {out['driver_ms']:.2f} ms (untracked), {out['driver_tracked_ms']:.1f} ms "
               f"(MLflow SQLite), of which logging the trial: {out['mlflow_ms']:.1f} ms", "",
           "| fault | trials lost | trials re-run | evaluations repeated | failed trials | parent |", "|---|---|---|---|---|---|"]
    md += [f"| {k} | {v['lost']} | {v['rerun']} | {v['repeated_evaluations']} | {v['failed']} | {v['parent']} |"
           for k, v in out["faults"].items()]
    md += ["", "Evaluations repeated: calls of a config already called; in the concurrent scenario both first runs "
               "(same recipe, same seed) call the same configs, so it counts the other run's 40, not a re-run."]
    print("\n".join(md))
    res = HERE / "results"
    res.mkdir(exist_ok=True)
    (res / "scale.json").write_text(json.dumps(out, indent=1))
    (res / "scale.md").write_text("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
