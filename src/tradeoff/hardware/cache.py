"""Measurement cache on disk: the same compiled model on the same target is timed once, ever.

Keyed by (hash of the deployed artifact's bytes, target name, target settings); stored in a
SQLite file so parallel evaluations and later runs share it. A noisy figure is the exception:
asked for again, it counts as a miss and is timed again until it has been measured
``remeasure_noisy`` times in all (``attempts`` in its row); the better figure is kept.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from .timing import LatencyStats


def measurement_key(artifact_digest: str, target: str, settings: dict[str, Any]) -> str:
    blob = json.dumps({"a": artifact_digest, "t": target, "s": settings}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def better(new: LatencyStats, old: LatencyStats) -> bool:
    """Whether ``new`` should replace ``old``: a clean figure beats a noisy one, a tighter noisy one a looser."""
    return not new.noisy or (old.noisy and new.ci_rel < old.ci_rel)


class MeasurementCache:
    def __init__(self, path: str | Path | None = None):
        if path is None:
            from ..core.paths import tradeoff_home

            path = tradeoff_home() / "measurements.sqlite"
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.remeasured = 0     # misses that were noisy figures in the cache, asked for again and timed again
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS m (key TEXT PRIMARY KEY, target TEXT, stats TEXT, "
                       "created REAL DEFAULT (julianday('now')), attempts INTEGER NOT NULL DEFAULT 1)")
            columns = {row[1] for row in db.execute("PRAGMA table_info(m)")}
            if "attempts" not in columns:   # a cache written before attempts were counted
                try:
                    db.execute("ALTER TABLE m ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1")
                except sqlite3.OperationalError as e:   # another process added it meanwhile
                    if "duplicate column" not in str(e):
                        raise

    def _connect(self):
        return sqlite3.connect(self.path, timeout=30)

    def get(self, key: str, remeasure_noisy: int = 0) -> LatencyStats | None:
        """The stored figure, or None: none stored, or a noisy one measured fewer than ``remeasure_noisy`` times."""
        row = self.lookup(key)
        if row is None:
            self.misses += 1
            return None
        stats, attempts = row
        if stats.noisy and attempts < remeasure_noisy:
            self.misses += 1
            self.remeasured += 1
            return None
        self.hits += 1
        return stats

    def lookup(self, key: str) -> tuple[LatencyStats, int] | None:
        """The stored figure (``cached=True``) and how many times it was measured, without counting a hit."""
        with self._lock, self._connect() as db:
            row = db.execute("SELECT stats, attempts FROM m WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        stats = LatencyStats.from_dict(json.loads(row[0]))
        stats.cached, stats.seconds = True, 0.0
        return stats, int(row[1])

    def put(self, key: str, stats: LatencyStats) -> int:
        """Store a new measurement of ``key``, keeping the better of it and the stored one; the attempts now."""
        with self._lock, self._connect() as db:
            db.execute("BEGIN IMMEDIATE")   # read and write as one: parallel workers may time the same model
            row = db.execute("SELECT stats, attempts FROM m WHERE key = ?", (key,)).fetchone()
            attempts = 1 if row is None else int(row[1]) + 1
            if row is None or better(stats, LatencyStats.from_dict(json.loads(row[0]))):
                db.execute("INSERT OR REPLACE INTO m (key, target, stats, attempts) VALUES (?, ?, ?, ?)",
                           (key, stats.target, json.dumps(stats.to_dict(), default=str), attempts))
            else:
                db.execute("UPDATE m SET attempts = ? WHERE key = ?", (attempts, key))
        return attempts

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def __len__(self) -> int:
        with self._connect() as db:
            return int(db.execute("SELECT COUNT(*) FROM m").fetchone()[0])
