"""The run directory's own files: ``study.json`` and the local ``state.pkl``, each with a last good copy.

``state.pkl`` is only ever written and read here, on this machine: it never travels through a
tracking store (a store anyone can log to must not hand us code to run). A damaged copy falls
back to the previous one, then to rebuilding the algorithm from the trial log, each with a warning.

Objects the study can supply again on resume (its search space: a NAS table's space carries every
row of the table, megabytes) are written as references, not copies, and bound to the resumed
study's own objects when read.
"""

from __future__ import annotations

import io
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


class _Pickler(cloudpickle.Pickler):  # cloudpickle: pymoo keeps local closures
    def __init__(self, file, shared: dict[str, Any]):
        super().__init__(file)
        self._shared = {id(v): k for k, v in shared.items()}

    def persistent_id(self, obj):
        return self._shared.get(id(obj))


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, shared: dict[str, Any]):
        super().__init__(file)
        self._shared = shared

    def persistent_load(self, pid):
        if pid not in self._shared:
            raise pickle.UnpicklingError(f"the checkpoint refers to {pid!r}, which the resuming study did not supply")
        return self._shared[pid]


def dumps(state: Any, shared: dict[str, Any] | None = None) -> bytes:
    """``state`` pickled, with each object of ``shared`` (by identity) written as its name."""
    buf = io.BytesIO()
    _Pickler(buf, shared or {}).dump(state)
    return buf.getvalue()


def loads(data: bytes, shared: dict[str, Any] | None = None) -> Any:
    """The inverse of ``dumps``: the names of ``shared`` objects become those objects."""
    return _Unpickler(io.BytesIO(data), shared or {}).load()


def save_local_state(run_dir: Path, state: dict[str, Any], shared: dict[str, Any] | None = None) -> None:
    """Write ``state.pkl`` atomically, keeping the one before as ``state.pkl.prev``; ``shared``
    objects (by identity) are written as references, to be supplied again to ``load_local_state``."""
    path = Path(run_dir) / STATE
    data = dumps(state, shared)
    if path.exists():
        os.replace(path, path.with_name(STATE + ".prev"))
    _atomic(path, data)


def load_local_state(run_dir: Path, shared: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The newest readable local state, or None (then the algorithm is rebuilt from the trial log)."""
    for name in (STATE, STATE + ".prev"):
        path = Path(run_dir) / name
        if not path.exists():
            continue
        try:
            state = loads(path.read_bytes(), shared)
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
