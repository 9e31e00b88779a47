"""The field's caching methods that fit a static schedule: comparison points and seeds for the search.

FORA (everything every N steps), FORA with one rate for attention and another for MLPs,
attention every N steps (PAB-style), T-GATE (cross-attention
frozen after a gate step), Learning-to-Cache-style per-step {attention, MLP} patterns, and the
even-sparsity family (each component recomputed at an even rate, staggered over blocks).
All are ``steps x blocks x components`` masks with True = recompute.
"""

from __future__ import annotations

import numpy as np

from .cache import CacheLayout

ATTENTION = ("attn1", "attn2", "attn")
CROSS_ATTENTION = ("attn2",)
MLP = ("ff", "ff_context", "proj_mlp", "proj_out")


def _where(layout: CacheLayout, names: tuple[str, ...]) -> np.ndarray:
    """blocks x components: which positions hold a component named in ``names``."""
    out = np.zeros((layout.n_blocks, layout.n_components), dtype=bool)
    for b, (_, comps) in enumerate(layout.blocks):
        for c, n in enumerate(comps):
            out[b, c] = n in names
    return out


def full(layout: CacheLayout, steps: int) -> np.ndarray:
    return np.ones(layout.shape(steps), dtype=bool)


def fora(layout: CacheLayout, steps: int, n: int) -> np.ndarray:
    """FORA: recompute every component every ``n`` steps, reuse in between."""
    s = np.zeros(layout.shape(steps), dtype=bool)
    s[::n] = True
    return s


def every_n(layout: CacheLayout, steps: int, n: int, names: tuple[str, ...] = ATTENTION) -> np.ndarray:
    """Components named in ``names`` every ``n`` steps (attention broadcast), everything else always."""
    s = full(layout, steps)
    which = _where(layout, names)
    for t in range(steps):
        if t % n:
            s[t][which] = False
    return s


def mixed(layout: CacheLayout, steps: int, attention_n: int, mlp_n: int) -> np.ndarray:
    """FORA with a rate per kind: attention every ``attention_n`` steps, MLPs every ``mlp_n``."""
    s = np.zeros(layout.shape(steps), dtype=bool)
    attn, mlp = _where(layout, ATTENTION), _where(layout, MLP)
    for t in range(steps):
        s[t][attn] = t % attention_n == 0
        s[t][mlp] = t % mlp_n == 0
    return s


def tgate(layout: CacheLayout, steps: int, gate: int) -> np.ndarray:
    """T-GATE: cross-attention computed until step ``gate``, then its last output is reused."""
    s = full(layout, steps)
    s[gate:][:, _where(layout, CROSS_ATTENTION)] = False
    return s


def l2c(layout: CacheLayout, steps: int, part: str, depth: float = 0.0) -> np.ndarray:
    """Learning-to-Cache-style: on every other step, reuse ``part`` (attn, mlp or both) in blocks from ``depth``."""
    names = {"attn": ATTENTION, "mlp": MLP, "both": ATTENTION + MLP}[part]
    s = full(layout, steps)
    which = _where(layout, names)
    which[: round(depth * layout.n_blocks)] = False
    for t in range(1, steps, 2):
        s[t][which] = False
    return s


def even(layout: CacheLayout, steps: int, rate: float, stagger: bool = True) -> np.ndarray:
    """Each component recomputed at ``rate`` of the steps, evenly; staggered over blocks so they do not all skip together."""
    s = np.zeros(layout.shape(steps), dtype=bool)
    k = 0
    for b in range(layout.n_blocks):
        for c in range(layout.n_components):
            phase = (k * 0.618034) % 1.0 if stagger else 0.0
            ticks = np.floor(np.arange(steps + 1) * rate + phase)
            s[:, b, c] = ticks[1:] > ticks[:-1]
            k += 1
    s[0] = True
    return s


def named_schedules(layout: CacheLayout, steps: int, family: str = "all") -> dict[str, np.ndarray]:
    """Name -> schedule. ``family="baselines"``: FORA N=2/3/4 and T-GATE at mid-run; ``"all"``: every seed."""
    has_cross = _where(layout, CROSS_ATTENTION).any()
    out: dict[str, np.ndarray] = {f"fora_{n}": fora(layout, steps, n) for n in (2, 3, 4)}
    if has_cross:
        out[f"tgate_{steps // 2}"] = tgate(layout, steps, steps // 2)
    if family == "baselines":
        return out
    if family != "all":
        raise ValueError(f"family: {family!r} is not one of all, baselines")
    out.update({f"fora_{n}": fora(layout, steps, n) for n in range(5, 9) if n < steps})
    out.update({f"attn_every_{n}": every_n(layout, steps, n) for n in range(2, 8) if n < steps})
    out.update({f"fora_attn{a}_mlp{m}": mixed(layout, steps, a, m) for a in (2, 3, 4, 6) for m in (2, 3, 4)
                if a != m and max(a, m) < steps})
    if has_cross:
        for g in sorted({max(1, round(steps * f)) for f in np.linspace(0.2, 0.9, 13)}):
            out[f"tgate_{g}"] = tgate(layout, steps, g)
    for part in ("attn", "mlp", "both"):
        for depth in (0.0, 0.5):
            out[f"l2c_{part}_from_{depth:g}"] = l2c(layout, steps, part, depth)
    for rate in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9):
        for stagger in (True, False):
            out[f"even_{rate:g}{'_staggered' if stagger else ''}"] = even(layout, steps, rate, stagger)
    return out
