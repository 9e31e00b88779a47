"""Where tradeoff keeps its files: ``$TRADEOFF_HOME`` (default ``./.tradeoff``)."""

from __future__ import annotations

import os
from pathlib import Path


def tradeoff_home() -> Path:
    return Path(os.environ.get("TRADEOFF_HOME", ".tradeoff")).resolve()


def run_dir_for(run_id: str) -> Path:
    return tradeoff_home() / "runs" / run_id
