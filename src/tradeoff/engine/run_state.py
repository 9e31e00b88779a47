"""How a run in the local run store stands, read from its directory alone.

``study.json`` keeps the status the study last wrote (RUNNING, then FINISHED, KILLED or FAILED with
why) and the command that resumes it; the run's ``lock`` tells a live run from one that was killed
without a clean exit (``kill -9``, a lost machine), since the kernel drops a dead holder's lock.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..core.paths import tradeoff_home
from ..core.run_lock import held_by
from .checkpoint import CheckpointError, read_study_json
from .trial_log import read_trials


@dataclass
class RunState:
    run_id: str
    name: str
    algorithm: str
    workload: str | None
    status: str                 # finished, running, interrupted, failed, killed (or unreadable, in a listing)
    done: int                   # trials searched (baselines not counted, as in the budget)
    budget: int | None
    holder: str | None          # who runs it now (pid, host, start), while it runs
    reason: str | None          # why it failed
    resume_command: str
    last_active: float          # when its trial log last grew (seconds since the epoch)

    def describe(self) -> str:
        """One line: finished; running, by whom; or where it stopped, why, and the command that resumes it."""
        at = f"{self.done}/{self.budget if self.budget is not None else '?'} trials"
        if self.status == "finished":
            return "finished"
        if self.status == "running":
            return f"running, at {at} ({self.holder})"
        if self.status == "failed":
            return f"stopped by an error at {at} ({self.reason}); resume with: {self.resume_command}"
        how = "interrupted" if self.status == "interrupted" else "killed (no clean exit)"
        return f"{how} at {at}; resume with: {self.resume_command}"


def run_state(run_dir: str | Path) -> RunState:
    run_dir = Path(run_dir)
    meta = read_study_json(run_dir)
    spec = meta.get("spec") or {}
    # a run from before the status was kept: its front.json marks it finished
    status = meta.get("status") or ("FINISHED" if (run_dir / "front.json").exists() else None)
    holder = held_by(run_dir) if status != "FINISHED" else None
    word = "finished" if status == "FINISHED" else "running" if holder else \
        {"KILLED": "interrupted", "FAILED": "failed"}.get(status, "killed")
    log = run_dir / "trials.jsonl"
    return RunState(
        run_id=run_dir.name, name=str(spec.get("name", "?")), algorithm=str(spec.get("algorithm", "?")),
        workload=(meta.get("info") or {}).get("workload"), status=word,
        done=sum(1 for t in read_trials(run_dir, warn=False) if not t.baseline), budget=spec.get("budget"),
        holder=holder, reason=meta.get("reason"),
        resume_command=meta.get("resume_command") or f"tradeoff run --resume {run_dir.name}",
        last_active=(log if log.exists() else run_dir).stat().st_mtime)


def list_runs(runs_dir: str | Path | None = None, limit: int | None = None) -> list[RunState]:
    """The runs of the local run store, the most recently active first (``limit`` of them)."""
    root = Path(runs_dir) if runs_dir is not None else tradeoff_home() / "runs"
    dirs = [d for d in root.iterdir() if (d / "study.json").exists()] if root.is_dir() else []

    def active(d: Path) -> float:
        log = d / "trials.jsonl"
        return os.stat(log if log.exists() else d).st_mtime

    dirs.sort(key=active, reverse=True)
    out = []
    for d in dirs[:limit]:
        try:
            out.append(run_state(d))
        except (CheckpointError, OSError) as e:  # one damaged run does not hide the others (show says why)
            out.append(RunState(d.name, "?", "?", None, "unreadable", 0, None, None, str(e), "", active(d)))
    return out
