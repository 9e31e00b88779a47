"""Plots of a search: its front in the user's units, and its hypervolume trial by trial.

Drawn with matplotlib's object API on an Agg canvas: no pyplot state, no display, safe in threads.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..core.trial import Trial
from ..engine.front import Front

FRONT = "#1f6fb4"
DOMINATED = "#a9a9a9"
INFEASIBLE = "#e3867d"
CONSTRAINT = "#b03a2e"
MAX_PAIRS_OBJECTIVES = 5  # a pairwise matrix of more objectives is unreadable
LABEL_MEMBERS = 15        # front members are labelled with their trial number up to this many


def plot_front(front: Front, path: str | Path, title: str | None = None) -> Path:
    """Scatter of the objectives: the front joined by its staircase, dominated grey, infeasible hollow."""
    names = front.names[:MAX_PAIRS_OBJECTIVES]
    k = len(names)
    if k <= 2:
        fig = Figure(figsize=(7.2, 5.4), layout="constrained")
        ax = fig.add_subplot()
        if k == 1:
            _one_objective(ax, front)
        else:
            _panel(ax, front, 0, 1, staircase=True)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize=8, framealpha=0.9)
    else:
        fig = Figure(figsize=(3.3 * (k - 1), 3.0 * (k - 1) + 0.4), layout="constrained")
        grid = fig.add_gridspec(k - 1, k - 1)
        for r in range(k - 1):
            for c in range(r + 1):
                ax = fig.add_subplot(grid[r, c])
                _panel(ax, front, c, r + 1, staircase=False, small=True)
                if c > 0:
                    ax.set_ylabel("")
                if r < k - 2:
                    ax.set_xlabel("")
        legend: dict[str, object] = {}
        for a in fig.axes:
            for h, lab in zip(*a.get_legend_handles_labels()):
                legend.setdefault(lab, h)
        slot = fig.add_subplot(grid[0, k - 2])
        slot.axis("off")
        slot.legend(list(legend.values()), list(legend), loc="center", fontsize=9, frameon=False)
    fig.suptitle(_headline(front, title), fontsize=11)
    return _save(fig, path)


def plot_hypervolume(front: Front, path: str | Path, title: str | None = None) -> Path:
    """Hypervolume after each trial, against the reference point stated in the title."""
    fig = Figure(figsize=(7.2, 4.2), layout="constrained")
    ax = fig.add_subplot()
    _style(ax)
    ref = front.reference()
    x = np.array([t.number for t in front.trials], dtype=float)
    curve = front.hypervolume_curve()
    if len(x) and all(math.isfinite(v) for v in ref.values()):
        xs, ys = np.append(x, x[-1] + 1), np.append(curve, curve[-1])  # the last trial's step has a width
        ax.step(xs, ys, where="post", color=FRONT, lw=1.8, label="hypervolume")
        ax.fill_between(xs, ys, step="post", color=FRONT, alpha=0.12)
        up = np.flatnonzero(np.diff(np.concatenate([[0.0], curve])) > 0)
        ax.plot(x[up], curve[up], "o", ms=3.5, color=FRONT, label="trial that improved it")
        failed = [t.number for t in front.trials if not t.ok]
        if failed:
            ax.plot(failed, np.zeros(len(failed)), "|", ms=9, mew=1.2, color=CONSTRAINT, clip_on=False,
                    label=f"failed trial ({len(failed)})")
        ax.set_ylim(bottom=0)
        ax.set_xlim(min(x[0], 0), x[-1] + 1)
        ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
        hv = f"hypervolume {curve[-1]:.4g} after {_n(len(x), 'trial')}"
    else:
        ax.text(0.5, 0.5, "no feasible trials yet", ha="center", va="center", transform=ax.transAxes,
                color="#666666")
        hv = f"hypervolume 0 after {_n(len(x), 'trial')}"
    ax.set_xlabel("trial")
    ax.set_ylabel("hypervolume")
    point = ", ".join(f"{n} = {v:.4g}" for n, v in ref.items())
    if not all(math.isfinite(v) for v in ref.values()):
        point = "none until a trial is feasible"
    head = f"{title}: {hv}" if title else hv.capitalize()
    fig.suptitle(f"{head}\nreference point ({point})", fontsize=10)
    return _save(fig, path)


# -- pieces ----------------------------------------------------------------------------------------
def _panel(ax, front: Front, xi: int, yi: int, staircase: bool, small: bool = False) -> None:
    """One pair of objectives: dominated, infeasible, the front, and constraint limits."""
    _style(ax)
    xn, yn = front.names[xi], front.names[yi]
    members = front.members
    on_front = {t.number for t in members}
    dominated = [t for t in front.feasible if t.number not in on_front]
    infeasible = [t for t in front.complete if not t.feasible]
    size = 0.7 if small else 1.0
    if dominated:
        ax.scatter(*_xy(dominated, xn, yn), s=18 * size, color=DOMINATED, alpha=0.75, lw=0, label="dominated")
    if infeasible:
        ax.scatter(*_xy(infeasible, xn, yn), s=22 * size, facecolors="none", edgecolors=INFEASIBLE, lw=1,
                   label="infeasible")
    if members:
        mx, my = _xy(members, xn, yn)
        if staircase:
            ax.plot(mx, my, drawstyle="steps-post", color=FRONT, lw=1.3, alpha=0.7, zorder=2)
        ax.scatter(mx, my, s=46 * size, color=FRONT, edgecolors="white", lw=0.8, zorder=3,
                   label=f"Pareto front ({len(members)})")
        if staircase and len(members) <= LABEL_MEMBERS:
            _label_members(ax, members, mx, my)
    _baselines(ax, front, xn, yn, size)
    if not front.complete:
        ax.text(0.5, 0.5, "no complete trials", ha="center", va="center", transform=ax.transAxes, color="#666666")
    _constraints(ax, front, xn, yn)
    ax.set_xlabel(_label(front, xi), fontsize=8 if small else 10)
    ax.set_ylabel(_label(front, yi), fontsize=8 if small else 10)
    if small:
        ax.tick_params(labelsize=7)


BASELINE_MARKERS = "D^vs<>Ph*X"


def _baselines(ax, front: Front, xn: str, yn: str, size: float) -> None:
    """Each named baseline (fp32, int8, ...) with its own marker, labelled in the legend and beside it."""
    for i, (name, m) in enumerate(front.baselines.items()):
        if xn not in m or yn not in m:
            continue
        ax.scatter([m[xn]], [m[yn]], s=70 * size, marker=BASELINE_MARKERS[i % len(BASELINE_MARKERS)],
                   facecolors="none", edgecolors="black", lw=1.3, zorder=4, label=f"baseline: {name}")
        ax.annotate(name, (m[xn], m[yn]), textcoords="offset points", xytext=(6, -10), fontsize=7, color="#222222")


def _label_members(ax, members: Sequence[Trial], x: np.ndarray, y: np.ndarray, gap: float = 0.035) -> None:
    """Trial numbers beside front members, skipping any that would sit on a label already drawn."""
    ax.autoscale_view()
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    u = (x - x0) / ((x1 - x0) or 1.0)
    v = (y - y0) / ((y1 - y0) or 1.0) * 0.75  # the axes are about 4:3
    placed: list[tuple[float, float]] = []
    for t, a, b, pu, pv in zip(members, x, y, u, v):
        if any(math.hypot(pu - qu, pv - qv) < gap for qu, qv in placed):
            continue
        placed.append((pu, pv))
        ax.annotate(f"#{t.number}", (a, b), xytext=(4, 4), textcoords="offset points", fontsize=7, color=FRONT)


def _one_objective(ax, front: Front) -> None:
    """A single objective: its value per trial, the best one highlighted."""
    _style(ax)
    name = front.names[0]
    rest = [t for t in front.complete if t not in front.members]
    for group, kw in ((rest, dict(color=DOMINATED, s=18, lw=0, label="trial")),
                      (front.members, dict(color=FRONT, s=46, edgecolors="white", zorder=3, label="best"))):
        if group:
            ax.scatter([t.number for t in group], [t.metrics[name] for t in group], **kw)
    ax.set_xlabel("trial")
    ax.set_ylabel(_label(front, 0))


def _constraints(ax, front: Front, xn: str, yn: str) -> None:
    """Dashed limits for constraints on a plotted objective; the infeasible side lightly shaded."""
    for c in front.constraints:
        if c.metric not in (xn, yn):
            continue
        vertical = c.metric == xn
        lo, hi = ax.get_xlim() if vertical else ax.get_ylim()
        span = hi - lo
        label = f"constraint {c}"
        if not (lo - 0.5 * span <= c.bound <= hi + 0.5 * span):
            ax.plot([], [], ls="--", color=CONSTRAINT, lw=1, label=f"{label} (off the chart)")
            continue
        line, shade = (ax.axvline, ax.axvspan) if vertical else (ax.axhline, ax.axhspan)
        line(c.bound, ls="--", color=CONSTRAINT, lw=1, label=label, zorder=1)
        lo, hi = min(lo, c.bound), max(hi, c.bound)
        bad = (c.bound, hi) if c.op in ("<", "<=") else (lo, c.bound)
        shade(*bad, color=CONSTRAINT, alpha=0.05, lw=0, zorder=0)
        (ax.set_xlim if vertical else ax.set_ylim)(lo, hi)


def _headline(front: Front, title: str | None) -> str:
    n, m = len(front.trials), len(front.members)
    infeasible = sum(1 for t in front.complete if not t.feasible)
    parts = [_n(n, "trial"), f"front of {m}"]
    if infeasible:
        parts.append(f"{infeasible} infeasible")
    if front.failed:
        parts.append(f"{len(front.failed)} failed (not shown)")
    if len(front.names) > MAX_PAIRS_OBJECTIVES:
        parts.append(f"first {MAX_PAIRS_OBJECTIVES} of {len(front.names)} objectives")
    text = ", ".join(parts)
    return f"{title}: {text}" if title else text


def _n(k: int, noun: str) -> str:
    return f"{k} {noun}" + ("" if k == 1 else "s")


def _label(front: Front, i: int) -> str:
    o = front.objectives[i]
    return f"{o.name} ({o.direction})"


def _xy(trials: Sequence[Trial], xn: str, yn: str) -> tuple[np.ndarray, np.ndarray]:
    return (np.array([t.metrics[xn] for t in trials], dtype=float),
            np.array([t.metrics[yn] for t in trials], dtype=float))


def _style(ax) -> None:
    ax.grid(True, alpha=0.3, lw=0.6)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=120)
    return path

