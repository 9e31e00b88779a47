"""A sparse table's stand-ins: a config the table lacks is answered by its nearest row.

Algorithms that cannot know a table's rows (Optuna's, pymoo's) may ask for a config it lacks. The
search evaluates the nearest row not yet evaluated in its place and tells the algorithm that row's
result; the trial records the config it stands in for. The live loop and the replay of a trial log
map an ask the same way, so a search rebuilt from its log asks what the interrupted one asked.
"""

from __future__ import annotations

from collections.abc import Container

from ..spaces.space import Config, Space


def answer(space: Space, configs: list[Config], evaluated: Container[str]) -> tuple[list[Config], dict[str, dict]]:
    """The configs to evaluate for ``configs`` (each itself, or on a sparse table its nearest row whose
    key is not in ``evaluated``), and for each stand-in row's key the JSON config it answers for."""
    if getattr(space, "rows", None) is None:
        return configs, {}
    rows, stand_ins = [], {}
    for c in configs:
        row = space.nearest_row(c, evaluated)
        if not space.exists(c):
            stand_ins.setdefault(space.key(row), space.to_json(c))
        rows.append(row)
    return rows, stand_ins
