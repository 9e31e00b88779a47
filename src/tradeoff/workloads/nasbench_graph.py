"""NAS-Bench-Graph (PyPI ``nas-bench-graph``): 26,206 GNN architectures with accuracy, latency, size.

Every raw (link, op1..op4) choice is mapped to its canonical architecture with the package's
own ``valid_hash``, so the searched space is the full 9 x 9^4 grid and isomorphic designs share
one table row, as they would share one trained model; the space keys configs by that hash, so a
search evaluates each architecture once.
"""

from __future__ import annotations

import itertools
from functools import lru_cache, partial

import numpy as np

from . import Workload, register_workload
from .table import table_workload

NOT_PASSING = ("fc", "skip")   # operations that pass no messages along the graph's edges
DIRECTIONS = {"accuracy": "maximize", "test_accuracy": "maximize", "latency_ms": "minimize", "params_m": "minimize"}


def nasbench_graph_datasets() -> list[str]:
    """The datasets whose tables ship with the installed package."""
    from pathlib import Path

    import nas_bench_graph

    return sorted(f.stem for f in (Path(nas_bench_graph.__file__).parent / "light").glob("*.bench"))


@lru_cache(maxsize=4)
def nasbench_graph_frame(dataset: str = "cora"):
    """One row per raw configuration of the benchmark's search space for ``dataset``."""
    import pandas as pd
    from nas_bench_graph import Arch, light_read
    from nas_bench_graph.architecture import gnn_list, gnn_list_proteins, link_list

    if dataset not in nasbench_graph_datasets():
        raise ValueError(f"dataset {dataset!r} is not one of {', '.join(nasbench_graph_datasets())}")
    bench = light_read(dataset)
    ops = gnn_list_proteins if dataset == "proteins" else gnn_list
    rows = []
    for link in link_list:
        for choice in itertools.product(ops, repeat=4):
            try:
                h = Arch(list(link), list(choice)).valid_hash()
            except (KeyError, ValueError, IndexError):
                continue
            r = bench.get(h)
            if r is None:
                continue
            rows.append({"link": "".join(map(str, link)), "op1": choice[0], "op2": choice[1], "op3": choice[2],
                         "op4": choice[3], "accuracy": float(r["valid_perf"]), "test_accuracy": float(r["perf"]),
                         "latency_ms": 1000.0 * float(r["latency"]), "params_m": float(r["para"]), "arch": h})
    return pd.DataFrame(rows)


def gnn_cell_features(configs: list[dict], values: tuple[str, ...]) -> np.ndarray:
    """The cell's structure for the predictors: ``link`` "0112" means node 1 reads the input, node 2
    and 3 read node 1, node 4 reads node 2 (see ``cell_features``); the operations that pass
    messages set each output's receptive field, which much of a GNN's accuracy follows."""
    from ..predictors.encodings import cell_features

    return cell_features([[int(ch) for ch in str(c["link"])] for c in configs],
                         [[c[f"op{i}"] for i in range(1, 5)] for c in configs], list(values),
                         passes={v for v in values if v not in NOT_PASSING})


@register_workload("nasbench_graph")
def make_nasbench_graph(dataset: str = "cora") -> Workload:
    frame = nasbench_graph_frame(dataset)
    wl = table_workload(frame, params=["link", "op1", "op2", "op3", "op4"], metrics=list(DIRECTIONS),
                        directions=DIRECTIONS, name=f"nasbench_graph:{dataset}", identity="arch")
    wl.default_objectives = {"accuracy": "maximize", "latency_ms": "minimize"}
    wl.space = wl.space.with_features(partial(gnn_cell_features, values=tuple(wl.space["op1"].values)))
    wl.info.update(dataset=dataset, architectures=int(frame["arch"].nunique()))
    return wl
