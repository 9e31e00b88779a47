"""Measurement cache on disk: the same compiled model on the same target is timed once, ever.

Keyed by (hash of the deployed artifact's bytes, target name, target settings); stored in a
SQLite file so parallel evaluations and later runs share it.
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
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS m (key TEXT PRIMARY KEY, target TEXT, stats TEXT, "
                       "created REAL DEFAULT (julianday('now')))")

    def _connect(self):
        return sqlite3.connect(self.path, timeout=30)

    def get(self, key: str) -> LatencyStats | None:
        with self._lock, self._connect() as db:
            row = db.execute("SELECT stats FROM m WHERE key = ?", (key,)).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        stats = LatencyStats.from_dict(json.loads(row[0]))
        stats.cached, stats.seconds = True, 0.0
        return stats

    def put(self, key: str, stats: LatencyStats) -> None:
        with self._lock, self._connect() as db:
            db.execute("INSERT OR REPLACE INTO m (key, target, stats) VALUES (?, ?, ?)",
                       (key, stats.target, json.dumps(stats.to_dict(), default=str)))

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def __len__(self) -> int:
        with self._connect() as db:
            return int(db.execute("SELECT COUNT(*) FROM m").fetchone()[0])
