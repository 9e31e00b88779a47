"""The run directory's own files: ``study.json`` and the local ``state.pkl``, each with a last good copy.

``state.pkl`` is only ever written and read here, on this machine: it never travels through a
tracking store (a store anyone can log to must not hand us code to run). A damaged copy falls
back to the previous one, then to rebuilding the algorithm from the trial log, each with a warning.
"""

from __future__ import annotations

import json
import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import cloudpickle

STATE, STUDY = "state.pkl", "study.json"


class CheckpointError(ValueError):
    """A run directory whose description cannot be read: says which file and why."""


def _atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_local_state(run_dir: Path, state: dict[str, Any]) -> None:
    """Write ``state.pkl`` atomically, keeping the one before as ``state.pkl.prev``."""
    path = Path(run_dir) / STATE
    data = cloudpickle.dumps(state)  # pymoo keeps local closures
    if path.exists():
        os.replace(path, path.with_name(STATE + ".prev"))
    _atomic(path, data)


def load_local_state(run_dir: Path) -> dict[str, Any] | None:
    """The newest readable local state, or None (then the algorithm is rebuilt from the trial log)."""
    for name in (STATE, STATE + ".prev"):
        path = Path(run_dir) / name
        if not path.exists():
            continue
        try:
            state = pickle.loads(path.read_bytes())
            if isinstance(state, dict) and {"algorithm", "batches", "elapsed_s", "n_trials"} <= set(state):
                return state
            raise ValueError("not a tradeoff checkpoint")
        except Exception as e:  # noqa: BLE001 - any damage means: use the next copy
            warnings.warn(f"{path} is damaged ({type(e).__name__}); falling back to "
                          f"{'the previous copy' if name == STATE else 'the trial log'}", stacklevel=2)
    return None


def write_study_json(run_dir: Path, data: dict) -> None:
    text = json.dumps(data, indent=2, default=str).encode()
    _atomic(Path(run_dir) / (STUDY + ".bak"), text)
    _atomic(Path(run_dir) / STUDY, text)


def read_study_json(run_dir: Path) -> dict:
    """``study.json``, or its copy when it is damaged; a clean error naming the file otherwise."""
    run_dir = Path(run_dir)
    errors = []
    for name in (STUDY, STUDY + ".bak"):
        path = run_dir / name
        try:
            data = json.loads(path.read_bytes().decode("utf-8"))
            if not isinstance(data, dict) or "spec" not in data:
                raise ValueError("no 'spec' in it")
            if errors:
                warnings.warn(f"{run_dir / STUDY} is damaged ({errors[0]}); using {name}", stacklevel=2)
            return data
        except FileNotFoundError:
            errors.append("missing")
        except (ValueError, UnicodeDecodeError) as e:
            errors.append(f"{type(e).__name__}: {str(e)[:120]}")
    if errors[0] == "missing" and errors[1] == "missing":
        raise FileNotFoundError(f"no checkpoint for run {run_dir.name!r} under {run_dir.parent}")
    raise CheckpointError(f"{run_dir / STUDY} cannot be read ({errors[0]}) and has no good copy")
