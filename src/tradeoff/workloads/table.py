"""Lookup-table workloads: metrics precomputed per configuration in a CSV/parquet file or frame."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..core.pareto import nondominated_mask
from ..core.trial import TrialError
from ..spaces.params import Choice
from ..spaces.space import Space
from . import Workload, register_workload


def read_table(path: str | Path):
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"table {path} does not exist")
    if path.suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if path.suffix in (".csv", ".txt"):
        try:
            return pd.read_csv(path)
        except pd.errors.EmptyDataError:
            raise ValueError(f"table {path} is empty") from None
        except UnicodeDecodeError as e:
            raise ValueError(f"table {path} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    raise ValueError(f"table {path}: use a .csv or .parquet file")


def check_table(frame, params: Sequence[str], metrics: Sequence[str], source: str = "table") -> None:
    """Refuse a table that cannot be searched, naming the file, the column and the row (CSV line numbers)."""
    import pandas as pd

    def where(i: int) -> str:
        return f"line {i + 2}" if source.endswith((".csv", ".txt")) else f"row {i}"

    if len(frame) == 0:
        raise ValueError(f"{source}: the table has no rows")
    for p in params:
        bad = np.flatnonzero(frame[p].isna().to_numpy())
        if len(bad):
            raise ValueError(f"{source}: column {p!r} has no value at {where(int(bad[0]))}"
                             + (f" (and {len(bad) - 1} more rows)" if len(bad) > 1 else ""))
    for m in metrics:
        col = frame[m]
        num = pd.to_numeric(col, errors="coerce")
        bad = np.flatnonzero(num.isna().to_numpy() & col.notna().to_numpy())
        if len(bad):
            i = int(bad[0])
            raise ValueError(f"{source}: column {m!r} at {where(i)} is {col.iloc[i]!r}, not a number"
                             + (f" (and {len(bad) - 1} more rows)" if len(bad) > 1 else ""))
    dup = frame.duplicated(subset=list(params), keep="first").to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        key = frame[list(params)].iloc[i].to_dict()
        first = int(np.flatnonzero((frame[list(params)] == frame[list(params)].iloc[i]).all(axis=1).to_numpy())[0])
        raise ValueError(f"{source}: configuration {key} (columns {', '.join(params)}) appears at {where(first)} "
                         f"and again at {where(i)} ({int(dup.sum())} duplicate rows); keep one row per configuration")


class SameModel:
    """Maps a config to the first row of the same model (rows that share the ``identity`` column), so
    configurations of one model share a key and a search evaluates it once."""

    def __init__(self, params: Sequence[str], first: dict[tuple, tuple]):
        self.params = list(params)
        self.first = first

    def __call__(self, config: dict[str, Any]) -> dict[str, Any]:
        key = tuple(config[p] for p in self.params)
        return dict(zip(self.params, self.first.get(key, key)))


def same_model(frame, params: Sequence[str], identity: str) -> SameModel:
    first_of: dict[Any, tuple] = {}
    first: dict[tuple, tuple] = {}
    for key, ident in zip(frame[list(params)].itertuples(index=False, name=None), frame[identity].tolist()):
        f = first_of.setdefault(ident, tuple(key))
        if f != tuple(key):
            first[tuple(key)] = f
    return SameModel(params, first)


def table_workload(frame, params: Sequence[str] | None = None, metrics: Sequence[str] | None = None,
                   directions: dict[str, str] | None = None, name: str = "table", source: str = "table",
                   identity: str | None = None) -> Workload:
    """A workload whose evaluate looks the config up in ``frame`` (one row per configuration).

    ``identity`` names a column that identifies the model a row describes (an architecture hash):
    rows that share it are one model, evaluated once by a search."""
    directions = dict(directions or {})
    cols = list(frame.columns)
    if identity is not None and identity not in cols:
        raise ValueError(f"identity: table has no column {identity!r}; it has {', '.join(cols)}")
    if metrics is None:
        metrics = [c for c in cols if c in directions] or [c for c in cols if c not in (params or []) and c != identity]
    if params is None:
        params = [c for c in cols if c not in metrics and c != identity]
    missing = [c for c in [*params, *metrics] if c not in cols]
    if missing:
        raise ValueError(f"table has no column {', '.join(missing)}; it has {', '.join(cols)}")
    if not params:
        raise ValueError("a table workload needs at least one parameter column")
    check_table(frame, params, metrics, source)
    space = Space({p: Choice(sorted(frame[p].dropna().unique().tolist())) for p in params})
    lookup: dict[tuple, dict[str, float]] = {}
    import pandas as pd

    values = frame[list(metrics)].apply(pd.to_numeric).to_numpy(dtype=float)
    for key, row in zip(frame[list(params)].itertuples(index=False, name=None), values):
        lookup.setdefault(tuple(key), dict(zip(metrics, row.tolist())))

    # sparse: the space knows its rows, so no trial asks for a missing one; with an identity column it
    # knows them too, so it counts models, not configurations
    if len(lookup) < space.cardinality or identity is not None:
        space = space.with_rows([dict(zip(params, k)) for k in lookup])
    info: dict[str, Any] = {"rows": len(frame), "unique_configs": len(lookup)}
    if identity is not None:
        space = space.with_canonical(same_model(frame, params, identity))
        info["models"] = int(frame[identity].nunique())

    def evaluate(config: dict[str, Any]) -> dict[str, float]:
        key = tuple(config[p] for p in params)
        if key not in lookup:
            raise TrialError(f"no row in the table for {dict(zip(params, key))}")
        return dict(lookup[key])

    def true_front(objectives: list[str]) -> np.ndarray:
        signs = np.array([1.0 if directions.get(o, "minimize") == "minimize" else -1.0 for o in objectives])
        F = frame[objectives].dropna().to_numpy(dtype=float) * signs
        return F[nondominated_mask(F)]

    return Workload(name, space, evaluate, metrics={m: directions.get(m, "minimize") for m in metrics},
                    default_objectives={m: directions[m] for m in metrics if m in directions},
                    true_front=true_front, info=info)


@register_workload("table")
def make_table(path: str, params: list[str] | None = None, metrics: list[str] | None = None,
               directions: dict[str, str] | None = None, identity: str | None = None) -> Workload:
    return table_workload(read_table(path), params, metrics, directions, name=f"table:{Path(path).name}",
                          source=str(path), identity=identity)
