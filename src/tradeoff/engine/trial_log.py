"""The trial log (``trials.jsonl``): the record of a search, appended one fsynced line per trial.

A crash can leave a torn last line; a disk can hand back bytes that are not UTF-8. Reading
never raises for either (bad lines are skipped with a warning), and opening for append first
moves a torn tail aside (to ``trials.jsonl.torn``), so the next trial never lands glued onto it.
Trial numbers continue from the highest number in the log, not from a count of lines.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

from ..core.trial import Trial

NAME = "trials.jsonl"


def _parse(raw: bytes, path: Path, lineno: int, warn: bool) -> Trial | None:
    try:
        return Trial.from_json(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, TypeError, ValueError) as e:
        if warn:
            warnings.warn(f"{path}:{lineno}: unreadable trial line skipped ({type(e).__name__})", stacklevel=3)
        return None


def read_trials(run_dir: str | Path, warn: bool = True) -> list[Trial]:
    """Every readable trial, in log order; a torn or garbled line is skipped (with a warning), a repeated key kept once."""
    path = Path(run_dir) / NAME
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    out: list[Trial] = []
    seen: set[str] = set()
    lines = data.split(b"\n")
    torn_tail = not data.endswith(b"\n") and lines[-1] != b""
    for i, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        # a torn last line is expected after a kill: it is repaired on the next append, quietly skipped here
        t = _parse(raw, path, i, warn and not (torn_tail and i == len(lines)))
        if t is not None and t.key not in seen:
            seen.add(t.key)
            out.append(t)
    return out


def repair(run_dir: str | Path) -> str | None:
    """Move a torn last line aside so appends start on a fresh line; says what was done, or None."""
    path = Path(run_dir) / NAME
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    if size == 0:
        return None
    with open(path, "rb+") as f:
        data = f.read()
        if data.endswith(b"\n"):
            return None
        start = data.rfind(b"\n") + 1
        torn = data[start:]
        if _parse(torn, path, 0, warn=False) is not None:  # whole but for its newline: keep it
            f.write(b"\n")
            f.flush()
            os.fsync(f.fileno())
            return None
        with open(path.with_name(NAME + ".torn"), "ab") as aside:
            aside.write(torn + b"\n")
        f.truncate(start)
        f.flush()
        os.fsync(f.fileno())
    msg = f"{path}: a torn last line ({len(torn)} bytes) was moved to {NAME}.torn"
    warnings.warn(msg, stacklevel=2)
    return msg


def next_number(trials: list[Trial]) -> int:
    """The number of the next trial: one past the highest in the log."""
    return max((t.number for t in trials), default=-1) + 1


class TrialLog:
    """Appends trials to ``trials.jsonl``, one line per ``write``, after repairing a torn tail once.

    A line handed to the kernel survives the death of this process (``kill -9`` included), so each
    append is one ``write``; ``sync`` (called once per batch, at the checkpoint) also makes the lines
    survive the machine going down. An fsync per trial would cost more than the rest of the loop.
    """

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / NAME
        self._fd: int | None = None

    def append(self, trial: Trial) -> None:
        if self._fd is None:
            repair(self.path.parent)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(self._fd, (trial.to_json() + "\n").encode("utf-8"))  # whole or torn, never interleaved

    def sync(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
