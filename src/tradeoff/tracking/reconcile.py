"""Make MLflow say what the local trial log says: the log is the record, MLflow its mirror.

A trial's line is written before its child run, so a kill can leave a child missing, half
logged (RUNNING, maybe without metrics) or, after an older resume, duplicated. On resume every
trial in the log ends up with exactly one finished child; children of no logged trial are deleted.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.trial import Trial

DONE = ("FINISHED", "FAILED")


@dataclass
class Reconciled:
    backfilled: int = 0     # logged trials that had no child
    replaced: int = 0       # children left unfinished by a kill, logged again
    deleted: int = 0        # duplicates and children of trials the log does not hold

    def __bool__(self) -> bool:
        return bool(self.backfilled or self.replaced or self.deleted)


def reconcile(tracker, trials: list[Trial]) -> Reconciled:
    """Back-fill, replace and delete children of ``tracker``'s parent run until they match ``trials``."""
    out = Reconciled()
    if not getattr(tracker, "log_trials", True):
        return out
    by_key = {t.key: t for t in trials}
    kept: set[str] = set()
    for child in tracker.children():
        key = child.data.tags.get("key")
        trial = by_key.get(key)
        whole = (trial is not None and child.info.status in DONE
                 and child.data.tags.get("trial") == str(trial.number)
                 and "duration_s" in child.data.metrics)
        if whole and key not in kept:
            kept.add(key)
            continue
        tracker.client.delete_run(child.info.run_id)
        if trial is not None and key not in kept:
            out.replaced += 1
        else:
            out.deleted += 1
    for t in trials:
        if t.key not in kept:
            tracker.log_trial(t)
    out.backfilled = len(trials) - len(kept) - out.replaced
    return out
