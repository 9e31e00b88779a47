"""Make MLflow say what the local trial log says: the log is the record, MLflow its mirror.

A trial's line is written before it reaches MLflow, so a kill can leave it missing there.

- ``steps`` mode: on resume every logged trial is logged again on the parent; its points carry
  the same step and timestamp, so the store keeps each once and fills in only what was missing.
  Steps the log does not hold (a checkpoint older than the store, resumed elsewhere) cannot be
  deleted from MLflow, so new trials are numbered after them. At the end the children are made
  to be exactly the front's members and the baselines.
- ``children`` mode: a kill can leave a child missing, half logged (RUNNING, maybe without
  metrics) or, after an older resume, duplicated. On resume every trial in the log ends up with
  exactly one finished child; children of no logged trial are deleted.
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
    orphans: int = 0        # steps mode: trial steps in MLflow that the log does not hold (numbered past)

    def __bool__(self) -> bool:
        return bool(self.backfilled or self.replaced or self.deleted)


def reconcile(tracker, trials: list[Trial]) -> Reconciled:
    """Back-fill, replace and delete children of ``tracker``'s parent run until they match ``trials``."""
    out = Reconciled()
    if not getattr(tracker, "log_trials", True):
        return out
    if getattr(tracker, "trials", "children") == "steps":
        return _reconcile_steps(tracker, trials)
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


def _reconcile_steps(tracker, trials: list[Trial]) -> Reconciled:
    out = Reconciled()
    logged = {m.step for m in tracker.client.get_metric_history(tracker.run_id, "trial.duration_s")}
    numbers = {t.number for t in trials}
    out.backfilled = len(numbers - logged)
    orphans = logged - numbers
    out.orphans = len(orphans)
    tracker.next_number = max(logged, default=-1) + 1
    for t in trials:  # identical points are kept once: only the missing ones are added
        tracker.log_trial(t)
    return out


def sync_front_children(tracker, front) -> Reconciled:
    """Children for exactly the front's members and the baselines (the rows people open in the UI)."""
    out = Reconciled()
    want = {t.key: t for t in front.trials if t.baseline}
    members = {t.key for t in front.members}
    want.update({t.key: t for t in front.trials if t.key in members})
    kept: set[str] = set()
    for child in tracker.children():
        key = child.data.tags.get("key")
        t = want.get(key)
        whole = (t is not None and key not in kept and child.info.status in DONE
                 and child.data.tags.get("trial") == str(t.number)
                 and child.data.tags.get("front") == str(key in members).lower())
        if whole:
            kept.add(key)
            continue
        tracker.client.delete_run(child.info.run_id)
        out.deleted += 1
    for key, t in want.items():
        if key not in kept:
            tracker._log_trial_now(t, front=key in members)
            out.backfilled += 1
    return out
