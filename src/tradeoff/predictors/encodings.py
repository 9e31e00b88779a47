"""Richer features where a space has structure: cells whose slots share one set of operations.

``Space.encode`` gives each param its own features (one-hot per unordered choice). In a cell
(NAS-Bench-101/201/Graph style), several params pick from the same operations; what often
matters for cost, and much for accuracy, is how many of each operation the cell holds, in any
slot. ``structured_features`` appends, for each group of two or more params sharing one value
set, the count of each value over the group (a bag-of-operations encoding), and, for each pair
(another unordered choice in the space, operation), an indicator that the two co-occur, so a
tree or GP sees "this wiring with that operation" directly.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np


def slot_groups(space) -> list[list[str]]:
    """Params with identical unordered value sets (two or more of them)."""
    groups: dict[tuple, list[str]] = defaultdict(list)
    for name, p in space.params.items():
        if getattr(p, "kind", None) == "choice" and not p.ordered and len(p.values) > 2:
            groups[tuple(map(repr, p.values))].append(name)
    return [g for g in groups.values() if len(g) >= 2]


def structured_features(space, configs: list[dict]) -> np.ndarray:
    """``encode`` plus value counts per slot group, and (other choice, op) co-occurrence."""
    base = space.encode_many(configs)
    groups = slot_groups(space)
    if not groups:
        return base
    in_group = {n for g in groups for n in g}
    others = [n for n, p in space.params.items() if n not in in_group and getattr(p, "kind", None) == "choice"
              and not p.ordered and 2 < len(p.values) <= 16]
    extra = []
    for g in groups:
        values = space[g[0]].values
        index = {repr(v): i for i, v in enumerate(values)}
        counts = np.zeros((len(configs), len(values)))
        for r, c in enumerate(configs):
            for name in g:
                counts[r, index[repr(c[name])]] += 1
        extra.append(counts)
        for o in others:
            ov = {repr(v): i for i, v in enumerate(space[o].values)}
            co = np.zeros((len(configs), len(space[o].values) * len(values)))
            for r, c in enumerate(configs):
                co[r, ov[repr(c[o])] * len(values): (ov[repr(c[o])] + 1) * len(values)] = counts[r] > 0
            extra.append(co)
    return np.hstack([base, *extra])


def grid_features(space, domains: list[list], index: np.ndarray, structured: bool = True) -> np.ndarray:
    """The features of ``structured_features`` (or ``encode`` when not structured) for configs given
    as value indices, one column per param into its ``domains`` list: vectorised, for a search
    that predicts thousands of configs of an enumerated space every round."""
    names = space.names
    index = np.asarray(index, dtype=int).reshape(-1, len(names))
    n = len(index)
    cols = [np.stack([np.asarray(space[name].features(v), float) for v in domains[j]])[index[:, j]]
            for j, name in enumerate(names)]
    base = np.hstack(cols) if cols else np.zeros((n, 0))
    groups = slot_groups(space) if structured else []
    if not groups:
        return base
    pos = {name: j for j, name in enumerate(names)}

    def value_index(name, values):  # each domain value of ``name`` -> its place in ``values``
        at = {repr(v): i for i, v in enumerate(values)}
        return np.array([at[repr(v)] for v in domains[pos[name]]], dtype=int)

    in_group = {name for g in groups for name in g}
    others = [name for name, p in space.params.items() if name not in in_group and getattr(p, "kind", None) == "choice"
              and not p.ordered and 2 < len(p.values) <= 16]
    rows = np.arange(n)
    extra = []
    for g in groups:
        values = space[g[0]].values
        counts = np.zeros((n, len(values)))
        for name in g:
            counts[rows, value_index(name, values)[index[:, pos[name]]]] += 1
        extra.append(counts)
        present = counts > 0
        for o in others:
            co = np.zeros((n, len(space[o].values), len(values)))
            co[rows, value_index(o, space[o].values)[index[:, pos[o]]]] = present
            extra.append(co.reshape(n, -1))
    return np.hstack([base, *extra])
