"""Timing statistics in one place: warm-ups, repeats until the median is pinned down, honest spread.

A measurement repeats until the distribution-free 95% confidence interval of the median is
within ±``rel_ci`` of it (2% by default) or a time cap is hit; it reports median, p10, p90, n
and the interval, and flags itself ``noisy`` when the cap came first instead of hiding it.
On a shared machine it can first wait (up to ``wait_for_quiet_s``) for other work to die down,
and interleave a fixed reference model, so contention and drift show in the ratio to it.
Why a figure is noisy is kept with it (``noisy_why``), and a noisy figure in the measurement
cache is timed again when asked for again, up to ``remeasure_noisy`` measurements in all.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

# why a figure is flagged noisy: the codes kept in ``LatencyStats.noisy_why`` and what they mean
NOISY_REASONS = {"ci": "CI not reached", "load": "load above max_load", "drift": "reference drift"}


@dataclass
class LatencyStats:
    """One latency measurement of one model on one target, in milliseconds per call."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    mean_ms: float
    n: int                      # timed repeats
    ci_low_ms: float            # 95% CI of the median (order statistics)
    ci_high_ms: float
    warmup: int
    number: int = 1             # calls per timed repeat
    noisy: bool = False         # the CI did not reach its target before the time cap
    target: str = ""
    device: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    cached: bool = False        # taken from the measurement cache, not timed now
    seconds: float = 0.0        # wall time this measurement cost (compile included), 0 when cached
    load: float = 0.0           # 1-minute load average per core while timing (other work competing)
    ref_ratio: float = 0.0      # median / the interleaved reference model's median (0: no reference)
    ref_drift: float = 0.0      # the reference's median against its first figure on this target, minus 1
    waited_s: float = 0.0       # time spent waiting for the machine to quieten before timing
    noisy_why: list[str] = field(default_factory=list)   # the NOISY_REASONS codes that flagged it

    @property
    def ci_rel(self) -> float:
        """Half-width of the median's CI relative to the median."""
        return (self.ci_high_ms - self.ci_low_ms) / 2 / self.median_ms if self.median_ms > 0 else math.inf

    def flag(self, reason: str) -> None:
        """Mark the figure noisy for ``reason`` (a NOISY_REASONS code)."""
        self.noisy = True
        if reason not in self.noisy_why:
            self.noisy_why.append(reason)

    def metrics(self, prefix: str = "latency") -> dict[str, float]:
        return {f"{prefix}_ms": self.median_ms, f"{prefix}_p10_ms": self.p10_ms, f"{prefix}_p90_ms": self.p90_ms,
                f"{prefix}_ci_rel": self.ci_rel, f"{prefix}_n": float(self.n), f"{prefix}_noisy": float(self.noisy),
                f"{prefix}_cached": float(self.cached), f"{prefix}_cost_s": self.seconds, f"{prefix}_load": self.load,
                **({f"{prefix}_ref_ratio": self.ref_ratio, f"{prefix}_ref_drift": self.ref_drift}
                   if self.ref_ratio else {}),
                **{f"{prefix}_noisy_{why}": 1.0 for why in (self.noisy_why if self.noisy else ())}}

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> LatencyStats:
        return LatencyStats(**{k: v for k, v in d.items() if k in LatencyStats.__dataclass_fields__})


def median_ci(sorted_x: np.ndarray, z: float = 1.96) -> tuple[float, float]:
    """Distribution-free CI of the median: order statistics n/2 ± z·√n/2 (binomial approximation)."""
    n = len(sorted_x)
    if n < 3:
        return float(sorted_x[0]), float(sorted_x[-1])
    half = z * math.sqrt(n) / 2
    lo = max(int(math.floor(n / 2 - half)) - 1, 0)
    hi = min(int(math.ceil(n / 2 + half)), n - 1)
    return float(sorted_x[lo]), float(sorted_x[hi])


@dataclass
class TimingPolicy:
    """How long and how carefully to time; a target's settings may override any field."""

    warmup: int = 10
    warmup_s: float = 0.1
    min_repeats: int = 20
    max_repeats: int = 2000
    rel_ci: float = 0.02          # stop when the median's 95% CI is within ±2%
    time_cap_s: float = 5.0       # ... or when this much time was spent timing
    min_repeat_ms: float = 1.0    # batch calls so one repeat lasts at least this long
    max_load: float = 1.0         # flag as noisy when the load average per core exceeds this
    wait_for_quiet_s: float = 0.0  # before timing, wait up to this long for the run queue per core to drop
    quiet_load: float = 0.75       # ... to this many runnable processes per core (others than us)
    reference: bool = False        # interleave a fixed reference model, repeat for repeat (see base.py)
    remeasure_noisy: int = 3       # a noisy cached figure is timed again until measured this often (0, 1: never)

    @staticmethod
    def from_settings(settings: dict[str, Any]) -> TimingPolicy:
        known = TimingPolicy.__dataclass_fields__
        unknown = sorted(set(settings) - set(known))
        if unknown:
            raise ValueError(f"timing.{', timing.'.join(unknown)}: unknown; allowed: {', '.join(known)}")
        return TimingPolicy(**settings)


def summarize(samples_ms: np.ndarray, warmup: int, number: int, noisy_why: list[str], **info) -> LatencyStats:
    x = np.sort(np.asarray(samples_ms, dtype=float))
    lo, hi = median_ci(x)
    return LatencyStats(median_ms=float(np.median(x)), p10_ms=float(np.percentile(x, 10)),
                        p90_ms=float(np.percentile(x, 90)), mean_ms=float(x.mean()), n=len(x), ci_low_ms=lo,
                        ci_high_ms=hi, warmup=warmup, number=number, noisy=bool(noisy_why),
                        noisy_why=list(noisy_why), **info)


def time_callable(fn: Callable[[], Any], policy: TimingPolicy | None = None,
                  timer: Callable[[Callable[[], Any], int], float] | None = None,
                  reference: tuple[Callable[[], Any], Callable] | None = None, **info) -> LatencyStats:
    """Time ``fn`` (one inference) until its median is pinned down; ``timer(fn, number)`` returns ms per call.

    The default timer is ``time.perf_counter`` around ``number`` calls; GPU targets pass one
    that synchronises (CUDA events), TVM passes its own time evaluator. ``reference`` (run once,
    timer or None) is timed after every repeat of ``fn``, and ``ref_ratio`` is the ratio of medians.
    """
    policy = policy or TimingPolicy()
    timer = timer or _wall_timer
    waited = wait_for_quiet(policy.wait_for_quiet_s, policy.quiet_load)
    load0 = _load_per_core()
    t_start = time.perf_counter()
    n_warm = 0
    while n_warm < policy.warmup or time.perf_counter() - t_start < policy.warmup_s:
        fn()  # caches, allocators and clocks settle: at least `warmup` calls and `warmup_s` seconds
        n_warm += 1
    # choose calls per repeat so one repeat is long enough for the clock
    one = timer(fn, 1)
    number = max(1, int(math.ceil(policy.min_repeat_ms / max(one, 1e-6)))) if one < policy.min_repeat_ms else 1
    samples: list[float] = []
    ref_samples: list[float] = []
    if reference is not None:
        ref_fn, ref_timer = reference[0], reference[1] or _wall_timer
        ref_one = ref_timer(ref_fn, 1)
        ref_number = max(1, int(math.ceil(policy.min_repeat_ms / max(ref_one, 1e-6))))
    why: list[str] = []
    while True:
        samples.append(timer(fn, number))
        if reference is not None:   # alternating: contention that slows one slows the other
            ref_samples.append(ref_timer(ref_fn, ref_number))
        n = len(samples)
        if n >= policy.min_repeats:
            x = np.sort(samples)
            lo, hi = median_ci(x)
            med = float(np.median(x))
            if med > 0 and (hi - lo) / 2 <= policy.rel_ci * med:
                break
        if n >= policy.max_repeats:
            why.append("ci")
            break
        if time.perf_counter() - t_start > policy.time_cap_s and n >= min(policy.min_repeats, 5):
            if n < policy.min_repeats or not _tight(samples, policy.rel_ci):
                why.append("ci")
            break
    load = max(load0, _load_per_core())
    # a busy machine can give a tight interval around a shifted median: say so, don't hide it
    if load > policy.max_load:
        why.append("load")
    stats = summarize(np.array(samples), n_warm, number, why, load=round(load, 3), waited_s=round(waited, 3),
                      **info)
    if ref_samples:
        stats.ref_ratio = stats.median_ms / float(np.median(ref_samples))
    return stats


def runnable_per_core(window_s: float = 0.2, samples: int = 5) -> float:
    """Processes ready to run per core right now, ourselves left out (/proc/loadavg; the 1-minute load elsewhere)."""
    try:
        counts = []
        for _ in range(samples):
            with open("/proc/loadavg") as f:
                counts.append(int(f.read().split()[3].split("/")[0]) - 1)
            time.sleep(window_s / samples)
        return max(float(np.median(counts)), 0.0) / (os.cpu_count() or 1)
    except (OSError, ValueError, IndexError):
        return _load_per_core()


def wait_for_quiet(limit_s: float, quiet_load: float) -> float:
    """Wait (up to ``limit_s``) until the run queue per core is at most ``quiet_load``; seconds waited."""
    if limit_s <= 0:
        return 0.0
    t0 = time.perf_counter()
    while runnable_per_core() > quiet_load and time.perf_counter() - t0 < limit_s:
        time.sleep(0.3)
    return time.perf_counter() - t0


def _load_per_core() -> float:
    try:
        return os.getloadavg()[0] / (os.cpu_count() or 1)
    except OSError:
        return 0.0


def _tight(samples, rel) -> bool:
    x = np.sort(samples)
    lo, hi = median_ci(x)
    return (hi - lo) / 2 <= rel * float(np.median(x))


def _wall_timer(fn: Callable[[], Any], number: int) -> float:
    t = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t) * 1000.0 / number
