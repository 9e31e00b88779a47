"""The files a search leaves in its run directory: its front and every trial as tables, the front as
JSON, and its front and hypervolume curve as pictures. A tracked run logs them to MLflow as well; a
recipe run with tracking off has them there all the same."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..engine.front import Front

RUN_FILES = ("front.csv", "front.json", "trials.csv", "front.png", "hypervolume.png")


def write_run_files(front: Front, run_dir: str | Path, title: str | None = None) -> list[Path]:
    """Write ``RUN_FILES`` into ``run_dir``; returns their paths, in that order."""
    from .plots import plot_front, plot_hypervolume

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    paths = [run_dir / name for name in RUN_FILES]
    front.to_frame().to_csv(paths[0], index=False)
    paths[1].write_text(front.to_json())
    trials_frame(front).to_csv(paths[2], index=False)
    plot_front(front, paths[3], title=title)
    plot_hypervolume(front, paths[4], title=title)
    return paths


def trials_frame(front: Front):
    """Every trial: number, state, reason, feasibility, objectives first, other metrics, then choices."""
    import pandas as pd

    rows = []
    stand_ins = any(getattr(t, "stands_in_for", None) for t in front.trials)  # a sparse table's stand-ins, if any
    for t in front.trials:
        row: dict[str, Any] = {"trial": t.number, "state": t.state, "feasible": t.feasible, "reason": t.reason,
                               "duration_s": t.duration_s, "batch": t.batch, "key": t.key}
        if stand_ins:
            row["stands_in_for"] = json.dumps(t.stands_in_for, sort_keys=True) if t.stands_in_for else None
        row.update({n: t.metrics.get(n) for n in front.names})
        row.update({k: v for k, v in t.metrics.items() if k not in front.names})
        row.update({(k if k not in row else f"config.{k}"): v for k, v in t.config.items()})
        rows.append(row)
    return pd.DataFrame(rows)
