"""Evaluators that fail the way real ones do: a segfault, a leak, a hang, an exit."""

from __future__ import annotations

import ctypes
import os
import signal
import time

_HOARD: list = []


def zdt(config):
    x = [config[f"x{i}"] for i in range(4)]
    f1 = x[0]
    g = 1 + 9 * sum(x[1:]) / 3
    return {"f1": f1, "f2": g * (1 - (f1 / g) ** 0.5)}


def segfault_above(config, bound: float = 0.8):
    """Crashes its process (a real SIGSEGV, through ctypes) when x0 > bound."""
    if config["x0"] > bound:
        ctypes.string_at(0)
    return zdt(config)


def leak(config, mb: int = 120):
    """Keeps mb megabytes per call, touched so they are resident."""
    _HOARD.append(bytearray(os.urandom(1)) * (mb * 2**20))
    return zdt(config)


def hang_above(config, bound: float = 0.8):
    if config["x0"] > bound:
        time.sleep(60)
    return zdt(config)


def die_once(config, flag: str = ""):
    """Kills its own process the first time (a flag file remembers), then works."""
    if flag and not os.path.exists(flag):
        open(flag, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return zdt(config)


def pid(config):
    return {**zdt(config), "pid": float(os.getpid())}


def logged(config):
    """ZDT1 after a short sleep, each call's config appended to $FAULT_LOG (to count evaluations)."""
    log = os.environ.get("FAULT_LOG")
    if log:
        with open(log, "a") as f:
            f.write(repr(sorted(config.items())) + "\n")
    time.sleep(float(os.environ.get("FAULT_DELAY", "0.02")))
    return zdt(config)
