"""Live progress of a search: trials done / budget, failures, front size, hypervolume, ETA."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as _Bar


def _eta(done: int, budget: int | None, elapsed: float, start_done: int) -> str:
    if not budget or done <= start_done or done >= budget:
        return "-"
    per = elapsed / max(done - start_done, 1)
    s = int(per * (budget - done))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class Progress:
    """A rich bar on a terminal; one plain line per 10% (or per minute) when stderr is a file."""

    def __init__(self, enabled: bool = True, console: Console | None = None, min_interval_s: float = 0.25):
        self.enabled = enabled
        self.console = console or Console(stderr=True)
        self.min_interval_s = min_interval_s
        self._bar = None
        self._last = 0.0
        self._last_line = (-1, 0.0)

    def _fields(self, done: int, front, elapsed: float) -> dict:
        return {
            "failed": len(front.failed),
            "front": len(front.members),
            "hv": front.hypervolume_text(),
            "eta": _eta(done, self.budget, elapsed, self.start_done),
        }

    def start(self, budget: int | None, done: int, front) -> None:
        self.budget, self.start_done, self.t0 = budget, done, time.monotonic()
        if not self.enabled:
            return
        if self.console.is_terminal:
            self._bar = _Bar(
                TextColumn("[bold]trials"), BarColumn(), MofNCompleteColumn(),
                TextColumn("failed {task.fields[failed]} | front {task.fields[front]} | {task.fields[hv]}"
                           " | ETA {task.fields[eta]}"),
                TimeElapsedColumn(), console=self.console, transient=False)
            self._bar.start()
            self._task = self._bar.add_task("search", total=budget, completed=done, **self._fields(done, front, 0.0))
        elif done:
            self.console.print(f"resuming at {done} trials")

    def update(self, done: int, front, elapsed: float) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        last = self.budget is not None and done >= self.budget
        if self._bar is not None:
            if now - self._last >= self.min_interval_s or last:
                self._last = now
                self._bar.update(self._task, completed=done, **self._fields(done, front, now - self.t0))
            return
        step = max(1, (self.budget or 100) // 10)
        if done // step != self._last_line[0] // step or now - self._last_line[1] >= 60 or last:
            self._last_line = (done, now)
            f = self._fields(done, front, now - self.t0)
            total = self.budget if self.budget is not None else "?"
            self.console.print(f"trials {done}/{total} | failed {f['failed']} | front {f['front']} | "
                               f"{f['hv']} | ETA {f['eta']}", highlight=False)

    def note(self, msg: str) -> None:
        if self.enabled:
            self.console.print(msg, highlight=False)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
