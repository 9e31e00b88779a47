"""What a resume on another machine re-runs, and what keeping the store's copy of the log current costs.

A search resumed from the store alone (``tradeoff run --resume ID --uri URI`` where the run directory is
not on disk) rebuilds itself from the ``checkpoint/trials.jsonl`` uploaded to MLflow, so every trial
logged after the last upload is evaluated again. For each trial duration and each store (a local SQLite
store and a real ``mlflow server``) this script runs a search, ``kill -9``s it at random moments, and
counts the trials in the local log that the store's copy lacks: what such a resume would re-run. It also
prints the uploads' share of an uninterrupted search's wall-clock.

    .venv/bin/python bench/checkpoint_upload.py            # about 4 minutes
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
SPACE = "{" + ", ".join(f"x{i}: {{kind: float, low: 0, high: 1}}" for i in range(4)) + "}"


def sleepy(config):
    time.sleep(float(os.environ.get("UPLOAD_BENCH_DELAY", "0")))
    x = [config[f"x{i}"] for i in range(4)]
    g = 1 + 9 * sum(x[1:]) / 3
    return {"f1": x[0], "f2": g * (1 - (x[0] / g) ** 0.5)}


def start_server(root: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{root / 'srv.db'}",
         "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"], cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("mlflow server did not start")


def env_for(d: Path, uri: str, delay: float) -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent / "src"),
                                                         os.environ.get("PYTHONPATH", "")]),
            "TRADEOFF_HOME": str(d / ".tradeoff"), "MLFLOW_TRACKING_URI": uri, "UPLOAD_BENCH_DELAY": str(delay)}


def lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def first_run_with_a_trial(runs: Path, timeout: float = 300) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in runs.glob("*") if runs.exists() else []:
            if lines(p / "trials.jsonl"):
                return p
        time.sleep(0.005)
    raise RuntimeError("the search made no progress")


def kill_at_random(d: Path, uri: str, delay: float, budget: int, rng: random.Random) -> int:
    """Trials in the local log that the store's copy lacks, right after a ``kill -9`` at a random moment."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    d.mkdir(parents=True)
    r = d / "r.yaml"
    r.write_text(f"name: upload\nworkload: {{name: function, function: 'checkpoint_upload:sleepy'}}\nspace: {SPACE}\n"
                 f"objectives: {{f1: minimize, f2: minimize}}\n"
                 f"search: {{algorithm: nsga2, budget: {budget}, seed: 1, batch_size: 8}}\ntracking: true\n")
    proc = subprocess.Popen([sys.executable, "-m", "tradeoff.cli", "run", str(r), "-q"], env=env_for(d, uri, delay),
                            cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run_dir = first_run_with_a_trial(d / ".tradeoff" / "runs")
    at = rng.randint(2, budget - 2)  # somewhere mid-search: after trial `at`, within the next trial
    while lines(run_dir / "trials.jsonl") < at and proc.poll() is None:
        time.sleep(0.001)
    time.sleep(rng.uniform(0, delay))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    local = lines(run_dir / "trials.jsonl")
    try:
        stored = lines(Path(MlflowClient(uri).download_artifacts(run_dir.name, "checkpoint/trials.jsonl",
                                                                 str(d / "dl"))))
    except MlflowException:  # nothing uploaded since the start, when the log was still empty
        stored = 0
    return local - stored


def upload_share(uri: str, delay: float, budget: int) -> dict:
    """One uninterrupted search: its uploads and their share of the wall-clock."""
    import tradeoff
    from tradeoff.tracking.mlflow import MlflowTracker

    os.environ["UPLOAD_BENCH_DELAY"] = str(delay)
    tracker = MlflowTracker(uri=uri, experiment="upload-share")
    seconds: list[float] = []
    log_artifact = tracker.client.log_artifact

    def timed(run_id, local_path, artifact_path=None):  # the checkpoint's files, as the tracker uploads them
        t = time.perf_counter()
        log_artifact(run_id, local_path, artifact_path)
        if artifact_path == "checkpoint" and local_path.endswith("trials.jsonl"):
            seconds.append(time.perf_counter() - t)

    tracker.client.log_artifact = timed
    t0 = time.perf_counter()
    tradeoff.search(tradeoff.Space({f"x{i}": tradeoff.Float(0.0, 1.0) for i in range(4)}),
                    {"f1": "minimize", "f2": "minimize"}, sleepy, budget=budget, batch_size=8, algorithm="nsga2",
                    seed=1, tracking=tracker, progress=False)
    wall = time.perf_counter() - t0
    return {"uploads": len(seconds), "upload_ms": 1000 * statistics.median(seconds) if seconds else 0.0,
            "share": sum(seconds) / wall, "wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--delays", default="0,0.01,0.1,0.5", help="seconds per trial, comma-separated")
    ap.add_argument("--kills", type=int, default=5, help="kill -9 runs per delay and store")
    ap.add_argument("--budget", type=int, default=64)
    args = ap.parse_args()
    sys.path.insert(0, str(HERE))
    import checkpoint_upload  # noqa: F401  (the CLI imports `checkpoint_upload:sleepy`)

    tmp = Path(tempfile.mkdtemp(prefix="upload-"))
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    os.environ["TRADEOFF_HOME"] = str(tmp / ".tradeoff")
    server, url = start_server(tmp)
    rng = random.Random(0)
    rows = []
    try:
        for store, uri in (("sqlite", f"sqlite:///{tmp}/local.db"), ("mlflow server", url)):
            for delay in (float(x) for x in args.delays.split(",")):
                budget = args.budget if delay < 0.5 else args.budget // 4
                share = upload_share(uri, delay, budget)
                lost = [kill_at_random(tmp / f"k{len(rows)}-{i}", uri, delay, budget, rng) for i in range(args.kills)]
                rows.append((store, delay, budget, share, lost))
                print(f"{store:13s} {delay:5.2f} s/trial: {share['uploads']:3d} uploads in {budget} trials, "
                      f"{share['upload_ms']:.1f} ms each (median), {100 * share['share']:.1f}% of {share['wall_s']:.1f} s; "
                      f"after kill -9 the store lacked {lost} trials", flush=True)
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
    print("\n| store | s per trial | trials | uploads | ms per upload, median | share of wall-clock "
          "| trials a resume elsewhere re-runs, median (max) of kills |")
    print("|---|---|---|---|---|---|---|")
    for store, delay, budget, share, lost in rows:
        print(f"| {store} | {delay:g} | {budget} | {share['uploads']} | {share['upload_ms']:.1f} "
              f"| {100 * share['share']:.1f}% | {statistics.median(lost):g} ({max(lost)}) |")
    print(f"\n{os.uname().machine}, {os.cpu_count()} cores; {args.kills} kills per row at random moments.")


if __name__ == "__main__":
    main()
