"""Apply a caching schedule to an unmodified diffusers transformer with ``diffusers.hooks``, and remove it.

Each cacheable component (``attn1``, ``attn2``, ``ff``; FLUX's ``attn``, ``ff_context``, ``proj_mlp``,
``proj_out``) gets a hook. On a reuse bit it returns its cached raw output (the module's own
output, before the block applies its adaLN gate), so norms, gates and residuals still run.

The step index comes from the scheduler loop: ``scheduler.set_timesteps`` starts a run at step 0
and every ``scheduler.step`` moves to the next. Without a scheduler, a change of the model's
``timestep`` input moves to the next step (a larger one starts a new run). Calls within one step
(separate conditional / unconditional passes) each keep their own cache slot; a batched
``[uncond, cond]`` call keeps both branches in its rows. A cache entry is used only for a call of
the same batch layout (its shape), so one cached run never leaks into a run of another layout.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from diffusers.hooks import HookRegistry, ModelHook

from .cache import CacheLayout, layout_of, schedule_of

HOOK = "tradeoff_cache"


@dataclass
class CacheState:
    """Where the sampler is (step, call within the step) and what the hooks did."""

    schedule: np.ndarray
    step: int = 0
    slot: int = -1
    last_t: float | None = None
    by_scheduler: bool = False
    computed: int = 0
    reused: int = 0
    caches: list = field(default_factory=list)

    def new_run(self) -> None:
        self.step, self.slot, self.last_t = 0, -1, None
        for c in self.caches:
            c.clear()

    def begin_call(self, timestep: Any) -> None:
        t = _first(timestep)
        if not self.by_scheduler and t is not None and self.last_t is not None and t != self.last_t:
            if t > self.last_t:
                self.new_run()
            else:
                self.step, self.slot = self.step + 1, -1
        self.last_t = t
        self.slot += 1

    def recompute(self, b: int, c: int) -> bool:
        if self.step == 0:
            return True
        if self.step >= self.schedule.shape[0]:
            raise ValueError(f"schedule has {self.schedule.shape[0]} steps; the sampler is at step {self.step} "
                             f"(resample it with tradeoff.spaces.cache.resample_steps)")
        return bool(self.schedule[self.step, b, c])


def _first(timestep: Any) -> float | None:
    if timestep is None:
        return None
    if isinstance(timestep, torch.Tensor):
        return float(timestep.reshape(-1)[0]) if timestep.numel() else None
    return float(timestep)


def _shape(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return tuple(x.shape)
    if isinstance(x, (tuple, list)):
        return tuple(_shape(v) for v in x)
    return None


class _ComponentHook(ModelHook):
    """Recompute or return the cached output of one component, as the schedule says for this step."""

    def __init__(self, state: CacheState, b: int, c: int):
        super().__init__()
        self.state, self.b, self.c = state, b, c
        self.cache: dict[int, tuple[Any, Any]] = {}
        state.caches.append(self.cache)

    def new_forward(self, module: torch.nn.Module, *args, **kwargs):
        st = self.state
        key = (st.slot, _shape(args[0]) if args else _shape(next(iter(kwargs.values()), None)))
        hit = self.cache.get(key[0])
        if hit is not None and hit[0] == key[1] and not st.recompute(self.b, self.c):
            st.reused += 1
            return hit[1]
        out = self.fn_ref.original_forward(*args, **kwargs)
        self.cache[key[0]] = (key[1], out)
        st.computed += 1
        return out


class _StepHook(ModelHook):
    """On the transformer itself: note each call, and where the sampler is."""

    def __init__(self, state: CacheState, module: torch.nn.Module):
        super().__init__()
        self.state = state
        names = list(inspect.signature(module.forward).parameters)
        self.at = names.index("timestep") if "timestep" in names else None

    def pre_forward(self, module, *args, **kwargs):
        t = kwargs.get("timestep")
        if t is None and self.at is not None and len(args) > self.at:
            t = args[self.at]
        self.state.begin_call(t)
        return args, kwargs


@dataclass
class CacheHandle:
    """An applied schedule: ``.state`` holds the counts; ``.remove()`` restores the model exactly."""

    model: torch.nn.Module
    layout: CacheLayout
    state: CacheState
    scheduler: Any = None
    _modules: list = field(default_factory=list)
    _had_registry: dict = field(default_factory=dict)
    _had_forward: dict = field(default_factory=dict)
    _scheduler_patched: bool = False

    def remove(self) -> None:
        for m in self._modules:
            reg = getattr(m, "_diffusers_hook", None)
            if reg is not None:
                reg.remove_hook(HOOK, recurse=False)
                if not self._had_registry[id(m)] and not reg.hooks:
                    del m._diffusers_hook
            if not self._had_forward[id(m)] and "forward" in m.__dict__:
                del m.__dict__["forward"]
        self._modules.clear()
        if self._scheduler_patched:
            for name in ("step", "set_timesteps"):
                self.scheduler.__dict__.pop(name, None)
            self._scheduler_patched = False
        for c in self.state.caches:
            c.clear()


def _attach(module: torch.nn.Module, hook: ModelHook, handle: CacheHandle) -> None:
    handle._had_registry[id(module)] = hasattr(module, "_diffusers_hook")
    handle._had_forward[id(module)] = "forward" in module.__dict__
    HookRegistry.check_if_exists_or_initialize(module).register_hook(hook, HOOK)
    handle._modules.append(module)


def _patch_scheduler(scheduler: Any, state: CacheState) -> bool:
    if scheduler is None or not callable(getattr(scheduler, "step", None)):
        return False
    step, set_timesteps = scheduler.step, scheduler.set_timesteps

    def patched_step(*args, **kwargs):
        out = step(*args, **kwargs)
        state.step, state.slot = state.step + 1, -1
        return out

    def patched_set_timesteps(*args, **kwargs):
        state.new_run()
        return set_timesteps(*args, **kwargs)

    scheduler.step, scheduler.set_timesteps = patched_step, patched_set_timesteps
    return True


def apply_schedule(model: Any, schedule: Any, layout: CacheLayout | None = None, scheduler: Any = None) -> CacheHandle:
    """Hook ``schedule`` (config or steps x blocks x components mask, True = recompute) onto the model.

    ``model`` is a transformer or a pipeline (its ``transformer`` and ``scheduler`` are used).
    """
    if scheduler is None:
        scheduler = getattr(model, "scheduler", None)
    transformer = getattr(model, "transformer", model)
    layout = layout or layout_of(transformer)
    sched = schedule_of(schedule, layout)
    if sched.shape[1:] != layout.shape(1)[1:]:
        raise ValueError(f"schedule: shape {sched.shape} does not fit this model "
                         f"(steps x {layout.n_blocks} blocks x {layout.n_components} components)")
    if getattr(transformer, "_diffusers_hook", None) is not None and HOOK in transformer._diffusers_hook.hooks:
        raise ValueError("a caching schedule is already applied to this model; remove it first")
    state = CacheState(sched)
    handle = CacheHandle(transformer, layout, state, scheduler)
    try:
        for b, c, path in layout.modules():
            _attach(transformer.get_submodule(path), _ComponentHook(state, b, c), handle)
        _attach(transformer, _StepHook(state, transformer), handle)
        handle._scheduler_patched = state.by_scheduler = _patch_scheduler(scheduler, state)
    except Exception:
        handle.remove()
        raise
    return handle


@contextlib.contextmanager
def cached(pipe_or_model: Any, schedule: Any, layout: CacheLayout | None = None,
           scheduler: Any = None) -> Iterator[CacheHandle]:
    """``with cached(pipe, schedule): pipe(...)`` runs the pipeline with the schedule; the model is restored after."""
    handle = apply_schedule(pipe_or_model, schedule, layout, scheduler)
    try:
        yield handle
    finally:
        handle.remove()
