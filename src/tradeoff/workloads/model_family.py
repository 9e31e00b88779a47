"""A timm-family space: which model and its constructor arguments, each candidate trained under a step budget.

The user declares timm model names and, per model, constructor arguments: a list is a choice, a
scalar is fixed. The space is ``model`` (a choice of names) plus each model's choices flattened as
``<model>.<arg>``; the arguments of the models not chosen are ignored, and the trial records the
kwargs it was built with (``ctor``). Every declared model is built once with the first choice of
each argument when the workload is made, so an unknown name or an argument the model rejects is
refused up front, naming the field.

Multi-fidelity: a candidate is trained from scratch (seeded, one cosine schedule over the top of
the ``steps`` ladder) and its held-out accuracy is read at each rung (``accuracy_at_<steps>``,
torch). With ``early_stop`` a candidate whose accuracy at a rung is below ``early_stop`` times the
best seen at that rung stops there: it is kept as a feasible trial whose ``accuracy`` is that of
the model it reached (``early_stopped`` 1, ``train_steps`` the rung), so the front stays honest
and a predictor still learns from it. ``accuracy`` itself is scored on the exported ONNX bytes by
an ONNX Runtime session; the recipe's targets add latency and size on the same bytes. Trained
weights are cached on disk by model, kwargs, ladder, ``early_stop``, seed and data split, so a resumed
or repeated search never trains a candidate twice (a candidate stopped early stays stopped at its rung
for that key; early stopping depends on the order candidates came in).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..core.options import check_positive, check_whole
from ..spaces.params import Choice
from ..spaces.space import Config, Space
from . import Workload, evaluate_on_artifact, register_workload

# trains in seconds per candidate on one CPU thread, on digits at 16x16
DEFAULT_MODELS: dict[str, dict[str, Any]] = {
    "test_resnet": {"drop_rate": [0.0, 0.2]},
    "test_efficientnet": {"drop_rate": [0.0, 0.2]},
    "test_vit": {"img_size": 16, "patch_size": [4, 8], "depth": [1, 2], "embed_dim": [32, 64]},
}


MAX_ROWS = 100_000   # beyond this many canonical configs the space keys configs by their model instead


def _choices(v: Any) -> list:
    return list(v) if isinstance(v, (list, tuple)) else [v]


def family_space(models: Mapping[str, Mapping[str, Any]]) -> Space:
    """``model`` plus every declared argument with more than one choice, as ``<model>.<arg>``."""
    params: dict[str, Any] = {"model": Choice(list(models), ordered=False)}
    for m, args in models.items():
        for a, v in args.items():
            if len(_choices(v)) > 1:
                params[f"{m}.{a}"] = Choice(_choices(v))
    owner = {f"{m}.{a}": m for m, args in models.items() for a, v in args.items() if len(_choices(v)) > 1}
    # the arguments of the models not chosen change nothing: configs are keyed by the model they build
    # (those arguments at their first choice), so a search never asks for one model twice under two names
    space = Space(params).with_canonical(UnchosenArgs(owner, Space(params).default()))
    rows: list[Config] = []   # and, when few enough, only those canonical configs exist (sampling stays on them)
    for m, args in models.items():
        free = [(f"{m}.{a}", _choices(v)) for a, v in args.items() if len(_choices(v)) > 1]
        for combo in itertools.product(*(c for _, c in free)):
            row = {**space.default(), "model": m}
            row.update({k: c for (k, _), c in zip(free, combo, strict=True)})
            rows.append(row)
            if len(rows) > MAX_ROWS:
                return space
    return space.with_rows(rows)


class UnchosenArgs:
    """A family config with the arguments of the models it does not build at their defaults."""

    def __init__(self, owner: Mapping[str, str], default: Config):
        self.owner, self.default = dict(owner), dict(default)

    def __call__(self, config: Config) -> Config:
        m = config["model"]
        return {k: (self.default[k] if self.owner.get(k, m) != m else v) for k, v in config.items()}


def ctor_kwargs(models: Mapping[str, Mapping[str, Any]], config: Config) -> tuple[str, dict[str, Any]]:
    """The chosen model and the kwargs it is built with (fixed ones, then this config's choices)."""
    m = config["model"]
    kw = {a: (config.get(f"{m}.{a}", _choices(v)[0]) if len(_choices(v)) > 1 else _choices(v)[0])
          for a, v in models[m].items()}
    return m, kw


def build(name: str, kwargs: Mapping[str, Any]):
    import timm

    return timm.create_model(name, pretrained=False, num_classes=10, in_chans=1, **kwargs)


def _step_seconds(model, x: np.ndarray, batch: int) -> float:
    """One training step's wall-clock seconds (forward + backward), for the declared cost of a trial."""
    import torch

    xb = torch.from_numpy(x[:batch])
    model.train()
    t0 = time.perf_counter()
    model(xb).sum().backward()
    return time.perf_counter() - t0


def check_models(models: Mapping[str, Mapping[str, Any]], x: np.ndarray, batch: int) -> dict[str, float]:
    """Build each model once with its first choices and run one step; ValueError names the bad field."""
    import timm
    import torch

    seconds: dict[str, float] = {}
    for m, args in models.items():
        if not isinstance(args, Mapping):
            raise ValueError(f"models.{m}: give a mapping of constructor arguments (a list is a choice), "
                             f"got {type(args).__name__}")
        if not timm.is_model(m):
            raise ValueError(f"models.{m}: not a timm model name; allowed: any of timm.list_models(), "
                             f"e.g. {', '.join(DEFAULT_MODELS)}")
        for a, v in args.items():
            if isinstance(v, (list, tuple)) and not v:
                raise ValueError(f"models.{m}.{a}: an empty list of choices; give at least one value")
        kw = {a: _choices(v)[0] for a, v in args.items()}
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            seconds[m] = _step_seconds(build(m, kw), x, batch)
        except Exception as e:  # timm raises TypeError, ValueError, RuntimeError for bad kwargs or shapes
            msg = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
            raise ValueError(f"models.{m}: timm.create_model({m!r}, **{kw}) on a {tuple(x.shape[1:])} input "
                             f"failed: {msg}") from None
        finally:
            torch.set_num_threads(threads)
    return seconds


def _train_ladder(model, x, y, xv, yv, ladder: Sequence[int], seed: int, lr: float, batch: int,
                  stop_at: Any) -> tuple[Any, dict[int, float], int | None]:
    """Train to the top rung on one cosine schedule, reading accuracy at each rung; ``stop_at(rung, acc)``."""
    import torch

    from .models import accuracy

    g = torch.Generator().manual_seed(seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, ladder[-1]))
    loss_fn = torch.nn.CrossEntropyLoss()
    rungs: dict[int, float] = {}
    done = 0
    for rung in ladder:
        model.train()
        for _ in range(rung - done):
            idx = torch.randint(0, len(xt), (batch,), generator=g)
            opt.zero_grad()
            loss_fn(model(xt[idx]), yt[idx]).backward()
            opt.step()
            sched.step()
        done = rung
        rungs[rung] = accuracy(model.eval(), xv, yv)
        if rung != ladder[-1] and stop_at(rung, rungs[rung]):
            return model.eval(), rungs, rung
    return model.eval(), rungs, None


@register_workload("timm_family")
def timm_family(models: Mapping[str, Mapping[str, Any]] | None = None, steps: Sequence[int] | int = (25, 50, 100),
                early_stop: float | None = None, hw: int = 16, lr: float = 3e-3, batch: int = 64,
                seed: int = 0) -> Workload:
    """Search timm model names and their constructor arguments, each trained under a step budget.

    ``models``: {timm name: {arg: value or [choices]}} (default: three tiny test_* models);
    ``steps``: the fidelity ladder (ascending step budgets, the last is the full budget);
    ``early_stop``: stop a candidate at a rung where its accuracy is below this fraction of the
    best seen at that rung (null: train every candidate to the top); ``hw``: digits image side.
    """
    import torch

    from ..evaluators.accuracy import Accuracy
    from .compression import record_metrics
    from .models import _cached, cached_meta, digits_data

    models = {str(k): dict(v or {}) if isinstance(v, Mapping) else v for k, v in (models or DEFAULT_MODELS).items()}
    if not models:
        raise ValueError("models: declare at least one timm model name")
    ladder = sorted({int(s) for s in _choices(steps)})
    if not ladder or ladder[0] < 1:
        raise ValueError(f"steps: {steps!r}; allowed: one or more positive step budgets, e.g. [25, 50, 100]")
    if early_stop is not None and not 0 < float(early_stop) < 1:
        raise ValueError(f"early_stop: {early_stop}; allowed: a fraction in (0, 1) of the best accuracy at a rung, "
                         f"or null")
    check_whole("hw", hw, 8, "the digits image side (they are 8 x 8)")
    check_whole("batch", batch, 1, "images per training step")
    check_positive("lr", lr, "a learning rate")
    check_whole("seed", seed, 0, "a random seed")
    data = digits_data(int(hw), seed=0)
    x, y, xv, yv = data["x"], data["y"], data["x_val"], data["y_val"]
    step_s = check_models(models, x, int(batch))
    space = family_space(models)
    best: dict[int, float] = {}   # best accuracy seen at each rung (this process), for early stopping
    version = torch.__version__.split("+")[0]

    def stop_at(rung: int, acc: float) -> bool:
        stop = early_stop is not None and rung in best and acc < float(early_stop) * best[rung]
        best[rung] = max(best.get(rung, 0.0), acc)
        return stop

    def trained(name: str, kw: dict[str, Any]):
        """The candidate trained under the ladder, from the on-disk cache when it was trained before."""
        key = {"name": f"timm_family:{name}", "kwargs": kw, "ladder": ladder, "early_stop": early_stop,
               "seed": int(seed), "lr": lr,
               "batch": int(batch), "split": data["split"], "torch": version}

        def fit(net):
            t0 = time.perf_counter()
            net, rungs, stopped = _train_ladder(net, x, y, xv, yv, ladder, int(seed), lr, int(batch), stop_at)
            return net, {"rungs": {str(r): a for r, a in rungs.items()}, "stopped_at": stopped,
                         "train_s": time.perf_counter() - t0}

        net, path, now = _cached(key, lambda: build(name, kw), fit)
        meta = {**cached_meta(path), "cache": path.name}
        if not now:
            for r, a in meta["rungs"].items():   # what this run knows of each rung, for early stopping
                best[int(r)] = max(best.get(int(r), 0.0), float(a))
        return net, meta, now

    def materialize(config: Config):
        from ..evaluators import TrialError
        from ..hardware.base import Artifact, TargetError, export_onnx

        config = space.validate(config)
        name, kw = ctor_kwargs(models, config)
        try:
            net, meta, now = trained(name, kw)
        except Exception as e:
            raise TrialError(f"build/train {name}: {str(e).strip().splitlines()[0][:300]}") from None
        example = (torch.from_numpy(xv[:1]).clone(),)
        try:
            blob = export_onnx(net, example)
        except TargetError as e:
            raise TrialError(f"export {name}: {e}") from None
        stopped = meta["stopped_at"]
        record: dict[str, Any] = {f"accuracy_at_{r}": a for r, a in meta["rungs"].items()}
        record.update(train_steps=stopped or ladder[-1], train_s=meta["train_s"] if now else 0.0,
                      early_stopped=int(stopped is not None),
                      params=sum(p.numel() for p in net.parameters()), trained_now=int(now),
                      model_index=list(models).index(name))
        # the kwargs the model was built with (numbers as metrics; all of them in the artifact's meta)
        record.update({f"ctor.{a}": float(v) for a, v in kw.items()
                       if isinstance(v, (int, float)) and not isinstance(v, bool)})
        return Artifact(f"timm_family-{space.key(config)}", example, module=net, onnx=blob,
                        meta={"compression": record, "ctor": dict(kw, model=name), "cache": meta["cache"]})

    acc = Accuracy(xv, yv, split=data["split"])
    evaluators = [acc, record_metrics]

    evaluate = evaluate_on_artifact(materialize, evaluators)

    # the cost of a trial as the predictor loop sees it: one step of the median model times the full budget
    per_trial = float(np.median(list(step_s.values()))) * ladder[-1]
    info = {"models": {m: dict(a) for m, a in models.items()}, "steps": ladder, "early_stop": early_stop,
            "val_split": data["split"], "val_n": int(len(yv)), "train_n": int(len(y)),
            "seconds_per_trial": float(f"{per_trial:.4g}"),
            "seconds_per_trial_how": f"one training step per model at batch {batch}, median, x {ladder[-1]} steps"}
    return Workload("timm_family", space, evaluate, metrics={"accuracy": "maximize"},
                    default_objectives={"accuracy": "maximize", "latency_ms": "minimize"}, info=info,
                    materialize=materialize, evaluators=evaluators)
