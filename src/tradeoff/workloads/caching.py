"""Caching schedules of a diffusion pipeline as a workload: quality against the full-compute images, and cost.

The calibration set is every prompt with every seed (as ECAD does). Each trial samples it with
the schedule hooked onto the unmodified transformer and reports ``psnr_db`` and ``ssim`` against
the full-compute images of the same prompts and seeds, ``mac_speedup`` (MACs counted with the
skipped components removed), the measured wall-clock ``speedup`` of the sampling run, and, with a
classifier, ``frechet`` and ``class_consistency``. The full-compute schedule is the reference, not
a candidate: it fails as a trial, which keeps the search away from it.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.options import check_whole
from ..core.registry import import_from
from ..core.trial import TrialError
from ..spaces.cache import (
    PARAM,
    cache_space,
    component_macs,
    is_full_compute,
    layout_of,
    mac_fraction,
)
from ..spaces.cache_named import named_schedules
from . import Workload, register_workload

if TYPE_CHECKING:
    import torch

METRICS = {"psnr_db": "maximize", "ssim": "maximize", "mac_speedup": "maximize", "speedup": "maximize",
           "frechet": "minimize", "class_consistency": "maximize", "reuse_fraction": "maximize"}


def sampler_for(pipe: Any) -> Callable[[list, list, int], torch.Tensor]:
    """``fn(prompts, seeds, steps) -> images N x C x H x W in [-1, 1]`` for a diffusers pipeline or our own sampler."""
    import torch
    from diffusers import DiffusionPipeline

    if not isinstance(pipe, DiffusionPipeline):
        return lambda prompts, seeds, steps: pipe(prompts, seeds, steps)
    params = inspect.signature(pipe.__call__).parameters
    key = "class_labels" if "class_labels" in params else "prompt"

    def run(prompts, seeds, steps):
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        out = pipe(**{key: list(prompts)}, generator=gens, num_inference_steps=steps, output_type="np").images
        return torch.as_tensor(np.asarray(out)).permute(0, 3, 1, 2).float() * 2 - 1

    return run


def _first_call(transformer: torch.nn.Module, run: Callable[[], Any]) -> tuple[tuple, dict]:
    """The arguments of the transformer's first call while ``run()`` samples (to count one call's MACs)."""
    seen: list = []

    def grab(module, args, kwargs):
        if not seen:
            seen.append((args, dict(kwargs)))

    h = transformer.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        run()
    finally:
        h.remove()
    return seen[0]


def caching(pipe: Any, prompts: Sequence[Any], seeds: Sequence[int] = (0, 1, 2), steps: int = 20, *,
            classifier: torch.nn.Module | None = None, real_images: torch.Tensor | None = None,
            labels: Sequence[int] | None = None, timing_repeats: int = 3, name: str = "caching",
            threads: int | None = None) -> Workload:
    """The caching-schedule workload of ``pipe``: search it with ``tradeoff.search(workload, objectives, ...)``.

    ``pipe`` is a diffusers pipeline (PixArt-α/Σ, DiT, FLUX: its ``transformer`` and ``scheduler`` are
    hooked) or any sampler ``pipe(prompts, seeds, steps) -> images`` with those two attributes.
    ``classifier`` (with ``features``) and ``real_images`` add the distribution metrics.
    """
    import torch

    from ..evaluators.image import (  # torch, torchmetrics, diffusers load on first use
        Distribution,
        psnr_db,
        ssim,
    )
    from ..spaces.cache_hooks import cached

    if not prompts or not seeds:
        raise ValueError("prompts and seeds: give at least one of each (the calibration set is prompts x seeds)")
    if threads:
        torch.set_num_threads(threads)
    transformer = getattr(pipe, "transformer", None)
    if transformer is None:
        raise ValueError(f"pipe: {type(pipe).__name__} has no .transformer to hook")
    layout = layout_of(transformer)
    space = cache_space(layout, steps)
    all_prompts = [p for p in prompts for _ in seeds]
    all_seeds = [s for _ in prompts for s in seeds]
    sample = sampler_for(pipe)

    def run() -> torch.Tensor:
        with torch.no_grad():
            return sample(all_prompts, all_seeds, steps)

    args, kwargs = _first_call(transformer, run)
    with torch.no_grad():
        per, other = component_macs(transformer, layout, lambda: transformer(*args, **kwargs))
    times, reference = [], None
    for _ in range(max(1, timing_repeats)):
        t0 = time.perf_counter()
        reference = run()
        times.append(time.perf_counter() - t0)
    full_s = min(times)  # the least disturbed run: load on the machine only ever adds time
    dist = Distribution(classifier, real_images) if classifier is not None and real_images is not None else None
    class_labels = list(labels) if labels is not None else ([int(p) for p in all_prompts] if dist else None)

    def evaluate(config: dict) -> dict[str, float]:
        config = space.validate(config)
        schedule = config[PARAM]
        if is_full_compute(schedule, layout):
            raise TrialError("the full-compute schedule is the reference; a caching schedule must reuse something")
        t0 = time.perf_counter()
        with cached(pipe, schedule, layout) as handle:
            images = run()
        elapsed = time.perf_counter() - t0
        st = handle.state
        out = {"psnr_db": psnr_db(images, reference), "ssim": ssim(images, reference),
               "mac_speedup": 1.0 / mac_fraction(schedule, per, other), "speedup": full_s / elapsed,
               "reuse_fraction": st.reused / max(st.reused + st.computed, 1)}
        if dist is not None:
            out.update(dist(images, class_labels))
        return out

    baselines = {k: {PARAM: v} for k, v in named_schedules(layout, steps, "baselines").items()}
    info = {"steps": steps, "prompts": len(prompts), "seeds": len(seeds), "blocks": layout.n_blocks,
            "components": list(layout.component_names), "full_compute_s": full_s,
            "macs_per_call": float(per.sum() + other), "model": type(transformer).__name__}
    wl = Workload(name, space, evaluate, metrics=dict(METRICS),
                  default_objectives={"psnr_db": "maximize", "mac_speedup": "maximize"},
                  info=info, baselines=baselines)
    # the sampler and its full-compute images, for benches and pictures (not logged: not JSON)
    wl.reference = reference  # type: ignore[attr-defined]
    wl.layout = layout        # type: ignore[attr-defined]
    wl.pipe = pipe            # type: ignore[attr-defined]
    wl.run = run              # type: ignore[attr-defined]
    return wl


def seeds_for(wl: Workload, family: str = "all") -> list[dict]:
    """The named schedules as initial configs for the search (ECAD seeds its population this way)."""
    return [{PARAM: s} for s in named_schedules(wl.layout, wl.info["steps"], family).values()
            if not is_full_compute(s, wl.layout)]


def _prompts_from(prompts: Any) -> list:
    if isinstance(prompts, (str, Path)) and Path(prompts).exists():
        return [line.strip() for line in Path(prompts).read_text().splitlines() if line.strip()]
    if isinstance(prompts, str):
        raise ValueError(f"prompts: {prompts!r} is not a file (one prompt a line) nor a list")
    return list(prompts)


@register_workload("caching")
def make_caching_workload(pipeline: str = "tiny_pixart", prompts: Any = None, seeds: Sequence[int] = (0, 1, 2, 3),
                          steps: int = 20, train_steps: int | None = None, timing_repeats: int = 3,
                          threads: int | None = 1) -> Workload:
    """``pipeline: tiny_pixart`` (the built-in digits test bed) or ``python: pkg.module:make_pipe``.

    ``threads``: torch's CPU threads (1 by default: small models lose more to thread hand-offs than they gain).
    """
    check_whole("steps", steps, 2, "caching needs denoising steps to reuse across")   # before any training
    check_whole("timing_repeats", timing_repeats, 1, "full-compute samplings timed")
    if threads:
        import torch

        torch.set_num_threads(check_whole("threads", threads, 1, "torch's CPU threads"))
    if pipeline == "tiny_pixart":
        from .tiny_pixart import BedSpec, digits, load_test_bed

        spec = BedSpec() if train_steps is None else \
            BedSpec(train_steps=check_whole("train_steps", train_steps, 1, "the test bed's training steps"))
        bed = load_test_bed(spec, log=None)
        real, _ = digits("test")
        return caching(bed.pipe, _prompts_from(prompts) if prompts is not None else list(range(10)), list(seeds),
                       steps, classifier=bed.classifier, real_images=real, timing_repeats=timing_repeats,
                       name="caching:tiny_pixart")
    if not pipeline.startswith("python:"):
        raise ValueError(f"pipeline: {pipeline!r} is not tiny_pixart nor python: module:function")
    if train_steps is not None:
        raise ValueError("train_steps: only for pipeline: tiny_pixart")
    if prompts is None:
        raise ValueError("prompts: required for a user's pipeline (a list, or a file with one prompt a line)")
    pipe = import_from(pipeline[len("python:"):])()
    return caching(pipe, _prompts_from(prompts), list(seeds), steps, timing_repeats=timing_repeats,
                   name=f"caching:{pipeline.split(':')[-1]}")
