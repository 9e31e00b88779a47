"""pymoo's test problems (ZDT1-6, DTLZ1-4) as workloads, with their exact fronts for regret."""

from __future__ import annotations

from functools import partial

import numpy as np

from ..core.options import check_whole
from ..spaces.params import Float, Mask
from ..spaces.space import Space
from . import Workload, register_workload

_DENSE = {"zdt": 5000, "dtlz": 40}


def _check(name: str, n_var: int | None, n_obj: int | None) -> None:
    """Sizes pymoo would take and then fail on (or quietly mis-shape), refused with what is allowed."""
    if name.startswith("zdt"):
        if n_obj is not None:
            raise ValueError(f"n_obj: {name} has 2 objectives; n_obj is an option of the DTLZ problems")
        if name == "zdt5" and n_var is not None:
            raise ValueError("n_var: zdt5 has a fixed genome of 80 bits; leave n_var out")
        if n_var is not None:
            check_whole("n_var", n_var, 2, f"{name} takes a number of variables")
        return
    m = 3 if n_obj is None else check_whole("n_obj", n_obj, 2, f"{name} takes a number of objectives")
    if n_var is not None:
        check_whole("n_var", n_var, m, f"{name} with {m} objectives takes a number of variables")


def _problem(name: str, n_var: int | None, n_obj: int | None):
    from pymoo.problems import get_problem

    _check(name, n_var, n_obj)
    kw = {}
    if n_var is not None:
        kw["n_var"] = n_var
    if name.startswith("dtlz"):
        kw["n_obj"] = n_obj or 3
    return get_problem(name, **kw)


def _dense_front(name: str, problem) -> np.ndarray:
    if name.startswith("zdt"):
        try:
            return problem.pareto_front(n_pareto_points=_DENSE["zdt"])
        except TypeError:
            return problem.pareto_front()
    from pymoo.util.ref_dirs import get_reference_directions

    dirs = get_reference_directions("das-dennis", problem.n_obj, n_partitions=_DENSE["dtlz"])
    return problem.pareto_front(dirs)


def make_problem(name: str, n_var: int | None = None, n_obj: int | None = None) -> Workload:
    p = _problem(name, n_var, n_obj)
    names = [f"f{i + 1}" for i in range(p.n_obj)]
    if name == "zdt5":  # binary strings: a Mask genome
        space = Space({"x": Mask(p.n_var)})

        def vector(c):
            return c["x"].astype(float).ravel()
    else:
        width = len(str(p.n_var - 1))
        keys = [f"x{i:0{width}d}" for i in range(p.n_var)]
        space = Space({k: Float(float(lo), float(hi)) for k, lo, hi in zip(keys, p.xl, p.xu)})

        def vector(c):
            return np.array([c[k] for k in keys], dtype=float)

    def evaluate(config):
        F = p.evaluate(vector(config)[None, :], return_values_of=["F"])
        return dict(zip(names, np.asarray(F, dtype=float)[0]))

    def true_front(objectives):
        front = _dense_front(name, p)
        return front[:, [names.index(o) for o in objectives]]

    return Workload(name, space, evaluate, metrics={n: "minimize" for n in names},
                    default_objectives={n: "minimize" for n in names}, true_front=true_front,
                    info={"n_var": p.n_var, "n_obj": p.n_obj})


for _n in ["zdt1", "zdt2", "zdt3", "zdt4", "zdt5", "zdt6", "dtlz1", "dtlz2", "dtlz3", "dtlz4"]:
    register_workload(_n)(partial(make_problem, _n))
