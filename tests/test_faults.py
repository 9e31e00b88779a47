"""Faults injected for real: kills at random moments, segfaults, leaks, hangs, concurrent resumes, a store
that goes away, damaged files and bad data. Each asserts nothing is lost, re-run or duplicated."""

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

import tradeoff as to
from conftest import subprocess_env
from helpers import faults
from tradeoff.core.run_lock import RunLock, RunLocked
from tradeoff.core.trial import Trial
from tradeoff.engine.study import load_trials, run_dir_for
from tradeoff.engine.trial_log import TrialLog, next_number, read_trials
from tradeoff.recipe import RecipeError, load_recipe
from tradeoff.spaces.params import Float
from tradeoff.spaces.space import Space

SPACE = Space({f"x{i}": Float(0.0, 1.0) for i in range(4)})
OBJ = {"f1": "minimize", "f2": "minimize"}
EXE = [sys.executable, "-m", "tradeoff.cli"]


def recipe(tmp_path, budget=40, executor="local", function="helpers.faults:logged", extra="", uri=None,
           trials="steps") -> Path:
    p = tmp_path / "r.yaml"
    space = "{" + ", ".join(f"x{i}: {{kind: float, low: 0, high: 1}}" for i in range(4)) + "}"
    tracking = f"{{uri: '{uri}', trials: {trials}}}" if uri else f"{{trials: {trials}}}"
    p.write_text(f"""name: faults
workload: {{name: function, function: "{function}"}}
space: {space}
objectives: {{f1: minimize, f2: minimize}}
search: {{algorithm: nsga2, budget: {budget}, seed: 3, batch_size: 8, executor: {executor}{extra}}}
tracking: {tracking}
""")
    return p


def children(client, run_id):
    exp = client.get_run(run_id).info.experiment_id
    return client.search_runs([exp], f"tags.mlflow.parentRunId = '{run_id}'", max_results=5000)


def assert_consistent(run_dir: Path, uri: str, budget: int) -> list[Trial]:
    """The log holds each trial once, numbered 0..n-1; MLflow holds each trial once: as one point per metric at
    step = its number on the parent (``steps``, children for the front's members) or one finished child each."""
    trials = load_trials(run_dir)
    raw = [json.loads(x) for x in (run_dir / "trials.jsonl").read_text().splitlines() if x.strip()]
    assert len(trials) == budget
    assert len({t["key"] for t in raw}) == len(raw) == budget, "a trial was logged twice"
    assert sorted(t.number for t in trials) == list(range(budget))
    client = MlflowClient(uri)
    kids = children(client, run_dir.name)
    if client.get_run(run_dir.name).data.tags["tradeoff.trials"] == "steps":
        points = client.get_metric_history(run_dir.name, "trial.duration_s")
        assert sorted(m.step for m in points) == list(range(budget)), "MLflow differs from the log"
        by_number = {t.number: t for t in trials}
        assert all(m.value == pytest.approx(by_number[m.step].duration_s) for m in points)
        front = to.Front([to.Objective("f1"), to.Objective("f2")], trials)
        assert sorted(c.data.tags["key"] for c in kids) == sorted(t.key for t in front.members)
        assert all(c.info.status == "FINISHED" and c.data.tags["front"] == "true" for c in kids)
        assert client.get_run(run_dir.name).info.status == "FINISHED"
        return trials
    keys = [c.data.tags["key"] for c in kids]
    assert sorted(keys) == sorted(t.key for t in trials), "MLflow differs from the log"
    assert all(c.info.status in ("FINISHED", "FAILED") for c in kids)
    by_key = {t.key: t for t in trials}
    assert all(c.data.tags["trial"] == str(by_key[c.data.tags["key"]].number) for c in kids)
    assert client.get_run(run_dir.name).info.status == "FINISHED"
    return trials


# -- the trial log ---------------------------------------------------------------------------------

def _trial(n: int) -> Trial:
    return Trial(number=n, key=f"k{n}", config={"x": n}, metrics={"f": float(n)})


def test_torn_and_garbled_lines_are_repaired_not_glued(tmp_path):
    log = TrialLog(tmp_path)
    for n in range(3):
        log.append(_trial(n))
    path = tmp_path / "trials.jsonl"
    with open(path, "ab") as f:  # a line that is not UTF-8, then a kill in the middle of a line
        f.write(b'{"number": 9, "key": "\xff\xfe"}\n' + _trial(3).to_json().encode()[:25])
    with pytest.warns(UserWarning, match="jsonl:4: unreadable"):
        trials = read_trials(tmp_path)
    assert [t.number for t in trials] == [0, 1, 2]
    assert next_number(trials) == 3
    with pytest.warns(UserWarning, match="torn last line"):
        TrialLog(tmp_path).append(_trial(3))
    with warnings.catch_warnings(record=True):
        assert [t.number for t in read_trials(tmp_path)] == [0, 1, 2, 3]
    assert (tmp_path / "trials.jsonl.torn").read_bytes().strip() == _trial(3).to_json().encode()[:25]   # moved aside whole
    # numbers continue from the highest logged, not from a count (a skipped line must not reuse one)
    assert next_number([_trial(0), _trial(5)]) == 6


def interrupted_at(n: int):
    """faults.zdt, but its n-th call is a Ctrl-C."""
    calls = []

    def evaluate(c):
        calls.append(1)
        if len(calls) == n:
            raise KeyboardInterrupt
        return faults.zdt(c)

    return evaluate


def test_damaged_checkpoints_fall_back(tmp_path):
    """state.pkl garbage, then its copy empty: rebuilt from the log; study.json truncated: its copy is used."""
    ref = to.search(SPACE, OBJ, faults.zdt, budget=40, algorithm="nsga2", seed=1, tracking=None, batch_size=8)
    with pytest.raises(KeyboardInterrupt) as info:
        to.search(SPACE, OBJ, interrupted_at(19), budget=40, algorithm="nsga2", seed=1, tracking=None, batch_size=8)
    run_dir = next(p for p in (tmp_path / ".tradeoff" / "runs").iterdir() if len(load_trials(p)) == 18)
    assert f"resume={run_dir.name!r}" in str(info.value)   # the API says how to resume: search(..., resume=ID)
    (run_dir / "state.pkl").write_bytes(b"\x80\x05garbage")
    (run_dir / "state.pkl.prev").write_bytes(b"")
    text = (run_dir / "study.json").read_text()
    (run_dir / "study.json").write_text(text[: len(text) // 2])
    again = []
    with pytest.warns(UserWarning) as record:
        front = to.search(SPACE, OBJ, lambda c: again.append(1) or faults.zdt(c), budget=40, algorithm="nsga2",
                          seed=1, tracking=None, batch_size=8, resume=run_dir.name)
    said = " ".join(str(w.message) for w in record)
    assert "state.pkl is damaged" in said and "study.json is damaged" in said
    assert len(again) == 22
    assert [t.key for t in front.trials] == [t.key for t in ref.trials]


@pytest.mark.parametrize("algorithm", ["nsga2", "motpe", "random"])
def test_replay_from_the_log_asks_what_the_interrupted_run_would(tmp_path, algorithm):
    """No checkpoint at all: the algorithm is rebuilt by replaying the log; the next asks are the same."""
    kw = dict(budget=30, algorithm=algorithm, seed=4, tracking=None, batch_size=6)
    ref = to.search(SPACE, OBJ, faults.zdt, **kw)
    stopping = interrupted_at(17)

    with pytest.raises(KeyboardInterrupt):
        to.search(SPACE, OBJ, stopping, **kw)
    run_dir = next(p for p in (tmp_path / ".tradeoff" / "runs").iterdir() if len(load_trials(p)) == 16)
    for f in ("state.pkl", "state.pkl.prev"):
        (run_dir / f).unlink()
    front = to.search(SPACE, OBJ, faults.zdt, resume=run_dir.name, **kw)
    assert [t.key for t in front.trials] == [t.key for t in ref.trials]


# -- locks -----------------------------------------------------------------------------------------

def test_a_second_process_on_a_run_is_refused_with_its_holder(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys,time; from tradeoff.core.run_lock import RunLock; l = RunLock(sys.argv[1]).acquire(); "
        "print('held', flush=True); time.sleep(60)"), str(run_dir)], stdout=subprocess.PIPE, text=True,
        env=subprocess_env(tmp_path))
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLocked, match=f"in use by pid {holder.pid} on "):
            RunLock(run_dir).acquire()
    finally:
        holder.kill()
        holder.wait()
    with RunLock(run_dir):  # a dead holder's lock is gone with it
        pass


@pytest.mark.slow
def test_concurrent_resumes_and_first_runs(tmp_path):
    """Two first runs on a new store both work; two resumes of one run at once: one runs, one is refused."""
    env = subprocess_env(tmp_path)
    env["FAULT_DELAY"] = "0.03"
    r = recipe(tmp_path, budget=40)
    firsts = [subprocess.Popen([*EXE, "run", str(r), "-q"], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True) for _ in range(2)]
    runs = tmp_path / ".tradeoff" / "runs"
    run_dir = wait_for_trials(runs, 12)
    firsts[[p.pid for p in firsts].index(int(json.loads((run_dir / "lock").read_text())["pid"]))].kill()
    outs = [p.communicate(timeout=120) for p in firsts]
    assert sorted(p.returncode for p in firsts) == [-9, 0], [o[1][-2000:] for o in outs]
    two = [subprocess.Popen([*EXE, "run", "--resume", run_dir.name, "-q"], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in two]
    codes = sorted(p.returncode for p in two)
    assert codes == [0, 1], outs
    refused = next(o[1] for p, o in zip(two, outs) if p.returncode == 1)
    assert "is in use by pid" in refused and "Traceback" not in refused
    assert_consistent(run_dir, env["MLFLOW_TRACKING_URI"], 40)


def wait_for_trials(runs: Path, n: int, exclude=frozenset(), timeout=90) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for d in runs.glob("*") if runs.exists() else []:
            if d.name not in exclude and (d / "trials.jsonl").exists():
                if (d / "trials.jsonl").read_bytes().count(b"\n") >= n:
                    return d
        time.sleep(0.005)
    raise AssertionError("the run made no progress")


# -- kills -----------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("mode", ["steps", "children"])
def test_sigkill_at_random_moments_loses_nothing(tmp_path, mode):
    """kill -9 the CLI again and again at random moments, resume each time: the log and MLflow agree, every
    trial once, no recorded trial evaluated again."""
    env = subprocess_env(tmp_path)
    env["FAULT_LOG"] = str(tmp_path / "calls.txt")
    env["FAULT_DELAY"] = "0.01"
    budget = 64
    r = recipe(tmp_path, budget=budget, trials=mode)
    rng = random.Random(7)
    runs = tmp_path / ".tradeoff" / "runs"
    proc = subprocess.Popen([*EXE, "run", str(r), "-q"], env=env, cwd=tmp_path, stderr=subprocess.DEVNULL)
    run_dir = wait_for_trials(runs, 1)
    kills = 0
    while kills < 4:
        done = (run_dir / "trials.jsonl").read_bytes().count(b"\n")
        time.sleep(rng.uniform(0.0, 0.25))  # a random moment: mid-trial, mid-log, mid-child, mid-checkpoint
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        proc = subprocess.Popen([*EXE, "run", "--resume", run_dir.name, "-q"], env=env, cwd=tmp_path,
                                stderr=subprocess.DEVNULL)
        wait_for_trials(runs, min(budget, done + 1))
    assert proc.wait(timeout=120) == 0
    assert kills >= 3
    trials = assert_consistent(run_dir, env["MLFLOW_TRACKING_URI"], budget)
    calls = (tmp_path / "calls.txt").read_text().splitlines()
    # an evaluation cut short by a kill (not yet logged) runs again; a logged one never does
    assert len(calls) - len(set(calls)) <= kills
    assert len(set(calls)) == len(trials)


@pytest.mark.slow
def test_sigkill_then_resume_on_another_machine_reruns_no_logged_trial(tmp_path):
    """The store's copy of the log keeps up with trials that take a while: a run killed mid-batch and resumed
    from the store alone (another TRADEOFF_HOME, as on another machine) evaluates no logged trial again."""
    env = subprocess_env(tmp_path)
    env["FAULT_LOG"] = str(tmp_path / "calls.txt")
    env["FAULT_DELAY"] = "0.4"
    uri, budget = env["MLFLOW_TRACKING_URI"], 16
    r = recipe(tmp_path, budget=budget)
    proc = subprocess.Popen([*EXE, "run", str(r), "-q"], env=env, cwd=tmp_path, stderr=subprocess.DEVNULL)
    run_dir = wait_for_trials(tmp_path / ".tradeoff" / "runs", 5)  # mid-way through the first batch of 8
    time.sleep(0.2)  # the 6th trial is being evaluated
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    logged = (run_dir / "trials.jsonl").read_bytes().count(b"\n")
    assert 5 <= logged < 8
    env["TRADEOFF_HOME"] = str(tmp_path / "elsewhere" / ".tradeoff")
    out = subprocess.run([*EXE, "run", "--resume", run_dir.name, "--uri", uri, "-q"], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    trials = assert_consistent(tmp_path / "elsewhere" / ".tradeoff" / "runs" / run_dir.name, uri, budget)
    calls = (tmp_path / "calls.txt").read_text().splitlines()
    assert len(calls) - len(set(calls)) <= 1, "a logged trial was evaluated again"  # only the one cut short
    assert len(set(calls)) == len(trials)


# -- worker processes ------------------------------------------------------------------------------

@pytest.mark.slow
def test_segfault_fails_its_trial_and_is_not_evaluated_again(tmp_path):
    env = subprocess_env(tmp_path)
    r = recipe(tmp_path, budget=16, executor="processes", function="helpers.faults:segfault_above",
               extra=", workers: 2")
    out = subprocess.run([*EXE, "run", str(r), "-q"], env=env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = next((tmp_path / ".tradeoff" / "runs").iterdir())
    trials = assert_consistent(run_dir, env["MLFLOW_TRACKING_URI"], 16)
    crashed = [t for t in trials if t.config["x0"] > 0.8]
    assert crashed and all(not t.ok and t.reason == "worker killed by SIGSEGV, 2 attempts" for t in crashed)
    assert all(t.ok for t in trials if t.config["x0"] <= 0.8)
    # resume of a finished run evaluates nothing (the crashing configs are in the log)
    from tradeoff.runner import resume_run

    resume_run(run_dir.name, progress=False)
    assert [t.key for t in load_trials(run_dir)] == [t.key for t in trials]


def test_memory_hog_is_recycled_and_timeouts_kill(tmp_path):
    from tradeoff.engine.workers import ProcessExecutor

    ex = ProcessExecutor(workers=1, memory_mb=300)
    items = [(str(i), {"x0": 0.1 * i, "x1": 0.1, "x2": 0.1, "x3": 0.1}) for i in range(6)]
    try:
        out = list(ex.map(faults.leak, items, None))  # 120 MB kept per call: without recycling the 3rd fails
        assert [r[3] for r in out] == [None] * 6 and ex.restarts >= 2
        out = {r[0]: r for r in ex.map(faults.hang_above, items[:1] + [("9", {**items[0][1], "x0": 0.9})], 1.0)}
        assert out["0"][3] is None
        assert out["9"][3] == "timed out after 1 s (worker stopped)" and out["9"][4] < 10
        pids = {r[2]["pid"] for r in ex.map(faults.pid, items[:3], None)}
        assert len(pids) == 1
    finally:
        ex.close()


def test_worker_death_is_retried_once(tmp_path):
    from tradeoff.engine.workers import ProcessExecutor

    ex = ProcessExecutor(workers=1)
    flag = tmp_path / "died"
    try:
        import functools

        out = list(ex.map(functools.partial(faults.die_once, flag=str(flag)), [("a", {f"x{i}": 0.5 for i in range(4)})],
                          None))
        assert flag.exists() and out[0][3] is None and ex.restarts == 1
    finally:
        ex.close()


@pytest.mark.slow
def test_ray_executor_runs_trials_and_fails_a_crash(tmp_path):
    front = to.search(SPACE, OBJ, faults.segfault_above, budget=10, algorithm="random", seed=0, tracking=None,
                      batch_size=5, executor="ray")
    crashed = [t for t in front.trials if t.config["x0"] > 0.8]
    assert len(front.trials) == 10
    assert all(not t.ok and "WorkerCrashedError" in t.reason for t in crashed)
    assert all(t.ok for t in front.trials if t.config["x0"] <= 0.8)


# -- stores and directories ------------------------------------------------------------------------

@pytest.mark.slow
def test_unusable_home_and_store_end_cleanly(tmp_path):
    env = subprocess_env(tmp_path)
    r = recipe(tmp_path, budget=8)
    (tmp_path / "afile").write_text("")
    out = subprocess.run([*EXE, "run", str(r), "-q"], env={**env, "TRADEOFF_HOME": str(tmp_path / "afile")},
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "set TRADEOFF_HOME to a writable directory" in " ".join(out.stderr.split())
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    parents = client.search_runs([e.experiment_id for e in client.search_experiments()], "tags.`tradeoff.kind` = 'study'")
    assert parents and all(p.info.status == "FAILED" and "run directory" in p.data.tags["tradeoff.end"]
                           for p in parents)
    out = subprocess.run([*EXE, "run", str(r), "-q"], env={**env, "MLFLOW_TRACKING_URI": "sqlite:////nonexistent/x.db"},
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "directory /nonexistent does not exist" in " ".join(out.stderr.split())


def start_server(root: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{root / 'srv.db'}",
         "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"], cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.2)
    raise AssertionError("mlflow server did not start")


def stop_server(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


@pytest.mark.slow
def test_server_stopped_mid_search_then_resumed_with_uri(tmp_path):
    """A real `mlflow server` dies mid-search: the run stops with a clean error and the resume command;
    the server comes back, `--resume ID --uri X` finishes the run there, and MLflow matches the log."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    srv = start_server(tmp_path, port)
    env = {**subprocess_env(tmp_path), "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
           "FAULT_DELAY": "0.03"}
    env.pop("MLFLOW_TRACKING_URI")
    r = recipe(tmp_path, budget=40, uri=url)
    proc = subprocess.Popen([*EXE, "run", str(r), "-q"], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        run_dir = wait_for_trials(tmp_path / ".tradeoff" / "runs", 10)
        stop_server(srv)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 1 and "Traceback" not in err, err[-3000:]
        assert f"resume with: tradeoff run --resume {run_dir.name} --uri {url}" in err
        srv = start_server(tmp_path, port)
        out = subprocess.run([*EXE, "run", "--resume", run_dir.name, "--uri", url, "-q"], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=180)
        assert out.returncode == 0, out.stderr[-3000:]
        assert_consistent(run_dir, url, 40)
    finally:
        stop_server(srv)


class Planted:
    def __reduce__(self):
        return (open, ("PLANTED", "w"))


def test_a_pickle_planted_in_the_store_is_never_loaded(tmp_path):
    import pickle

    from tradeoff.tracking.mlflow import MlflowTracker

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = MlflowTracker(uri=uri, experiment="planted", run_name="p")
    to.search(SPACE, OBJ, faults.zdt, budget=12, algorithm="nsga2", seed=0, tracking=tracker, batch_size=6)
    run_id = tracker.run_id
    bad = tmp_path / "state.pkl"
    bad.write_bytes(pickle.dumps({"algorithm": Planted(), "batches": 0, "elapsed_s": 0, "n_trials": 0}))
    MlflowClient(uri).log_artifact(run_id, str(bad), "checkpoint")
    import shutil

    shutil.rmtree(run_dir_for(run_id))
    from tradeoff.tracking.mlflow import download_checkpoint

    download_checkpoint(run_id, run_dir_for(run_id), uri)  # what `tradeoff run --resume ID --uri X` does
    assert not (run_dir_for(run_id) / "state.pkl").exists()
    front = to.search(SPACE, OBJ, faults.zdt, budget=12, algorithm="nsga2", seed=0, batch_size=6,
                      tracking=MlflowTracker(uri=uri, experiment="planted", run_name="p"), resume=run_id)
    assert not Path("PLANTED").exists() and len(front.trials) == 12


# -- bad data --------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, says", [
    ("w,d,acc\n1,2,0.5\n1,3,0.6\n1,2,0.7\n", "configuration {'w': 1, 'd': 2} (columns w, d) appears at line 2 "
                                              "and again at line 4"),
    ("w,d,acc\n1,2,0.5\n,3,0.6\n", "column 'w' has no value at line 3"),
    ("w,d,acc\n1,2,0.5\n1,3,abc\n", "column 'acc' at line 3 is 'abc', not a number"),
    ("w,d,acc\n", "the table has no rows"),
    ("", "is empty"),
])
def test_bad_tables_are_refused_naming_file_column_and_line(tmp_path, text, says):
    (tmp_path / "t.csv").write_text(text)
    data = {"name": "t", "workload": {"name": "table", "path": str(tmp_path / "t.csv"), "params": ["w", "d"]},
            "objectives": {"acc": "maximize"}, "tracking": False}
    from tradeoff.recipe import build_workload

    with pytest.raises(RecipeError) as e:
        build_workload(load_recipe(data)[0])
    assert "t.csv" in str(e.value) and says in str(e.value)


def test_bad_recipe_files_are_refused_quickly(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_bytes(b"name: caf\xe9\nworkload: zdt1\n")
    with pytest.raises(RecipeError, match="not UTF-8 text .*line 1"):
        load_recipe(p)
    p.write_text("name: x\n" + "# padding\n" * 200_000)
    with pytest.raises(RecipeError, match="a recipe is at most 1 MB"):
        load_recipe(p)
    p.write_text("name: x\nworkload: zdt1\n" + "".join(f"junk{i}: {i}\n" for i in range(5000)))
    with pytest.raises(RecipeError) as e:
        load_recipe(p)
    assert "5000 unknown top-level fields (junk0, junk1" in str(e.value) and len(str(e.value)) <= 2100
    p.write_text("name: x\nworkload: zdt1\nsearch: {" + ", ".join(f"k{i}: 1" for i in range(3000)) + "}\n")
    with pytest.raises(RecipeError) as e:
        load_recipe(p)
    assert "search.k0: unknown field" in str(e.value) and len(str(e.value)) <= 2100 and "more lines" in str(e.value)
