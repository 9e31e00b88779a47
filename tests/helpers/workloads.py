"""Workloads used by tests through recipes (`workload: python: helpers.workloads:NAME`)."""

import os
import time

import numpy as np

from tradeoff.engine.study import TrialError
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


def tiny_models(bad_width: int = 24):
    """Model workload: tiny MLPs; the ``bad_width`` choice yields an ONNX file no runtime accepts."""
    import torch

    from tradeoff import Choice, Space
    from tradeoff.hardware.base import Artifact

    space = Space({"width": Choice([8, 16, bad_width, 64]), "depth": Choice([1, 2])})

    def materialize(config):
        if config["width"] == bad_width:
            return Artifact(f"broken-{config['depth']}", (torch.zeros(1, 16),), onnx=b"not an onnx model")
        torch.manual_seed(0)
        layers, w = [], 16
        for _ in range(config["depth"]):
            layers += [torch.nn.Linear(w, config["width"]), torch.nn.ReLU()]
            w = config["width"]
        return Artifact(f"mlp-{config['width']}-{config['depth']}", (torch.zeros(1, 16),),
                        module=torch.nn.Sequential(*layers).eval())

    return Workload("tiny_models", space, lambda c: {}, metrics={"width_metric": "maximize"},
                    materialize=materialize,
                    evaluators=[lambda art, ctx: {"width_metric": float(ctx["config"]["width"])}])


def toy_metrics(config):
    """For the `function` workload: a config dict in, metrics out."""
    if config["act"] == "tanh" and config["depth"] > 6:
        raise RuntimeError("diverged")
    return {"error": 1.0 / (config["depth"] * config["width"]) + config["lr"], "cost": config["depth"] * config["width"]}
