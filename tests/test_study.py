import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import tradeoff as to
from conftest import subprocess_env
from tradeoff.engine.study import load_trials, run_dir_for
from tradeoff.workloads import make_workload

ZDT = make_workload("zdt1", n_var=4)
OBJ = {"f1": "minimize", "f2": "minimize"}


def test_failed_trials_are_recorded_with_reason_and_search_goes_on():
    def evaluate(c):
        if c["x0"] > 0.7:
            raise RuntimeError("export failed: unsupported op")
        if c["x1"] > 0.9:
            return {"f1": math.nan, "f2": 1.0}
        if c["x2"] > 0.95:
            return {"f1": 1.0}
        return ZDT.evaluate(c)

    front = to.search(ZDT.space, OBJ, evaluate, budget=60, algorithm="random", seed=1, tracking=None)
    assert len(front.trials) == 60
    reasons = [t.reason for t in front.failed]
    assert any(r == "RuntimeError: export failed: unsupported op" for r in reasons)
    assert any(r == "f1 is nan" for r in reasons)
    assert all(t.state == "failed" for t in front.failed)
    assert all(t.ok for t in front.members)
    assert len(front.complete) + len(front.failed) == 60
    assert all(t.config["x0"] <= 0.7 for t in front.complete)


def test_timeout_fails_the_trial_and_continues():
    def evaluate(c):
        if c["x0"] > 0.8:
            time.sleep(2.0)
        return ZDT.evaluate(c)

    t0 = time.monotonic()
    front = to.search(ZDT.space, OBJ, evaluate, budget=20, algorithm="random", seed=0, tracking=None, timeout_s=0.2)
    slow = [t for t in front.trials if t.config["x0"] > 0.8]
    assert slow, "the seed should produce some slow candidates"
    assert all(t.reason == "timed out after 0.2 s" for t in slow)
    assert time.monotonic() - t0 < 0.2 * len(slow) + 5


def test_equal_configs_are_evaluated_once():
    space = to.Space({"a": to.Choice([1, 2, 3]), "b": to.Choice(["x", "y"])})
    calls = []

    def evaluate(c):
        calls.append((c["a"], c["b"]))
        return {"f1": c["a"], "f2": -c["a"] + (c["b"] == "x")}

    front = to.search(space, OBJ, evaluate, budget=50, algorithm="random", seed=0, tracking=None, batch_size=4)
    assert len(calls) == len(set(calls)) == 6  # the space has 6 configs; the study stops when exhausted
    assert len(front.trials) == 6
    assert len({t.key for t in front.trials}) == 6


def test_constraints_make_infeasible_trials_leave_the_front():
    front = to.search(ZDT.space, OBJ, ZDT.evaluate, budget=80, algorithm="nsga2", seed=0, tracking=None,
                      constraints={"f1": ("<=", 0.5), "f2": "<= 3"})
    assert front.members
    assert all(t.metrics["f1"] <= 0.5 and t.metrics["f2"] <= 3 for t in front.members)
    infeasible = [t for t in front.complete if not t.feasible]
    assert infeasible and all(t.metrics["f1"] > 0.5 or t.metrics["f2"] > 3 for t in infeasible)


def test_maximize_is_reported_in_user_units():
    space = to.Space({"x": to.Float(0, 1)})
    front = to.search(space, {"acc": "maximize", "cost": "minimize"}, lambda c: {"acc": c["x"], "cost": c["x"] ** 2},
                      budget=30, algorithm="random", seed=0, tracking=None)
    accs = [m.metrics["acc"] for m in front.members]
    assert all(0 <= a <= 1 for a in accs)  # not negated
    assert len(front.members) == 30  # every point is a trade-off
    ref = front.reference({"acc": 0.0, "cost": 1.0})
    assert ref == {"acc": 0.0, "cost": 1.0}
    hv = front.hypervolume({"acc": 0.0, "cost": 1.0})
    assert 0.5 < hv < 2 / 3 + 1e-9  # area above y=x^2 in the unit square is 2/3


def test_same_seed_same_trials_and_hypervolume_curve_is_monotone():
    a = to.search(ZDT.space, OBJ, ZDT.evaluate, budget=60, algorithm="nsga2", seed=3, tracking=None)
    b = to.search(ZDT.space, OBJ, ZDT.evaluate, budget=60, algorithm="nsga2", seed=3, tracking=None)
    assert [t.key for t in a.trials] == [t.key for t in b.trials]
    curve = a.hypervolume_curve({"f1": 1.1, "f2": 10})
    assert len(curve) == 60 and np.all(np.diff(curve) >= -1e-12) and curve[-1] > 0
    assert curve[-1] == pytest.approx(a.hypervolume({"f1": 1.1, "f2": 10}))


def test_time_budget_stops_the_search():
    def evaluate(c):
        time.sleep(0.05)
        return ZDT.evaluate(c)

    t0 = time.monotonic()
    front = to.search(ZDT.space, OBJ, evaluate, budget=None, time_budget_s=1.0, algorithm="random", seed=0,
                      tracking=None, batch_size=2)
    assert 5 <= len(front.trials) <= 30
    assert time.monotonic() - t0 < 3


def test_resume_after_interrupt_in_process():
    """Ctrl-C mid-search, then resume=RUN_ID: no finished trial runs again; same front as uninterrupted."""
    ref = to.search(ZDT.space, OBJ, ZDT.evaluate, budget=50, algorithm="nsga2", seed=5, tracking=None, batch_size=8)
    calls = []

    def interrupting(c):
        calls.append(ZDT.space.key(c))
        if len(calls) == 21:
            raise KeyboardInterrupt
        return ZDT.evaluate(c)

    with pytest.raises(KeyboardInterrupt):
        to.search(ZDT.space, OBJ, interrupting, budget=50, algorithm="nsga2", seed=5, tracking=None, batch_size=8)
    runs = list((Path(os.environ["TRADEOFF_HOME"]) / "runs").iterdir())
    run_id = next(p.name for p in runs if len(load_trials(p)) == 20)
    first = [t.key for t in load_trials(run_dir_for(run_id))]
    calls2 = []

    def counting(c):
        calls2.append(ZDT.space.key(c))
        return ZDT.evaluate(c)

    front = to.search(ZDT.space, OBJ, counting, budget=50, algorithm="nsga2", seed=5, tracking=None,
                      batch_size=8, resume=run_id)
    assert not set(calls2) & set(first)
    assert len(calls2) == 30 and len(front.trials) == 50
    assert [t.key for t in front.trials] == [t.key for t in ref.trials]
    assert [m.key for m in front.members] == [m.key for m in ref.members]


def test_a_past_search_is_loaded_by_its_run_id_a_prefix_of_it_or_its_directory():
    front = to.search(ZDT.space, OBJ, ZDT.evaluate, budget=10, algorithm="random", seed=4, tracking=None)
    for run in (front.run_id, front.run_id[:5], run_dir_for(front.run_id)):
        again = to.load_front(run)
        assert [t.key for t in again.trials] == [t.key for t in front.trials]
        assert [t.key for t in again.members] == [t.key for t in front.members] and again.run_id == front.run_id
    with pytest.raises(FileNotFoundError, match="no run 'nosuchrun' in the local run store"):
        to.load_front("nosuchrun")


def test_a_finished_search_resumed_with_a_larger_budget_searches_on():
    """The API: the resume call's budget is the run's from now on; a budget below what was done is refused."""
    calls = []

    def counting(c):
        calls.append(ZDT.space.key(c))
        return ZDT.evaluate(c)

    kw = dict(algorithm="nsga2", seed=3, tracking=None, batch_size=8)
    first = to.search(ZDT.space, OBJ, counting, budget=12, **kw)
    done = list(calls)
    with pytest.raises(ValueError, match="budget: 5 is below the 12 trials this run has done; give 12 or more"):
        to.search(ZDT.space, OBJ, counting, budget=5, resume=first.run_id, **kw)
    more = to.search(ZDT.space, OBJ, counting, budget=20, resume=first.run_id, **kw)   # the lock was let go
    assert len(calls) == 20 and not set(calls[12:]) & set(done)
    assert [t.key for t in more.trials[:12]] == [t.key for t in first.trials] and len({t.key for t in more.trials}) == 20
    # the new budget is the run's: a resume without a checkpoint replays the log under the budget it was asked in
    for f in ("state.pkl", "state.pkl.prev"):
        (run_dir_for(first.run_id) / f).unlink()
    again = to.search(ZDT.space, OBJ, counting, budget=28, resume=first.run_id, **kw)
    assert len(calls) == 28 and len({t.key for t in again.trials}) == 28
    assert json.loads((run_dir_for(first.run_id) / "study.json").read_text())["spec"]["budget"] == 28


def test_resume_takes_a_new_budget_from_the_command_line_and_nothing_else(tmp_path, capsys, monkeypatch):
    from tradeoff.cli import main

    log = tmp_path / "calls.txt"
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"""
workload: {{name: "python: helpers.workloads:slow_zdt", delay: 0, log: "{log}"}}
objectives: {{f1: minimize, f2: minimize}}
search: {{algorithm: random, budget: 6, seed: 1}}
tracking: false
""")
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(recipe), "-q"]) == 0
    rid = re.search(r"run id: (\w+)", capsys.readouterr().out).group(1)
    assert main(["run", "--resume", rid, "--set", "search.seed=2"]) == 2
    assert ("--set search.seed: with --resume only search.budget and search.time_budget_s may change (a resumed run "
            "keeps the rest of its recipe)") in capsys.readouterr().err
    assert main(["run", str(recipe), "--resume", rid]) == 2
    assert "give a recipe or --resume RUN_ID, not both" in capsys.readouterr().err
    assert main(["run", "--resume", rid, "--set", "search.budget=4"]) == 2
    assert "--set search.budget: 4 is below the 6 trials this run has done; give 6 or more" in capsys.readouterr().err
    assert len(log.read_text().split()) == 6
    assert main(["run", "--resume", rid, "--set", "search.budget=10"]) == 0
    out = capsys.readouterr()
    assert "budget 6 -> 10 (done so far: 6 trials)" in out.out + out.err and "10 trials (0 failed" in out.out
    keys = log.read_text().split()
    assert len(keys) == 10 and len(set(keys)) == 10
    assert main(["show", rid]) == 0 and "status: finished" in capsys.readouterr().out


def _count_lines(p: Path) -> int:
    return len(p.read_text().splitlines()) if p.exists() else 0


def test_resume_after_sigkill_cli(tmp_path, capsys):
    """`kill -9` a running `tradeoff run`, then `tradeoff run --resume RUN_ID`; `tradeoff show` says which."""
    from tradeoff.cli import main

    recipe = tmp_path / "slow.yaml"
    log1, log2 = tmp_path / "calls1.txt", tmp_path / "calls2.txt"

    def write(log):
        recipe.write_text(f"""
name: slow
workload: {{name: "python: helpers.workloads:slow_zdt", delay: 0.05, log: "{log}"}}
objectives: {{f1: minimize, f2: minimize}}
search: {{algorithm: nsga2, budget: 60, seed: 11, batch_size: 10}}
tracking: false
""")

    write(log1)
    env = subprocess_env(tmp_path)
    exe = [sys.executable, "-m", "tradeoff.cli"]
    proc = subprocess.Popen([*exe, "run", str(recipe), "-q"], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    home = tmp_path / ".tradeoff" / "runs"
    deadline = time.monotonic() + 60
    run_dir = None
    while time.monotonic() < deadline:
        dirs = list(home.glob("*")) if home.exists() else []
        if dirs and _count_lines(dirs[0] / "trials.jsonl") >= 25:
            run_dir = dirs[0]
            break
        time.sleep(0.01)
    assert run_dir is not None, proc.stderr.read().decode() if proc.poll() is not None else "no progress"
    assert main(["show", run_dir.name]) == 0
    assert re.search(rf"status: running, at \d+/60 trials \(pid {proc.pid} on ", capsys.readouterr().out)
    assert main(["runs"]) == 0 and re.search(rf"{run_dir.name} .* running ", capsys.readouterr().out)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = load_trials(run_dir)
    assert 25 <= len(done_before) < 60
    assert main(["show", run_dir.name]) == 0
    assert (f"status: killed (no clean exit) at {len(done_before)}/60 trials; resume with: tradeoff run --resume "
            f"{run_dir.name}\n") in capsys.readouterr().out
    assert main(["runs"]) == 0 and re.search(rf"{run_dir.name} .* {len(done_before)}/60 .* killed ",
                                             capsys.readouterr().out)
    # the recipe stored in the run is used on resume; point its log elsewhere to count the second part's calls
    study = json.loads((run_dir / "study.json").read_text())
    study["info"]["resolved"]["workload"]["log"] = str(log2)
    (run_dir / "study.json").write_text(json.dumps(study))
    out = subprocess.run([*exe, "run", "--resume", run_dir.name, "-q"], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    trials = load_trials(run_dir)
    assert len(trials) == 60
    assert [t.number for t in trials] == list(range(60))
    assert main(["show", run_dir.name]) == 0 and "status: finished" in capsys.readouterr().out
    resumed_calls = log2.read_text().split()
    assert not set(resumed_calls) & {t.key for t in done_before}
    assert len(resumed_calls) == 60 - len(done_before)
    # equal to an uninterrupted run with the same seed (deterministic evaluator)
    write(tmp_path / "calls3.txt")
    out = subprocess.run([*exe, "run", str(recipe), "-q"], env=env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    other = next(d for d in home.iterdir() if d != run_dir)
    assert [t.key for t in load_trials(other)] == [t.key for t in trials]
    assert "Pareto front" in out.stdout and f"run id: {other.name}" in out.stdout


def _sparse_table(n: int = 30):
    """A table workload over 3 x n x n configurations with every tenth one missing (so its space keeps its rows)."""
    import pandas as pd

    from tradeoff.workloads.table import table_workload

    rng = np.random.default_rng(0)
    rows = [{"a": a, "b": b, "c": c, "f1": float(rng.random()), "f2": float(rng.random())}
            for a in range(3) for b in range(n) for c in range(n) if (a + b + c) % 10]
    return table_workload(pd.DataFrame(rows), params=["a", "b", "c"], metrics=["f1", "f2"])


def test_checkpoint_refers_to_the_space_instead_of_copying_it():
    """A NAS table's space carries its rows; every checkpoint copying it cost megabytes a batch.
    The checkpoint names the space, and a resumed study binds its algorithm to its own."""
    import cloudpickle

    from tradeoff.engine.checkpoint import STATE
    from tradeoff.engine.study import Study

    wl = _sparse_table()
    obj = {"f1": "minimize", "f2": "minimize"}
    ref = to.search(wl.space, obj, wl.evaluate, budget=40, algorithm="local", seed=1, tracking=None, batch_size=10)
    calls = []

    def interrupting(c):
        calls.append(c)
        if len(calls) == 21:
            raise KeyboardInterrupt
        return wl.evaluate(c)

    with pytest.raises(KeyboardInterrupt):
        to.search(wl.space, obj, interrupting, budget=40, algorithm="local", seed=1, tracking=None, batch_size=10)
    run_dir = max((Path(os.environ["TRADEOFF_HOME"]) / "runs").iterdir(), key=lambda p: p.stat().st_mtime)
    assert len(load_trials(run_dir)) == 20
    space_bytes = len(cloudpickle.dumps(wl.space))
    assert space_bytes > 50_000                                   # the rows: what a copy would cost
    assert (run_dir / STATE).stat().st_size < space_bytes / 10
    fresh = _sparse_table()                                       # an equal space, as a new process builds it
    study = Study.resume(run_dir.name, fresh.space, fresh.evaluate, progress=False)
    assert study.algorithm.space is fresh.space
    assert study.algorithm.history.space is fresh.space
    front = study.run()
    assert [t.key for t in front.trials] == [t.key for t in ref.trials]


def test_a_log_from_before_the_space_keyed_models_resumes_without_evaluating_a_model_twice():
    """A search logged while configs of one model still had keys of their own (a NAS table before its
    identity column was declared), resumed on the space that keys models: the logged config answers
    for its model."""
    import pandas as pd

    from tradeoff.engine.study import Study
    from tradeoff.workloads.table import table_workload

    # a symmetric cell: (a, b) and (b, a) are one model; 9 configs, 6 models
    frame = pd.DataFrame([{"a": a, "b": b, "model": f"m{min(a, b)}{max(a, b)}", "acc": 0.1 * (a + b) + 0.01 * a * b}
                          for a in (1, 2, 3) for b in (1, 2, 3)])
    kw = dict(params=["a", "b"], metrics=["acc"], directions={"acc": "maximize"})
    by_config, by_model = table_workload(frame, **kw), table_workload(frame, **kw, identity="model")
    assert by_model.space.key({"a": 2, "b": 1}) == by_model.space.key({"a": 1, "b": 2})
    calls = []

    def interrupting(c):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append((c["a"], c["b"]))
        return by_config.evaluate(c)

    # the old run measures (2, 1) and (1, 1) and dies asking (1, 2), its next initial config
    with pytest.raises(KeyboardInterrupt):
        to.search(by_config.space, {"acc": "maximize"}, interrupting, budget=6, algorithm="random", seed=0,
                  tracking=None, batch_size=1, initial=[{"a": 2, "b": 1}, {"a": 1, "b": 1}, {"a": 1, "b": 2}])
    assert calls == [(2, 1), (1, 1)]
    run_dir = max((Path(os.environ["TRADEOFF_HOME"]) / "runs").iterdir(), key=lambda p: p.stat().st_mtime)
    later = []

    def counting(c):
        later.append((min(c["a"], c["b"]), max(c["a"], c["b"])))
        return by_model.evaluate(c)

    front = Study.resume(run_dir.name, by_model.space, counting, progress=False).run()
    assert (1, 2) not in later                          # m12 is known from its logged (2, 1)
    assert sorted(later) == [(1, 3), (2, 2), (2, 3), (3, 3)]   # the other models, each once
    assert len(front.trials) == 6
