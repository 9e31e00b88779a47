"""How a model workload, the recipe's targets and its objectives become one ``evaluate(config)``.

A model workload says how to build the deployable artifact for a config (``materialize``) and
how to judge its quality (its evaluators). Cost metrics come from what the recipe asks for:
``<name>_ms`` on a target (measured, or predicted where a predictor has passed its held-out
check), ``size_mb``, ``macs_m``, ``params_m``, ``bops_g`` counted from the deployed graph.
Every metric is measured on the artifact that would be deployed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .core.protocols import BuildableSpace
from .workloads import Workload

SIZE_METRICS = ("size_mb", "size_bytes")
COMPLEXITY_METRICS = ("macs_m", "params_m", "bops_g")
DEFAULT_TARGET = {"runtime": "ort", "provider": "cpu", "threads": 1, "batch": 1}


class CompositionError(ValueError):
    """A recipe asks for a metric the workload and targets cannot produce; names the field."""


@dataclass
class LatencyRequest:
    metric: str                       # e.g. latency_ms, latency_gpu_ms
    target: str                       # a key of the recipe's targets
    predictor: dict[str, Any] | None = None

    @property
    def prefix(self) -> str:
        return self.metric[: -len("_ms")]


@dataclass
class Composition:
    evaluate: Callable[[dict], dict[str, float]]
    metrics: dict[str, str]
    targets: dict[str, Any] = field(default_factory=dict)      # name -> Target
    evaluators: list = field(default_factory=list)


def cost_metrics(targets: Mapping[str, Any]) -> dict[str, str]:
    out = {m: "minimize" for m in (*SIZE_METRICS, *COMPLEXITY_METRICS)}
    out["latency_ms"] = "minimize"
    for name in targets:
        out[f"latency_{name}_ms"] = "minimize"
    return out


def latency_requests(metrics: Mapping[str, Mapping[str, Any]], targets: Mapping[str, Any]) -> list[LatencyRequest]:
    """Latency metrics asked for (by objectives and constraints), each with the target that measures it."""
    out = []
    for metric, opts in metrics.items():
        target = opts.get("target")
        if target is None and metric.startswith("latency_") and metric.endswith("_ms"):
            middle = metric[len("latency_"):-len("_ms")]
            if middle in targets:
                target = middle
            elif metric == "latency_ms":
                if len(targets) > 1:
                    raise CompositionError(f"objectives.{metric}: several targets ({', '.join(targets)}); "
                                           f"say which with target: NAME, or name the metric latency_NAME_ms")
                target = next(iter(targets)) if targets else "default"
        if target is None:
            continue
        if not metric.endswith("_ms"):
            raise CompositionError(f"objectives.{metric}: a metric measured on a target is in ms; name it {metric}_ms")
        if target != "default" and target not in targets:
            raise CompositionError(f"objectives.{metric}.target: {target!r} is not one of the recipe's targets "
                                   f"({', '.join(targets) or 'none declared'})")
        out.append(LatencyRequest(metric, target, opts.get("predictor")))
    return out


def compose(wl: Workload, metrics: Mapping[str, Mapping[str, Any]], targets: Mapping[str, Mapping[str, Any]],
            cache: Any = True) -> Composition:
    """``metrics``: every objective/constraint metric with its options (``target``, ``predictor``)."""
    if wl.materialize is None:
        if targets or any(o.get("target") for o in metrics.values()):
            raise CompositionError(f"targets: workload {wl.name} has precomputed metrics and no model to measure")
        return Composition(wl.evaluate, dict(wl.metrics))
    from .evaluators.complexity import Complexity
    from .evaluators.latency import Latency
    from .evaluators.size import Size
    from .hardware.base import make_target

    built: dict[str, Any] = {}
    requests = latency_requests(metrics, targets)
    for r in requests:
        if r.target not in built:
            spec = dict(targets.get(r.target, DEFAULT_TARGET))
            runtime = spec.pop("runtime", None)
            if runtime is None:
                raise CompositionError(f"targets.{r.target}.runtime: required")
            try:
                built[r.target] = make_target(runtime, name=r.target, cache=cache, **spec)
            except (TypeError, ValueError) as e:
                raise CompositionError(f"targets.{r.target}: {e}") from None
            problem = built[r.target].unavailable()
            if problem:
                raise CompositionError(f"targets.{r.target}.{problem}")
    evaluators: list = list(wl.evaluators)
    for r in requests:
        if r.predictor:
            evaluators.append(_predicted_latency(wl, r, built[r.target]))
        else:
            evaluators.append(Latency(built[r.target], prefix=r.prefix))
    wanted = set(metrics)
    if wanted & set(SIZE_METRICS):
        evaluators.append(Size())
    if wanted & set(COMPLEXITY_METRICS):
        evaluators.append(Complexity())
    materialize = wl.materialize

    def evaluate(config: dict) -> dict[str, float]:
        artifact = materialize(config)
        out: dict[str, float] = {}
        context = {"config": config}
        for ev in evaluators:
            out.update(ev(artifact, context))
        return out

    known = dict(wl.metrics)
    known.update(cost_metrics(targets))
    for r in requests:
        known[r.metric] = "minimize"
    return Composition(evaluate, known, built, evaluators)


PREDICTOR_OPTIONS = ("kind", "min_within_10pct", "min_kendall_tau", "train", "test", "seed")


def _predicted_latency(wl: Workload, request: LatencyRequest, target):
    """A latency predictor calibrated on this target from the workload's own architectures; the
    evaluator refuses to exist (a recipe error naming the figures) unless its held-out accuracy passes."""
    from .evaluators.predicted_latency import PredictedLatency
    from .predictors.calibration import calibrate

    opts = dict(request.predictor)
    unknown = sorted(set(opts) - set(PREDICTOR_OPTIONS))
    if unknown:
        raise CompositionError(f"objectives.{request.metric}.predictor: unknown {', '.join(unknown)}; "
                               f"allowed: {', '.join(PREDICTOR_OPTIONS)}")
    kind = opts.get("kind", "lut")
    if not isinstance(wl.space, BuildableSpace):
        raise CompositionError(f"objectives.{request.metric}.predictor: workload {wl.name} cannot build "
                               f"calibration models; measure latency instead")
    report = calibrate(target, wl.space, n_train=int(opts.get("train", 60)), n_test=int(opts.get("test", 40)),
                       seed=int(opts.get("seed", 0)), predictors=(kind,))
    return PredictedLatency(report.predictors[kind], float(opts.get("min_within_10pct", 0.95)),
                            float(opts.get("min_kendall_tau", 0.9)), metric=request.metric)


def compose_workload(wl: Workload, objectives: Mapping[str, Any], constraints: Any = None,
                     targets: Mapping[str, Mapping[str, Any]] | None = None) -> Workload:
    """The workload with the cost metrics its objectives and constraints ask for, measured on ``targets``.

    ``objectives``: metric -> direction, or -> {direction, target, predictor} as in a recipe.
    """
    import dataclasses

    metrics = {k: ({kk: vv for kk, vv in v.items() if kk != "direction" and vv is not None}
                   if isinstance(v, Mapping) else {}) for k, v in dict(objectives).items()}
    for m in _constraint_metrics(constraints):
        metrics.setdefault(m, {})
    targets = dict(targets or {})
    for name, spec in targets.items():
        if "runtime" not in spec:
            raise CompositionError(f"targets.{name}.runtime: required (one of the hardware runtimes, e.g. ort, tvm, torch)")
    comp = compose(wl, metrics, targets)
    if comp.evaluate is wl.evaluate:
        return wl
    info = dict(wl.info, targets={k: t.describe() for k, t in comp.targets.items()})
    return dataclasses.replace(wl, evaluate=comp.evaluate, metrics=comp.metrics, info=info)


def _constraint_metrics(constraints: Any) -> list[str]:
    if not constraints:
        return []
    if isinstance(constraints, Mapping):
        return list(constraints)
    return [getattr(c, "metric", None) or getattr(c, "name", None) or str(c) for c in constraints]
