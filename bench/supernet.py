"""Supernet quality: accuracy of random subnets extracted from the trained supernet vs the same
subnets trained from scratch briefly, and how well the two rankings agree (Kendall tau).

    python bench/supernet.py [--n 8] [--scratch-steps 150] [--supernet-steps 400]

One CPU thread; timings are not the point here, accuracies are (held-out split, torch, fp32).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from scipy.stats import kendalltau

from tradeoff.workloads.models import accuracy, train
from tradeoff.workloads.supernet import build_net, extreme, load_supernet


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=8, help="random subnets (plus the largest and smallest)")
    ap.add_argument("--scratch-steps", type=int, default=150)
    ap.add_argument("--supernet-steps", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    sup, info = load_supernet(args.supernet_steps, args.seed)
    data = info["data"]
    print(f"supernet: {args.supernet_steps} sandwich steps ({'trained now' if info['trained_now'] else 'cached'}, "
          f"{time.perf_counter() - t0:.0f}s)")
    rng = np.random.default_rng(args.seed)
    configs = [("largest", extreme("max")), ("smallest", extreme("min"))]
    configs += [(f"random{i}", sup.space.sample(rng)) for i in range(args.n)]
    print(f"{'subnet':10} {'res':>3} {'params':>7} {'extracted':>9} {'no BN recal':>11} "
          f"{'scratch ' + str(args.scratch_steps):>12}")
    ext, scratch = [], []
    for name, cfg in configs:
        d = data[int(cfg["res"])]
        raw = accuracy(sup.subnet(cfg), d["x_val"], d["y_val"])
        sub = sup.subnet(cfg, bn_data=d["x"])
        a = accuracy(sub, d["x_val"], d["y_val"])
        torch.manual_seed(args.seed)
        fresh = train(build_net(sup.spec, cfg), d["x"], d["y"], args.scratch_steps, seed=args.seed)
        s = accuracy(fresh, d["x_val"], d["y_val"])
        ext.append(a)
        scratch.append(s)
        n = sum(p.numel() for p in sub.parameters())
        print(f"{name:10} {cfg['res']:>3} {n:>7} {a:>9.3f} {raw:>11.3f} {s:>12.3f}", flush=True)
    tau = kendalltau(ext, scratch)
    print(f"Kendall tau (extracted vs scratch ranking, {len(configs)} subnets): {tau.statistic:.2f} "
          f"(p={tau.pvalue:.2f}); total {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
