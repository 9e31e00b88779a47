"""Timing on a busy machine: a reference model interleaved with the candidate, and waiting for quiet (bounded)."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from tradeoff.hardware.base import make_target, reference_artifact  # noqa: E402
from tradeoff.hardware.timing import TimingPolicy, runnable_per_core, wait_for_quiet  # noqa: E402

FAST = {"warmup": 1, "min_repeats": 5, "time_cap_s": 0.2, "reference": True}


def test_reference_is_timed_with_the_candidate_and_its_drift_recorded():
    target = make_target("ort", threads=1, cache=False, timing=FAST)
    ref = reference_artifact()
    first = target.measure(ref)               # the reference against itself: a ratio near 1
    assert first.ref_ratio > 0 and first.ref_drift == 0.0
    assert 0.25 < first.ref_ratio < 4.0
    again = target.measure(ref)
    assert again.ref_ratio > 0 and np.isfinite(again.ref_drift) and abs(again.ref_drift) < 3
    m = again.metrics()
    assert m["latency_ref_ratio"] == again.ref_ratio and "latency_ref_drift" in m
    plain = make_target("ort", threads=1, cache=False, timing={**FAST, "reference": False}).measure(ref)
    assert plain.ref_ratio == 0.0 and "latency_ref_ratio" not in plain.metrics()


def test_waiting_for_quiet_is_bounded():
    assert runnable_per_core() >= 0.0
    assert wait_for_quiet(0.0, 0.0) == 0.0
    t0 = time.perf_counter()
    waited = wait_for_quiet(0.5, -1.0)        # a level never reached: waits the limit, no longer
    assert 0.5 <= waited < 2.0 and time.perf_counter() - t0 < 2.5
    assert TimingPolicy.from_settings({"wait_for_quiet_s": 3}).wait_for_quiet_s == 3


def test_a_moved_reference_flags_the_figure_noisy():
    target = make_target("ort", threads=1, cache=False, timing=FAST)
    ref = reference_artifact()
    first = target.measure(ref)
    target._ref_first_ms = 3.0 * first.median_ms / first.ref_ratio     # as if the device had been 3x slower before
    moved = target.measure(ref)
    assert moved.ref_drift < -0.10 and moved.noisy
