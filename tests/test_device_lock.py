"""One model timed per device at a time: across threads and across processes."""

import json
import subprocess
import sys
import threading
import time

from conftest import subprocess_env
from tradeoff.hardware.locks import device_lock

HOLD = """
import json, sys, time
from tradeoff.hardware.locks import device_lock
with device_lock(sys.argv[1]):
    t0 = time.time(); time.sleep(0.3); t1 = time.time()
print(json.dumps([t0, t1]))
"""


def overlaps(intervals):
    s = sorted(intervals)
    return any(b[0] < a[1] for a, b in zip(s, s[1:]))


def test_threads_take_turns_on_one_device_and_not_across_devices():
    spans: dict[str, list] = {"a": [], "b": []}

    def hold(dev):
        with device_lock(dev):
            t0 = time.time()
            time.sleep(0.15)
            spans[dev].append((t0, time.time()))

    threads = [threading.Thread(target=hold, args=(d,)) for d in ("a", "a", "a", "b", "b")]
    t = time.time()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not overlaps(spans["a"]) and not overlaps(spans["b"])
    assert time.time() - t < 0.15 * 5 - 0.1  # the two devices did run side by side


def test_processes_take_turns_on_one_device(tmp_path):
    env = subprocess_env(tmp_path)
    procs = [subprocess.Popen([sys.executable, "-c", HOLD, "cpu:shared"], stdout=subprocess.PIPE, text=True, env=env)
             for _ in range(3)]
    spans = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert not overlaps([tuple(s) for s in spans])


def test_threads_executor_measures_every_trial(tmp_path):
    from tradeoff.recipe import load_recipe
    from tradeoff.runner import run_recipe

    recipe, _ = load_recipe({
        "name": "par", "workload": {"name": "python: helpers.workloads:tiny_models"},
        "targets": {"cpu": {"runtime": "ort", "threads": 1,
                            "timing": {"warmup": 2, "min_repeats": 5, "rel_ci": 0.05, "time_cap_s": 0.3}}},
        "objectives": {"width_metric": "maximize", "latency_ms": {"target": "cpu"}},
        "search": {"algorithm": "random", "budget": 8, "executor": "threads", "workers": 4}, "tracking": False})
    front, _ = run_recipe(recipe, progress=False)
    assert len(front.trials) == 8 and len(front.complete) == 6
    assert all(t.metrics["latency_ms"] > 0 for t in front.complete)
