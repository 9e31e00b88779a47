"""Every registered algorithm on a space with every param kind: it completes, stays valid, records
failures, respects constraints, is deterministic by seed and resumes identically from a pickle."""

from __future__ import annotations

import math

import cloudpickle
import numpy as np
import pytest

import tradeoff
from tradeoff import Bits, Choice, Float, Int, Mask, Space, TrialError
from tradeoff.engine.algorithms.base import make_algorithm
from tradeoff.engine.objectives import Constraint, minimised, parse_objectives, violations

ALGORITHMS = [n for n in tradeoff.algorithm_names() if n not in ("ng:<Optimizer>", "ng")]  # "ng" is ng:NGOpt
ALGORITHMS += ["ng:TwoPointsDE", "ng:NGOpt"]
# GP-BO refits its models at every ask (seconds each): fewer trials, and fewer random ones first
GP = {"optuna-gp": {"n_startup_trials": 5}}
# fewer candidates for its acquisition and smaller batches: a few model fits of seconds, not minutes
CHEAP = {"botorch": {"n_candidates": 300, "initial_size": 5, "batch_size": 5}}
OBJECTIVES = {"f1": "minimize", "f2": "minimize"}
F1_BOUND = 2.0

SPACE = Space({
    "act": Choice(["relu", "gelu", "silu"]),
    "width": Choice([16, 32, 64, 128]),
    "bits": Bits((4, 8, 16, 32)),
    "depth": Int(1, 9, step=2),
    "hidden": Int(1, 1000, log=True),
    "x": Float(-1.0, 1.0),
    "lr": Float(1e-4, 1e-1, log=True),
    "mask": Mask((3, 4)),
})
TARGET_MASK = (np.arange(12).reshape(3, 4) % 3) == 0
ACT = {"relu": 0.0, "gelu": 0.3, "silu": 0.1}


def evaluate(c):
    """Two conflicting objectives, each optimum set by several params; silu fails for most x."""
    if c["act"] == "silu" and c["x"] > -0.5:
        raise TrialError("silu diverges for x > -0.5")
    m = np.asarray(c["mask"], dtype=bool)
    f1 = ((c["x"] - 0.2) ** 2 + (math.log10(c["lr"]) + 2) ** 2 / 4 + ACT[c["act"]]
          + abs(math.log2(c["width"]) - 5) / 3 + c["bits"] / 32 + np.mean(m != TARGET_MASK))
    f2 = ((c["x"] + 0.3) ** 2 + abs(math.log10(c["hidden"]) - 1) / 3 + (c["depth"] - 5) ** 2 / 16
          + (32 - c["bits"]) / 32 + m.mean())
    return {"f1": f1, "f2": f2}


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("TRADEOFF_HOME", str(tmp_path))


def _search(name, budget, seed=0, **kw):
    if name in GP:
        kw.update(algorithm_options=GP[name], batch_size=2)
    if name in CHEAP:
        kw.update(algorithm_options=CHEAP[name])
    return tradeoff.search(SPACE, OBJECTIVES, evaluate, budget=budget, algorithm=name, seed=seed,
                           tracking=None, **kw)


@pytest.mark.parametrize("name", ALGORITHMS)
def test_search_is_valid_and_handles_failures_and_constraints(name):
    budget = 12 if name in GP else 15 if name in CHEAP else 40
    front = _search(name, budget, constraints={"f1": ("<=", F1_BOUND)})
    trials = front.trials
    assert len(trials) == budget
    for t in trials:
        SPACE.validate(SPACE.from_json(t.config))
    assert len({t.key for t in trials}) == budget
    configs = [SPACE.from_json(t.config) for t in trials]
    for p in SPACE.names:  # every param is actually varied (a broken mapping pins one)
        assert len({SPACE[p].key_part(c[p]) for c in configs}) > 1, p
    failed = front.failed
    assert failed, "the failing region was never proposed"
    assert all("silu diverges" in t.reason for t in failed)
    assert trials.index(failed[0]) < budget - 1  # the search went on after a failure
    assert any(t.ok and not t.feasible for t in trials)  # the constraint binds ...
    assert front.members and all(t.feasible and t.metrics["f1"] <= F1_BOUND for t in front.members)  # ... and holds


@pytest.mark.parametrize("name", ALGORITHMS)
def test_same_seed_same_trials(name):
    budget = 8 if name in GP else 20
    runs = [[t.config for t in _search(name, budget, seed=s).trials] for s in (3, 3, 4)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def _tell(algo, configs):
    rows, viol = [], []
    cons = [] if algo.n_constraints == 0 else [Constraint("f1", "<=", F1_BOUND)]
    objs = parse_objectives(OBJECTIVES)
    for c in configs:
        try:
            m = evaluate(c)
            rows.append(minimised(objs, m))
            viol.append(violations(cons, m))
        except TrialError:
            rows.append(np.full(2, np.nan))
            viol.append(np.full(len(cons), np.inf))
    algo.tell(configs, np.array(rows), np.array(viol))


@pytest.mark.parametrize("name", ALGORITHMS)
def test_pickled_mid_search_asks_the_same(name):
    algo = make_algorithm(name, **GP.get(name, {}), **CHEAP.get(name, {}))
    algo.setup(SPACE, 2, 1, seed=5, budget=40, initial=[SPACE.default()])
    # 7: not a multiple of any natural batch; botorch: its random start, then one fit (each ask refits)
    n, rounds = (1, 7) if name in GP else (3, 2) if name in CHEAP else (7, 3)
    for _ in range(rounds):
        _tell(algo, algo.ask(n))
    if name in GP:  # past the random startup trials, so the GP itself is pickled and asked
        assert sum(t.state.name == "COMPLETE" for t in algo.study.trials) >= GP[name]["n_startup_trials"]
    clone = cloudpickle.loads(cloudpickle.dumps(algo))
    for _ in range(2):
        a, b = algo.ask(n), clone.ask(n)
        assert a and [SPACE.key(c) for c in a] == [SPACE.key(c) for c in b]
        _tell(algo, a)
        _tell(clone, b)


def test_initial_configs_are_asked_first():
    first = {**SPACE.default(), "act": "gelu", "x": 0.25, "hidden": 7}
    for name in ALGORITHMS:
        algo = make_algorithm(name)
        algo.setup(SPACE, 2, 0, seed=0, budget=40, initial=[first])
        assert SPACE.key(algo.ask(1)[0]) == SPACE.key(first), name


def _zdt1_hv(name, seed):
    from pymoo.problems import get_problem

    prob = get_problem("zdt1", n_var=6)
    space = Space({f"x{i}": Float(0.0, 1.0) for i in range(6)})

    def zdt1(c):
        f = prob.evaluate(np.array([c[f"x{i}"] for i in range(6)]))
        return {"f1": float(f[0]), "f2": float(f[1])}

    front = tradeoff.search(space, OBJECTIVES, zdt1, budget=300, algorithm=name, seed=seed, tracking=None)
    return front.hypervolume({"f1": 1.1, "f2": 10.0})


@pytest.mark.slow
def test_model_based_and_evolutionary_beat_random_on_zdt1():
    seeds = (0, 1, 2)
    hv = {n: np.median([_zdt1_hv(n, s) for s in seeds])
          for n in ("random", "nsga2", "motpe", "optuna-nsga2", "ng:TwoPointsDE")}
    for n, v in hv.items():
        if n != "random":
            assert v > hv["random"], hv


def _unused_slots_zeroed(c):  # module level: a canonical rule must pickle
    return {**c, **{f"{p}{i}": 0 for i in range(12) if i >= c["depth"] for p in "abc"}}


@pytest.mark.parametrize("algorithm", ["nsga2", "smsemoa"])
def test_pymoo_breeds_models_not_yet_asked_on_a_space_whose_configs_share_models(algorithm):
    """Slots past the depth run nothing, so many genes build one model. By genes alone a third of the
    offspring were models already asked (46 of 156 with nsga2 here); keyed by the model, none is."""
    space = Space({"depth": Int(1, 12), **{f"{p}{i}": Choice([0, 1, 2]) for i in range(12) for p in "abc"}}
                  ).with_canonical(_unused_slots_zeroed)

    def f(c):
        d = c["depth"]
        score = sum(c[f"a{i}"] + 0.5 * c[f"b{i}"] - 0.3 * c[f"c{i}"] for i in range(d))
        return [d + 0.05 * sum(c[f"b{i}"] for i in range(d)), 1.0 / (1.0 + max(score, 0) + 0.2 * d)]

    algo = make_algorithm(algorithm)
    algo.setup(space, 2, 0, seed=0, budget=100)
    keys = []
    for _ in range(500):  # a generation at a time (smsemoa's is one offspring)
        configs = algo.ask(algo.batch_size)
        keys += [space.key(c) for c in configs]
        algo.tell(configs, np.array([f(c) for c in configs]), np.zeros((len(configs), 0)))
        if len(keys) >= 150:
            break
    assert len(keys) >= 150 and len(set(keys)) == len(keys)


def test_a_pymoo_checkpoint_from_before_duplicates_by_model_still_resumes():
    """A state.pkl written before the adapter kept ``_duplicates`` unpickles and asks on (pymoo's own
    elimination, which that pickled algorithm holds, goes on)."""
    algo = make_algorithm("nsga2")
    algo.setup(SPACE, 2, 1, seed=5, budget=40)
    _tell(algo, algo.ask(algo.batch_size))
    del algo._duplicates  # as an older adapter pickled it
    old = cloudpickle.loads(cloudpickle.dumps(algo))
    configs = old.ask(algo.batch_size)
    assert configs and all(SPACE.key(c) for c in configs)
