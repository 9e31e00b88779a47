"""NAS-Bench-Graph (PyPI ``nas-bench-graph``): 26,206 GNN architectures with accuracy, latency, size.

Every raw (link, op1..op4) choice is mapped to its canonical architecture with the package's
own ``valid_hash``, so the searched space is the full 9 x 9^4 grid and isomorphic designs share
one table row, as they would share one trained model; the space keys configs by that hash, so a
search evaluates each architecture once.
"""

from __future__ import annotations

import itertools
from functools import lru_cache

from . import Workload, register_workload
from .table import table_workload

DIRECTIONS = {"accuracy": "maximize", "test_accuracy": "maximize", "latency_ms": "minimize", "params_m": "minimize"}


@lru_cache(maxsize=4)
def nasbench_graph_frame(dataset: str = "cora"):
    """One row per raw configuration of the benchmark's search space for ``dataset``."""
    import pandas as pd
    from nas_bench_graph import Arch, light_read
    from nas_bench_graph.architecture import gnn_list, gnn_list_proteins, link_list

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


@register_workload("nasbench_graph")
def make_nasbench_graph(dataset: str = "cora") -> Workload:
    frame = nasbench_graph_frame(dataset)
    wl = table_workload(frame, params=["link", "op1", "op2", "op3", "op4"], metrics=list(DIRECTIONS),
                        directions=DIRECTIONS, name=f"nasbench_graph:{dataset}", identity="arch")
    wl.default_objectives = {"accuracy": "maximize", "latency_ms": "minimize"}
    wl.info.update(dataset=dataset, architectures=int(frame["arch"].nunique()))
    return wl
