"""Where tradeoff keeps its files: ``$TRADEOFF_HOME`` (default ``./.tradeoff``)."""

from __future__ import annotations

import os
from pathlib import Path


def tradeoff_home() -> Path:
    return Path(os.environ.get("TRADEOFF_HOME", ".tradeoff")).resolve()


def run_dir_for(run_id: str) -> Path:
    return tradeoff_home() / "runs" / run_id


class AmbiguousRunId(FileNotFoundError):
    """A shortened run id that begins several runs: no one run is found by it."""


def resolve_run_id(run_id: str, least: int = 4) -> str:
    """A run id as given, or the one run of the local run store it begins (at least ``least`` characters,
    as git takes a commit's prefix); an id that begins several is refused with them."""
    runs = tradeoff_home() / "runs"
    if (runs / run_id).exists() or len(run_id) < least or not runs.is_dir():
        return run_id
    found = sorted(d.name for d in runs.iterdir() if d.name.startswith(run_id) and (d / "study.json").exists())
    if len(found) > 1:
        raise AmbiguousRunId(f"run id {run_id!r} begins {len(found)} runs ({', '.join(found[:5])}"
                         f"{', ...' if len(found) > 5 else ''}); give more of it")
    return found[0] if found else run_id
