"""Workloads used by tests through recipes (`workload: python: helpers.workloads:NAME`)."""

import os
import time

import numpy as np

from tradeoff.search.study import TrialError
from tradeoff.workloads import Workload, make_workload


def slow_zdt(delay: float = 0.02, n_var: int = 4, log: str | None = None, fail_above: float | None = None):
    """ZDT1 that sleeps per trial, logs every call's key to a file, and fails in one region."""
    base = make_workload("zdt1", n_var=n_var)
    space = base.space

    def evaluate(config):
        if log:
            with open(log, "a") as f:
                f.write(space.key(config) + "\n")
        time.sleep(delay)
        if fail_above is not None and config[space.names[0]] > fail_above:
            raise TrialError(f"{space.names[0]} above {fail_above}")
        return base.evaluate(config)

    return Workload("slow_zdt", space, evaluate, metrics=base.metrics, default_objectives=base.default_objectives)


def pid_workload():
    """Reports the process id, to show which process evaluated."""
    base = make_workload("zdt1", n_var=2)
    return Workload("pid", base.space, lambda c: {**base.evaluate(c), "pid": float(os.getpid())}, metrics=base.metrics)


def nan_workload():
    base = make_workload("zdt1", n_var=2)

    def evaluate(c):
        out = base.evaluate(c)
        if c["x0"] < 0.3:
            out["f1"] = float("nan")
        return out

    return Workload("nan", base.space, evaluate, metrics=base.metrics)


def rng_unused():
    return np.random.default_rng(0)
