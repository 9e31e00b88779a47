"""How good a predictor is on data it did not see: MAPE, share within ±10%, Kendall tau, R², top-10% recall."""

from __future__ import annotations

import copy

import numpy as np
from scipy.stats import kendalltau


def quality(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    denom = np.where(np.abs(y_true) > 1e-12, np.abs(y_true), 1e-12)
    rel = np.abs(y_pred - y_true) / denom
    ss_res = float(np.sum((y_true - y_pred) ** 2))
    ss_tot = float(np.sum((y_true - y_true.mean()) ** 2)) or 1e-12
    tau = kendalltau(y_true, y_pred).statistic if len(y_true) > 2 else float("nan")
    k = max(1, int(np.ceil(0.1 * len(y_true))))  # the best (smallest) tenth, found among the predicted best tenth
    top = len(set(np.argsort(y_true)[:k]) & set(np.argsort(y_pred)[:k])) / k
    return {"mape": float(rel.mean()), "top10_recall": float(top), "within_10pct": float((rel <= 0.10).mean()),
            "kendall_tau": float(tau) if tau == tau else 0.0, "r2": 1.0 - ss_res / ss_tot, "n": float(len(y_true))}


def selection_score(q: dict[str, float]) -> float:
    """One number to rank predictors by: ranking first (tau), finding the best (recall), then error."""
    return q["kendall_tau"] + 0.5 * q.get("top10_recall", 0.0) - 0.1 * min(q["mape"], 1.0)


def cross_validated(predictor, X: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0) -> dict[str, float]:
    """Quality of out-of-fold predictions (each point predicted by a model that never saw it)."""
    X, y = np.asarray(X, float), np.asarray(y, float)
    n = len(y)
    folds = max(2, min(folds, n))
    idx = np.random.default_rng(seed).permutation(n)
    pred = np.empty(n)
    for k in range(folds):
        test = idx[k::folds]
        train = np.setdiff1d(idx, test)
        m = copy.deepcopy(predictor).fit(X[train], y[train])
        pred[test] = m.predict(X[test])[0]
    return quality(y, pred)
