"""Diffusion feature-caching schedules (ECAD): which component of which block to recompute at which step.

A schedule is a ``Mask`` of shape ``steps x blocks x components`` read from the model. Polarity is
explicit and fixed: ``True`` = recompute, ``False`` = reuse the component's output from the last
step that computed it. Step 0 always computes (nothing is cached yet), whatever its bits say.
Applying a schedule to a model is in :mod:`tradeoff.spaces.cache_hooks`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .params import Mask
from .space import Space

RECOMPUTE, REUSE = True, False
# block lists of diffusers transformers, and the components of their blocks that can be cached
BLOCK_LISTS = ("transformer_blocks", "single_transformer_blocks")
COMPONENTS = ("attn1", "attn2", "attn", "ff", "ff_context", "proj_mlp", "proj_out")
PARAM = "schedule"


@dataclass(frozen=True)
class CacheLayout:
    """Where the cacheable components sit: one ``(block path, component names)`` per block."""

    blocks: tuple[tuple[str, tuple[str, ...]], ...]

    @property
    def n_blocks(self) -> int:
        return len(self.blocks)

    @property
    def n_components(self) -> int:
        return max(len(c) for _, c in self.blocks)

    @property
    def component_names(self) -> tuple[str, ...]:
        """The component axis names when every block has the same components, else ``c0, c1, ...``."""
        names = {c for _, c in self.blocks}
        return next(iter(names)) if len(names) == 1 else tuple(f"c{i}" for i in range(self.n_components))

    def modules(self):
        """(block index, component index, dotted module path) of every cacheable component."""
        for b, (path, comps) in enumerate(self.blocks):
            for c, name in enumerate(comps):
                yield b, c, f"{path}.{name}"

    def shape(self, steps: int) -> tuple[int, int, int]:
        return (int(steps), self.n_blocks, self.n_components)

    def present(self, steps: int) -> np.ndarray:
        """Which mask positions name a real component (a block with fewer components pads with False)."""
        out = np.zeros(self.shape(steps), dtype=bool)
        for b, (_, comps) in enumerate(self.blocks):
            out[:, b, : len(comps)] = True
        return out


def layout_of(model: Any) -> CacheLayout:
    """The cacheable components of a diffusers transformer (PixArt, DiT, FLUX, ...), read from the model."""
    model = getattr(model, "transformer", model)
    blocks = []
    for attr in BLOCK_LISTS:
        for i, block in enumerate(getattr(model, attr, None) or []):
            comps = tuple(c for c in COMPONENTS if getattr(block, c, None) is not None)
            if comps:
                blocks.append((f"{attr}.{i}", comps))
    if not blocks:
        raise ValueError(f"{type(model).__name__}: no blocks with cacheable components "
                         f"(looked for {', '.join(BLOCK_LISTS)} holding {', '.join(COMPONENTS)})")
    return CacheLayout(tuple(blocks))


def cache_space(model_or_layout: Any, steps: int) -> Space:
    """The search space of caching schedules for ``model`` sampled with ``steps`` denoising steps."""
    layout = model_or_layout if isinstance(model_or_layout, CacheLayout) else layout_of(model_or_layout)
    if int(steps) < 2:
        raise ValueError(f"steps: caching needs at least 2 denoising steps, got {steps}")
    return Space({PARAM: Mask(layout.shape(steps), p=0.5)})


def schedule_of(config: Any, layout: CacheLayout | None = None) -> np.ndarray:
    """A config (``{"schedule": mask}``, as a trial stores it too) or a bare mask to a bool array (True = recompute).

    A bit string (a trial's JSON form) needs the ``layout`` to recover the steps x blocks x components shape.
    """
    mask = config[PARAM] if isinstance(config, Mapping) else config
    if isinstance(mask, str):
        if layout is None or set(mask) - {"0", "1"} or len(mask) % (layout.n_blocks * layout.n_components):
            raise ValueError("schedule: a bit string needs the model's layout and a length of steps x blocks x components")
        return np.frombuffer(mask.encode(), dtype=np.uint8).reshape(-1, layout.n_blocks, layout.n_components) == ord("1")
    arr = np.asarray(mask)
    if arr.ndim != 3:
        raise ValueError(f"schedule: a steps x blocks x components mask, got shape {arr.shape}")
    return arr.astype(bool)


def effective(schedule: np.ndarray, layout: CacheLayout | None = None) -> np.ndarray:
    """What runs: step 0 always computes, and padding positions never do."""
    out = np.array(schedule, dtype=bool, copy=True)
    out[0] = True
    if layout is not None:
        out &= layout.present(out.shape[0])
    return out


def is_full_compute(schedule: np.ndarray, layout: CacheLayout | None = None) -> bool:
    eff = effective(schedule, layout)
    return bool(eff[layout.present(eff.shape[0])].all() if layout is not None else eff.all())


def resample_steps(schedule: np.ndarray, steps: int, method: str = "rhythm") -> np.ndarray:
    """A schedule for another step count.

    ``"rhythm"`` (the default) keeps each component's local share of recomputed steps: new step
    ``i`` takes the share of the old steps it covers (two old steps when upsampling), and error
    diffusion along the step axis turns shares into bits, so FORA every N stays every N steps at
    any step count and the MAC fraction is kept. ``"nearest"`` copies the bits of the nearest old
    step, which breaks every-N patterns when the step count shrinks.
    """
    s = schedule_of(schedule)
    old = s.shape[0]
    if steps < 1:
        raise ValueError(f"steps: at least 1, got {steps}")
    if method == "nearest":
        idx = np.clip(np.rint(np.arange(steps) * (old - 1) / max(steps - 1, 1)).astype(int), 0, old - 1)
        out = s[idx].copy()
    elif method == "rhythm":
        share = np.empty((steps, *s.shape[1:]))
        edges = np.arange(steps + 1) * old / steps
        for i in range(steps):
            a, b = edges[i], edges[i + 1]
            if b - a < 1.0:  # upsampling: the share over two old steps around the new one keeps every-N rhythms
                mid = (a + b) / 2
                a, b = max(0.0, mid - 1.0), min(float(old), mid + 1.0)
            lo, hi = int(np.floor(a)), int(np.ceil(b))
            w = np.minimum(np.arange(lo, hi) + 1, b) - np.maximum(np.arange(lo, hi), a)
            share[i] = np.tensordot(w, s[lo:hi].astype(float), axes=1) / w.sum()
        out = np.zeros(share.shape, dtype=bool)
        debt = np.zeros(share.shape[1:])
        for i in range(steps):
            debt += share[i]
            out[i] = debt >= 0.5 - 1e-9
            debt -= out[i]
    else:
        raise ValueError(f"method: {method!r} is not one of rhythm, nearest")
    out[0] = True
    return out


# -- ECAD's JSON -----------------------------------------------------------------------------------

def to_ecad_json(schedule: np.ndarray, layout: CacheLayout) -> str:
    """``{"<step>": {"<block>": {"<component>": true|false}}}`` with true = recompute (ECAD's polarity)."""
    s = schedule_of(schedule)
    out: dict[str, dict[str, dict[str, bool]]] = {}
    for t in range(s.shape[0]):
        out[str(t)] = {str(b): {name: bool(s[t, b, c]) for c, name in enumerate(comps)}
                       for b, (_, comps) in enumerate(layout.blocks)}
    return json.dumps(out)


def from_ecad_json(text: str | Mapping, layout: CacheLayout, steps: int | None = None,
                   polarity: str = "recompute") -> np.ndarray:
    """Read a schedule in ECAD's JSON; ``polarity="reuse"`` for files whose true means "reuse the cache"."""
    if polarity not in ("recompute", "reuse"):
        raise ValueError(f"polarity: {polarity!r} is not one of recompute, reuse")
    data = json.loads(text) if isinstance(text, str) else dict(text)
    n = steps if steps is not None else len(data)
    s = np.ones(layout.shape(n), dtype=bool)
    for t_key, blocks in data.items():
        t = int(t_key)
        if not 0 <= t < n:
            raise ValueError(f"step {t_key}: outside 0..{n - 1}")
        for b_key, comps in blocks.items():
            b = int(b_key)
            if not 0 <= b < layout.n_blocks:
                raise ValueError(f"step {t_key}, block {b_key}: outside 0..{layout.n_blocks - 1}")
            names = layout.blocks[b][1]
            items = comps.items() if isinstance(comps, Mapping) else zip(names, comps)
            for name, bit in items:
                if name not in names:
                    raise ValueError(f"step {t_key}, block {b_key}: component {name!r} is not one of {', '.join(names)}")
                s[t, b, names.index(name)] = bool(bit) if polarity == "recompute" else not bool(bit)
    return s


# -- cost ------------------------------------------------------------------------------------------

def mac_fraction(schedule: np.ndarray, component_macs: np.ndarray, other_macs: float) -> float:
    """Scheduled MACs / full MACs, from per-component MACs (blocks x components) and the rest of one call."""
    eff = effective(schedule)
    comp = np.asarray(component_macs, dtype=float)
    full = eff.shape[0] * (other_macs + comp.sum())
    return float((eff.shape[0] * other_macs + (eff * comp[None]).sum()) / full)


def component_macs(model: Any, layout: CacheLayout, call: Any) -> tuple[np.ndarray, float]:
    """MACs of each component (blocks x components) and of everything else, in one call ``call()`` of the model."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model = getattr(model, "transformer", model)
    aten = torch.ops.aten
    extra = {op: _sdpa_flops for op in (getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None),)
             if op is not None}
    with FlopCounterMode(display=False, custom_mapping=extra) as counter:
        call()
    counts = counter.get_flop_counts()
    total = sum(counts.get("Global", {}).values())
    prefix = type(model).__name__
    per = np.zeros((layout.n_blocks, layout.n_components))
    for b, c, path in layout.modules():
        per[b, c] = sum(counts.get(f"{prefix}.{path}", {}).values())
    return per / 2.0, max(total - per.sum(), 0.0) / 2.0


def _sdpa_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    """Attention on the CPU (torch's counter knows only the GPU kernels): QK^T and AV."""
    b, h, q_len, e = query          # the counter passes shapes
    return 2 * b * h * q_len * key[-2] * (e + value[-1])


def bits(schedule: np.ndarray) -> str:
    return "".join("1" if b else "0" for b in schedule_of(schedule).ravel())


__all__ = [
    "PARAM",
    "RECOMPUTE",
    "REUSE",
    "CacheLayout",
    "cache_space",
    "component_macs",
    "effective",
    "from_ecad_json",
    "is_full_compute",
    "layout_of",
    "mac_fraction",
    "resample_steps",
    "schedule_of",
    "to_ecad_json",
]

