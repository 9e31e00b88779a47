"""Richer features where a space has structure: cells whose slots share one set of operations.

``Space.encode`` gives each param its own features (one-hot per unordered choice). In a cell
(NAS-Bench-101/201/Graph style), several params pick from the same operations; what often
matters for cost, and much for accuracy, is how many of each operation the cell holds, in any
slot. ``structured_features`` appends, for each group of two or more params sharing one value
set, the count of each value over the group (a bag-of-operations encoding), and, for each pair
(another unordered choice in the space, operation), an indicator that the two co-occur, so a
tree or GP sees "this wiring with that operation" directly. A space that knows more of its own
structure says so with ``Space.with_features``, and its columns are appended too:
``cell_features`` gives them for a cell of nodes that each take one earlier node's output.

A space that knows which configs build the same model (``Space.with_canonical``: isomorphic
cells, a supernet's inactive slots) gives every config the features of its canonical one, so
configs of one model look alike to a predictor, as their results do.
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
    """``encode`` plus value counts per slot group, (other choice, op) co-occurrence, and the
    space's own features (``Space.with_features``), each of the config's canonical model."""
    configs = as_built(space, configs)
    return _with_own(space, configs, _grouped(space, configs))


def as_built(space, configs: list[dict]) -> list[dict]:
    """Each config as the canonical config of the model it builds (itself without a canonical rule)."""
    canonical = getattr(space, "canonical", None)
    return list(configs) if canonical is None else [canonical(c) for c in configs]


def _with_own(space, configs, X: np.ndarray) -> np.ndarray:
    own = getattr(space, "extra_features", None)
    if own is None or not len(configs):
        return X
    return np.hstack([X, np.asarray(own(configs), float).reshape(len(configs), -1)])


def _grouped(space, configs: list[dict]) -> np.ndarray:
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
    configs = None
    if getattr(space, "canonical", None) is not None:  # the canonical model's values, as indices again
        configs = as_built(space, [{n: domains[j][i] for j, (n, i) in enumerate(zip(names, ix))} for ix in index])
        at = [{repr(v): i for i, v in enumerate(d)} for d in domains]
        index = np.array([[at[j][repr(c[n])] for j, n in enumerate(names)] for c in configs],
                         dtype=int).reshape(-1, len(names))
    X = _grid_grouped(space, domains, index, structured)
    if not structured or getattr(space, "extra_features", None) is None:
        return X
    if configs is None:
        configs = [{n: domains[j][i] for j, (n, i) in enumerate(zip(names, ix))} for ix in index]
    return _with_own(space, configs, X)


def _grid_grouped(space, domains: list[list], index: np.ndarray, structured: bool) -> np.ndarray:
    names = space.names
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


def cell_features(inputs: list[list[int]], ops: list[list], values: list, passes: set | None = None) -> np.ndarray:
    """Features of cells whose node ``i`` (1-based) applies ``ops[c][i - 1]`` to the output of node
    ``inputs[c][i - 1]`` (0: the cell's input); the nodes no other node reads are its outputs.

    Per cell: how many nodes hold each operation at each depth (an adjacency encoding that says
    where in the cell an operation sits), over the paths from the input to each output how many of
    each operation the path holds (most and mean: a path encoding folded to counts), the number of
    outputs, the greatest and mean output depth, and, when ``passes`` names the operations that
    propagate (message passing in a GNN, a convolution in a CNN), the most, fewest and mean such
    operations on a path: the receptive field of each output."""
    k, at = len(values), {repr(v): j for j, v in enumerate(values)}
    onehot = np.eye(k)[np.array([[at[repr(o)] for o in op] for op in ops], dtype=int).reshape(len(ops), -1)]
    passing = {repr(p) for p in passes} if passes is not None else None
    prop = np.array([repr(v) in passing for v in values], float) if passing is not None else None
    cells: dict[tuple, list[int]] = defaultdict(list)   # the wiring is shared by many cells: worked out once
    for r, link in enumerate(inputs):
        cells[tuple(int(x) for x in link)].append(r)
    n_nodes = len(inputs[0]) if len(inputs) else 0   # every cell has as many nodes
    out = np.zeros((len(ops), n_nodes * k + 3 * k + 3 + (3 if prop is not None else 0)))
    for link, rs in cells.items():
        n = len(link)
        depth = [0] * (n + 1)
        for i in range(n):
            depth[i + 1] = depth[link[i]] + 1
        read = set(link)
        outputs = [i for i in range(1, n + 1) if i not in read]
        oh = onehot[rs]                                             # cells x nodes x operations
        by_depth = np.zeros((len(rs), n, k))
        for i in range(n):
            by_depth[:, depth[i + 1] - 1] += oh[:, i]
        paths = []
        for leaf in outputs:
            nodes, node = [], leaf
            while node:
                nodes.append(node - 1)
                node = link[node - 1]
            paths.append(oh[:, nodes].sum(axis=1))
        paths = np.stack(paths, axis=1)                             # cells x outputs x operations
        out_depth = [depth[o] for o in outputs]
        at_outputs = oh[:, [o - 1 for o in outputs]].sum(axis=1)     # cells x operations
        cols = [by_depth.reshape(len(rs), -1), at_outputs, paths.max(axis=1), paths.mean(axis=1),
                np.tile([len(outputs), max(out_depth), float(np.mean(out_depth))], (len(rs), 1))]
        if prop is not None:
            hops = paths @ prop
            cols.append(np.stack([hops.max(axis=1), hops.min(axis=1), hops.mean(axis=1)], axis=1))
        out[rs] = np.hstack(cols)
    return out
