"""What a new user meets in the first hour: tiny spaces, failed runs, clean errors, run ids, show, paths."""

from __future__ import annotations

import re
import textwrap

import pytest

import tradeoff
from tradeoff import Choice, Space, TrialError
from tradeoff.cli import main
from tradeoff.core.paths import run_dir_for

ALGORITHMS = [n for n in tradeoff.algorithm_names() if n not in ("ng:<Optimizer>", "ng")] + ["ng:NGOpt"]
TINY = Space({"a": Choice([1, 2, 3]), "b": Choice([0, 1])})  # 6 configs


def _tiny(c):
    return {"f1": c["a"], "f2": -c["a"] + c["b"]}


@pytest.mark.parametrize("name", ALGORITHMS)
def test_space_smaller_than_population_stops_cleanly(name):
    opts = {"n_startup_trials": 3} if name == "optuna-gp" else None
    front = tradeoff.search(TINY, {"f1": "minimize", "f2": "minimize"}, _tiny, budget=20, algorithm=name,
                            tracking=None, algorithm_options=opts)
    assert len(front.trials) == 6
    assert len({t.key for t in front.trials}) == 6
    assert front.stop_reason == "space exhausted after 6 distinct configs"
    assert len(front.members) == 3


def _recipe(tmp_path, body: str, name: str = "r.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(body))
    return p


def always_fails(config):
    if config["a"] == 1:
        raise TrialError("out of memory")
    raise ValueError("bad shape")


def test_a_run_where_every_trial_fails_says_why_and_fails(tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "failmod.py").write_text(
        "def fn(c):\n    raise RuntimeError('out of memory' if c['a'] == 1 else 'bad shape')\n")
    r = _recipe(tmp_path, """
        name: allfail
        workload: {name: function, function: failmod:fn, space: {a: [1, 2, 3]}}
        objectives: {f: minimize}
        search: {algorithm: random, budget: 6}
        tracking: false
    """)
    rc = main(["run", str(r), "-q"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "3 of 3 trials failed or were infeasible; top reasons:" in out
    assert "2 x RuntimeError: bad shape" in out and "1 x RuntimeError: out of memory" in out
    assert "nan" not in out


def test_front_and_api_carry_the_failure_summary():
    with pytest.warns(tradeoff.api.SearchWarning, match="no trial completed"):
        front = tradeoff.search(Space({"a": Choice([1, 2, 3])}), {"f": "minimize"}, always_fails, budget=3,
                                algorithm="random", tracking=None)
    assert dict(front.failure_counts()) == {"ValueError: bad shape": 2, "out of memory": 1}
    assert front.failure_counts()[0] == ("ValueError: bad shape", 2)


def _fn_recipe(tmp_path, function, extra=""):
    p = tmp_path / "r.yaml"
    p.write_text(f"""name: r
workload: {{name: function, function: "{function}", space: {{a: [1, 2, 3]}}}}
objectives: {{f: minimize}}
search: {{algorithm: random, budget: 3}}
tracking: false
{extra}""")
    return p


def test_a_missing_function_or_module_is_one_line_naming_the_field(tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "mymod.py").write_text("def fn(c):\n    return {'f': c['a']}\n")
    assert main(["validate", str(_fn_recipe(tmp_path, "mymod:nofn"))]) == 2
    err = capsys.readouterr().err
    assert "workload: function: 'mymod:nofn': module 'mymod' has no 'nofn' (it has fn)" in err
    assert "Traceback" not in err
    assert main(["validate", str(_fn_recipe(tmp_path, "nomod_xyz:fn"))]) == 2
    err = capsys.readouterr().err
    assert "No module named 'nomod_xyz'" in err and "recipe's folder" in err and "PYTHONPATH" in err


def test_api_arguments_are_checked_with_a_line_naming_them():
    ev = lambda c: {"f": c["a"]}  # noqa: E731
    with pytest.raises(TypeError, match=r"space: pass a tradeoff.Space .*not a dict .*wrap it as tradeoff.Space"):
        tradeoff.search({"a": [1, 2]}, {"f": "minimize"}, ev, tracking=None)
    with pytest.raises(ValueError, match="budget: a positive whole number of trials, got -5"):
        tradeoff.search(TINY, {"f": "minimize"}, ev, budget=-5, tracking=None)
    calls = []
    counted = lambda c: calls.append(c) or ev(c)  # noqa: E731
    for kwargs, message in [
        ({"objectives": []}, "objectives: at least one objective is needed"),
        ({"objectives": {}}, "objectives: at least one objective is needed"),
        ({"batch_size": 0}, "batch_size: 0 is not allowed; trials asked at once, a whole number of at least 1"),
        ({"batch_size": 2.5}, "batch_size: 2.5 is not allowed"),
        ({"timeout_s": -1}, "timeout_s: -1 is not allowed; the seconds one trial may take, a number above 0"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            tradeoff.search(TINY, **{"objectives": {"f": "minimize"}, **kwargs}, evaluate=counted, budget=3,
                            tracking=None)
    assert not calls  # refused before any trial


def test_a_constraint_on_a_metric_never_returned_is_an_error(tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "okmod.py").write_text("def fn(c):\n    return {'f': c['a']}\n")
    with pytest.raises(ValueError, match=r"constraints.mem: the evaluator returned no 'mem' .*it returns f"):
        tradeoff.search(TINY, {"f1": "minimize"}, _tiny, budget=4, tracking=None,
                        constraints={"mem": ("<=", 3)}, algorithm="random")
    r = _fn_recipe(tmp_path, "okmod:fn", "constraints: {mem: '<= 3'}\n")
    assert main(["run", str(r), "-q"]) == 2
    err = capsys.readouterr().err
    assert "constraints.mem: the evaluator returned no 'mem'" in err and "Traceback" not in err


def test_an_objective_the_evaluator_never_returns_stops_the_search_after_its_first_trials(tmp_path, capsys,
                                                                                        monkeypatch):
    calls = []

    def ev(c):
        calls.append(c)
        return {"accuracy": c["a"] / 3, "latency": c["b"]}

    with pytest.raises(ValueError, match=r"objectives.acc: the evaluator returned no 'acc' in any of its first 3 "
                                         r"trials \(it returns accuracy, latency\); did you mean 'accuracy'\?"):
        tradeoff.search(TINY, {"acc": "maximize", "latency": "minimize"}, ev, budget=6, batch_size=1,
                        algorithm="random", tracking=None)
    assert len(calls) == 3  # not the whole budget
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "accmod.py").write_text("def fn(c):\n    return {'loss': c['a']}\n")
    r = _fn_recipe(tmp_path, "accmod:fn").read_text().replace("budget: 3", "budget: 3, batch_size: 1")
    (tmp_path / "r.yaml").write_text(r.replace("{f: minimize}", "{los: minimize}"))
    assert main(["run", str(tmp_path / "r.yaml"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "objectives.los: the evaluator returned no 'los'" in err and "did you mean 'loss'" in err
    assert "Traceback" not in err


def test_a_candidate_that_now_and_then_lacks_a_metric_is_a_failed_trial_and_the_search_goes_on():
    seen = []

    def ev(c):
        seen.append(c)
        return {"f1": c["a"], "f2": c["b"]} if len(seen) > 1 else {"note": 1.0}  # the first one fails

    front = tradeoff.search(TINY, {"f1": "minimize", "f2": "minimize"}, ev, budget=5, batch_size=1,
                            algorithm="random", tracking=None)
    assert len(seen) == 5
    failed = [t for t in front.trials if not t.ok]
    assert len(failed) == 1 and "evaluator returned no 'f1' (got note)" in failed[0].reason


@pytest.mark.parametrize("target, expected", [
    ("{runtime: ort, provider: cuda}", "targets.t.provider: 'cuda' is not in this onnxruntime build (available here: cpu"),
    ("{runtime: torch, device: cuda}", "targets.t.device: 'cuda' has no GPU on this machine (available here: cpu"),
    ("{runtime: tvm, target: {kind: nosuch}}", "targets.t: target {'kind': 'nosuch'}: kind 'nosuch' is not one of"),
])
def test_a_target_this_machine_cannot_run_is_a_recipe_error(tmp_path, capsys, target, expected):
    import onnxruntime
    import torch

    runnable = (("provider: cuda" in target and "CUDAExecutionProvider" in onnxruntime.get_available_providers())
                or ("device: cuda" in target and torch.cuda.is_available()))
    r = _recipe(tmp_path, f"""
        name: t
        workload: {{name: convnet_latency, resolution: 32}}
        targets: {{t: {target}}}
        objectives: {{latency_ms: {{direction: minimize, target: t}}, params_m: maximize}}
        search: {{algorithm: random, budget: 2}}
        tracking: false
    """)
    if runnable:  # a machine with CUDA: the same target is valid, and validates
        assert main(["validate", str(r)]) == 0, capsys.readouterr().err
        return
    assert main(["validate", str(r)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert expected in err


def test_run_id_is_announced_before_the_first_trial_and_ctrl_c_says_how_to_resume(tmp_path):
    import subprocess
    import sys

    from conftest import subprocess_env

    (tmp_path / "slowmod.py").write_text("import sys\ndef fn(c):\n    print('TRIAL', file=sys.stderr, flush=True)\n"
                                          "    return {'f': c['a']}\n")
    r = _fn_recipe(tmp_path, "slowmod:fn")
    out = subprocess.run([sys.executable, "-m", "tradeoff.cli", "run", str(r), "-q"], capture_output=True, text=True,
                         env=subprocess_env(tmp_path), cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    head = out.stderr.split("TRIAL")[0]
    run_id = out.stdout.split("run id: ")[1].split()[0]
    assert f"run id: {run_id} (resume with: tradeoff run --resume {run_id})" in head

    calls = []

    def interrupt_third(c):
        calls.append(c)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return {"f1": c["a"], "f2": -c["a"] + c["b"]}

    space = Space({"a": Choice(list(range(10))), "b": Choice([0, 1])})
    with pytest.raises(tradeoff.api.SearchInterrupted, match=r"interrupted after 2 trials; resume with "
                                                              r"tradeoff.search\(\.\.\., resume='(\w+)'\)") as e:
        tradeoff.search(space, {"f1": "minimize", "f2": "minimize"}, interrupt_third, budget=8,
                        algorithm="random", tracking=None, batch_size=4)
    rid = str(e.value).split("resume='")[1].split("'")[0]
    front = tradeoff.search(space, {"f1": "minimize", "f2": "minimize"}, interrupt_third, budget=8,
                            algorithm="random", tracking=None, resume=rid)
    assert front.run_id == rid and len(front.trials) == 8


def test_show_says_interrupted_names_the_store_and_lists_states(tmp_path, capsys):
    calls = []

    def flaky(c):
        calls.append(c)
        if len(calls) == 3:
            raise KeyboardInterrupt
        if c["b"] == 1:
            raise TrialError("b=1 is broken")
        return {"f1": c["a"], "f2": -c["a"]}

    space = Space({"a": Choice(list(range(10))), "b": Choice([0, 1])})
    with pytest.raises(tradeoff.api.SearchInterrupted) as e:
        tradeoff.search(space, {"f1": "minimize", "f2": "minimize"}, flaky, budget=8, algorithm="random",
                        tracking=None, batch_size=4, seed=1)
    rid = str(e.value).split("resume='")[1].split("'")[0]
    assert main(["show", rid, "--all"]) == 0
    out = capsys.readouterr().out
    assert f"status: interrupted at 2/8 trials; resume with: tradeoff run --resume {rid}\n" in out
    assert "finished" not in out
    assert "state" in out and "reason" in out and ("complete" in out or "b=1 is broken" in out)
    # tracked: the front's files are written and logged on the way out, and the run is still not finished
    calls.clear()
    uri = f"sqlite:///{tmp_path}/show.db"
    with pytest.raises(tradeoff.api.SearchInterrupted) as e:
        tradeoff.search(space, {"f1": "minimize", "f2": "minimize"}, flaky, budget=8, algorithm="random",
                        tracking={"uri": uri, "experiment": "show"}, batch_size=4, seed=1, progress=False)
    rid = str(e.value).split("resume='")[1].split("'")[0]
    assert main(["show", rid]) == 0
    assert f"status: interrupted at 2/8 trials; resume with: tradeoff run --resume {rid} --uri {uri}\n" in \
        capsys.readouterr().out
    # the run store at a glance: both runs, newest first; a damaged one is listed, not fatal
    finished = tradeoff.search(space, {"f1": "minimize", "f2": "minimize"}, lambda c: {"f1": c["a"], "f2": -c["a"]},
                               budget=3, algorithm="random", tracking=None, seed=2)
    (run_dir_for(rid) / "study.json").write_text("{")
    (run_dir_for(rid) / "study.json.bak").write_text("{")
    assert main(["runs"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("│")]
    assert len(rows) == 3
    assert finished.run_id in rows[0] and "3/3" in rows[0] and "finished" in rows[0]
    assert rid in rows[1] and "unreadable" in rows[1]
    assert "interrupted" in rows[2] and "2/8" in rows[2] and "random" in rows[2]
    # a run id shortened as git shortens a commit: the one run it begins, else the runs it could be
    assert main(["show", finished.run_id[:6]]) == 0 and f"run dir: {run_dir_for(finished.run_id)}" in \
        capsys.readouterr().out
    twin = run_dir_for(finished.run_id[:6] + "zz")
    twin.mkdir()
    (twin / "study.json").write_text((run_dir_for(finished.run_id) / "study.json").read_text())
    assert main(["show", finished.run_id[:6]]) == 2
    assert f"run id '{finished.run_id[:6]}' begins 2 runs ({sorted([finished.run_id, twin.name])[0]}" in \
        capsys.readouterr().err

    assert main(["show", "nosuchrun"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) <= 2 and "no run 'nosuchrun'" in err and "mlflow.db" in err
    assert not (tmp_path / "mlflow.db").exists()


def test_relative_paths_and_modules_resolve_beside_the_recipe(tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setattr(sys, "path", list(sys.path))
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "rows.csv").write_text("w,d,err,cost\n1,1,0.5,1\n1,2,0.4,2\n2,1,0.3,3\n2,2,0.2,4\n")
    (proj / "besidemod_a.py").write_text("def fn(c):\n    return {'f': c['a']}\n")
    (proj / "table.yaml").write_text("name: t\nworkload: {name: table, path: rows.csv, params: [w, d]}\n"
                                     "objectives: {err: minimize, cost: minimize}\n"
                                     "search: {algorithm: random, budget: 4}\ntracking: false\n")
    (proj / "fn.yaml").write_text("name: f\nworkload: {name: function, function: besidemod_a:fn, space: {a: [1, 2]}}\n"
                                  "objectives: {f: minimize}\nsearch: {algorithm: random, budget: 2}\ntracking: false\n")
    other = tmp_path / "elsewhere"
    other.mkdir()
    monkeypatch.chdir(other)
    assert main(["run", "../proj/table.yaml", "-q"]) == 0
    out = capsys.readouterr().out
    assert "4 trials (0 failed" in out
    # tracking off: the front's tables and pictures are in the run directory all the same, and the run says where
    run_dir = run_dir_for(re.search(r"run id: (\w+)", out).group(1))
    assert f"plots: {run_dir / 'front.png'}, {run_dir / 'hypervolume.png'}" in out
    assert (run_dir / "front.png").read_bytes()[:4] == b"\x89PNG" and (run_dir / "hypervolume.png").stat().st_size
    assert len((run_dir / "trials.csv").read_text().splitlines()) == 5 and (run_dir / "front.csv").exists()
    assert main(["run", "../proj/fn.yaml", "-q"]) == 0
    assert "2 trials (0 failed" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["random", "nsga2", "motpe"])
def test_sparse_table_proposes_only_rows_that_exist(name, tmp_path):
    import numpy as np
    import pandas as pd

    from tradeoff.workloads.table import table_workload

    rng = np.random.default_rng(0)
    grid = [(w, d) for w in range(10) for d in range(10)]
    rows = [grid[i] for i in sorted(rng.choice(len(grid), 50, replace=False))]
    frame = pd.DataFrame([{"w": w, "d": d, "err": 1 / (1 + w + d) + 0.01 * d, "cost": w * d + w} for w, d in rows])
    wl = table_workload(frame, params=["w", "d"], metrics=["err", "cost"])
    assert wl.space.n_configs == 50
    front = tradeoff.search(wl.space, {"err": "minimize", "cost": "minimize"}, wl.evaluate, budget=40,
                            algorithm=name, tracking=None, seed=0)
    assert len(front.trials) == 40
    assert not front.failed, front.failure_counts()
    dense = table_workload(pd.DataFrame([{"w": w, "d": d, "err": w, "cost": d} for w, d in grid]), ["w", "d"])
    assert dense.space.rows is None  # a full cross product keeps today's behaviour
