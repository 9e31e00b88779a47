"""HAWQ-style mixed precision: per-layer sensitivity from the Fisher trace, bits by integer program.

Each layer's cost of ``b`` bits is ``Omega_i(b) = tr(F_i) / n_i * ||Q_b(W_i) - W_i||^2`` (HAWQ-V2's
form, with the empirical Fisher's diagonal standing in for the Hessian's), and the bits minimise
the total under a weight-size budget, one bit-width per layer (``scipy.optimize.milp``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def fisher_traces(model, layers: Sequence[str], x: np.ndarray, y: np.ndarray, n: int = 256,
                  batch: int = 32) -> dict[str, float]:
    """Mean diagonal of the empirical Fisher of each layer's weight, over ``n`` labelled samples."""
    import copy

    import torch

    net = copy.deepcopy(model).eval()   # eval: BN statistics stay as trained
    mods = dict(net.named_modules())
    weights = {name: mods[name].weight for name in layers if name in mods and hasattr(mods[name], "weight")}
    acc = {name: torch.zeros_like(w) for name, w in weights.items()}
    xt = torch.from_numpy(np.ascontiguousarray(x[:n], dtype=np.float32))
    yt = torch.from_numpy(np.asarray(y[:n]))
    loss_fn = torch.nn.CrossEntropyLoss()
    steps = 0
    for i in range(0, len(xt), batch):
        net.zero_grad()
        loss_fn(net(xt[i:i + batch]), yt[i:i + batch]).backward()
        for name, w in weights.items():
            if w.grad is not None:
                acc[name] += w.grad.detach() ** 2
        steps += 1
    return {name: float(a.sum() / max(1, steps) / a.numel()) for name, a in acc.items()}


def quant_error(w: np.ndarray, bits: int) -> float:
    """||Q(w) - w||^2 for symmetric per-output-channel quantization to ``bits`` (0 for float)."""
    if bits >= 16:
        return 0.0
    flat = w.reshape(w.shape[0], -1)
    qmax = 2 ** (bits - 1) - 1
    scale = np.maximum(np.abs(flat).max(axis=1, keepdims=True), 1e-12) / qmax
    q = np.clip(np.rint(flat / scale), -qmax - 1, qmax) * scale
    return float(((q - flat) ** 2).sum())


def allocate(omega: Mapping[str, Mapping[int, float]], sizes: Mapping[str, Mapping[int, float]],
             budget: float) -> dict[str, int]:
    """One bit-width per layer minimising the summed ``omega`` with summed ``sizes`` <= ``budget``."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    pairs = [(name, b) for name in omega for b in sorted(omega[name])]
    c = np.array([omega[n][b] for n, b in pairs], dtype=float)
    names = list(omega)
    one = np.zeros((len(names), len(pairs)))
    for j, (n, _) in enumerate(pairs):
        one[names.index(n), j] = 1.0
    size = np.array([[sizes[n][b] for n, b in pairs]])
    res = milp(c, integrality=np.ones(len(pairs)), bounds=Bounds(0, 1),
               constraints=[LinearConstraint(one, 1, 1), LinearConstraint(size, -np.inf, budget)])
    if not res.success:
        raise ValueError(f"sensitivity: no allocation fits the size budget {budget:.0f} bytes ({res.message})")
    return {n: b for (n, b), v in zip(pairs, res.x) if v > 0.5}


def sensitivity_bits(model, layers: Sequence[str], labelled: tuple[np.ndarray, np.ndarray], bits: Sequence[int],
                     size_budget: float = 0.75) -> dict[str, int]:
    """Bits per layer: the HAWQ-style allocation within ``size_budget`` x the all-int8 weight bytes.

    Layers with no matching torch module (or no weight) get 8 bits.
    """
    mods = dict(model.named_modules())
    traces = fisher_traces(model, layers, *labelled)
    omega: dict[str, dict[int, float]] = {}
    sizes: dict[str, dict[int, float]] = {}
    fixed: dict[str, int] = {}
    for name in layers:
        if name not in traces:
            fixed[name] = 8
            continue
        w = mods[name].weight.detach().cpu().numpy()
        omega[name] = {b: traces[name] * quant_error(w, b) for b in bits}
        sizes[name] = {b: w.size * b / 8 for b in bits}
    budget = size_budget * sum(s[8] if 8 in s else min(s.values()) for s in sizes.values())
    return {**fixed, **allocate(omega, sizes, budget)} if omega else fixed
