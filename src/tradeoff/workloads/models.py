"""Built-in trained models with their data, for compression: nothing is downloaded.

- ``digits_cnn``: a small CNN (a residual depthwise block included) on scikit-learn's digits,
  upsampled to 16x16;
- ``timm:<name>``: ``timm.create_model(name, pretrained=False, num_classes=10, in_chans=1)`` on the
  digits upsampled to 32x32 (``pretrained=True`` loads timm's weights first, for users who have them);
- ``mnist1d_cnn``: a 1-D CNN on mnist1d, whose generator builds the data offline.

Training is deterministic and short (seconds to a minute on one CPU thread); the weights and
data are cached under ``$TRADEOFF_MODELS`` (default ``<tradeoff home>/models``), keyed by
everything that changes them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.paths import tradeoff_home

VAL_FRACTION = 0.3
CALIB_N = 128


@dataclass
class TrainedModel:
    """A trained model (eval mode), batch-1 example inputs, and its splits as numpy arrays."""

    name: str
    model: Any
    example_inputs: tuple
    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray]
    calib: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


def models_dir() -> Path:
    return Path(os.environ.get("TRADEOFF_MODELS") or tradeoff_home() / "models").resolve()


# -- data ------------------------------------------------------------------------------------------
def digits_data(hw: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
    """scikit-learn's 1,797 8x8 digits, scaled to [0, 1], upsampled to hw x hw, split 70/30 stratified."""
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = torch.tensor(d.images[:, None].astype(np.float32) / 16.0)
    if hw != 8:
        x = torch.nn.functional.interpolate(x, size=(hw, hw), mode="bilinear", align_corners=False)
    x = x.numpy()
    xt, xv, yt, yv = train_test_split(x, d.target, test_size=VAL_FRACTION, random_state=seed, stratify=d.target)
    return {"x": xt, "y": yt.astype(np.int64), "x_val": xv, "y_val": yv.astype(np.int64),
            "split": f"scikit-learn digits {hw}x{hw}, stratified {1 - VAL_FRACTION:.0%}/{VAL_FRACTION:.0%} "
                     f"train/held-out, seed {seed}"}


def mnist1d_data(seed: int = 42) -> dict[str, np.ndarray]:
    """mnist1d generated offline (``make_dataset``, its default 4,000/1,000 split), cached as npz."""
    path = models_dir() / f"mnist1d-{seed}.npz"
    if not path.exists():
        from mnist1d.data import get_dataset_args, make_dataset

        args = get_dataset_args()
        args.seed = seed
        d = make_dataset(args)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, x=d["x"], y=d["y"], x_test=d["x_test"], y_test=d["y_test"])
        os.replace(tmp, path)
    d = np.load(path)
    f = lambda a: a[:, None, :].astype(np.float32)
    return {"x": f(d["x"]), "y": d["y"].astype(np.int64), "x_val": f(d["x_test"]), "y_val": d["y_test"].astype(np.int64),
            "split": f"mnist1d make_dataset seed {seed}: its 4,000 train / 1,000 test, test held out"}


# -- models ----------------------------------------------------------------------------------------
def digits_cnn(width: int = 32):
    """Stem, a strided conv, a residual depthwise-separable block, a strided conv, pool, classifier."""
    from torch import nn

    class Residual(nn.Module):
        def __init__(self, c: int):
            super().__init__()
            self.dw = nn.Sequential(nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False), nn.BatchNorm2d(c), nn.ReLU())
            self.pw = nn.Sequential(nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c))
            self.act = nn.ReLU()

        def forward(self, x):
            return self.act(x + self.pw(self.dw(x)))

    w = width
    return nn.Sequential(
        nn.Sequential(nn.Conv2d(1, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU()),
        nn.Sequential(nn.Conv2d(w, 2 * w, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(2 * w), nn.ReLU()),
        Residual(2 * w),
        nn.Sequential(nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(4 * w), nn.ReLU()),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * w, 10))


def mnist1d_cnn(width: int = 32):
    from torch import nn

    w = width
    return nn.Sequential(
        nn.Conv1d(1, w, 5, padding=2), nn.ReLU(),
        nn.Conv1d(w, w, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv1d(w, 2 * w, 3, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(2 * w * 10, 128), nn.ReLU(), nn.Linear(128, 10))


def timm_model(name: str, pretrained: bool = False):
    import timm

    return timm.create_model(name, pretrained=pretrained, num_classes=10, in_chans=1)


# -- training --------------------------------------------------------------------------------------
def train(model, x: np.ndarray, y: np.ndarray, steps: int, lr: float = 3e-3, batch: int = 64, seed: int = 0,
          weight_decay: float = 1e-4):
    """Adam with a cosine schedule for ``steps`` minibatches; deterministic for a seed; returns the model in eval mode."""
    import torch

    g = torch.Generator().manual_seed(seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, steps))
    loss_fn = torch.nn.CrossEntropyLoss()
    for _ in range(int(steps)):
        idx = torch.randint(0, len(xt), (batch,), generator=g)
        opt.zero_grad()
        loss_fn(model(xt[idx]), yt[idx]).backward()
        opt.step()
        sched.step()
    return model.eval()


def recovery_finetune(model, x: np.ndarray, y: np.ndarray, steps: int, seed: int = 0,
                      lr: float = 3e-3) -> tuple[Any, dict[str, float]]:
    """A pruned model's short recovery fine-tune on one thread, isolated from the caller's RNG; its cost recorded."""
    import time

    import torch

    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = train(model, np.ascontiguousarray(x, dtype=np.float32), np.asarray(y), steps, lr=lr, seed=seed)
    finally:
        torch.set_num_threads(threads)
    return model, {"finetune_steps": int(steps), "finetune_lr": float(lr), "finetune_s": time.perf_counter() - t0}


def accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    import torch

    with torch.no_grad():
        return float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


def _cached(key: dict, build: Callable[[], Any], fit: Callable[[Any], Any]):
    """The model ``build()`` makes, with weights from the cache, or trained by ``fit`` and cached.

    ``fit`` may return ``(model, meta)``: the meta (JSON) is kept beside the weights, read back with
    ``cached_meta(path)``.
    """
    import torch

    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]
    path = models_dir() / f"{key['name'].replace(':', '-')}-{digest}.pt"
    model = build()
    if path.exists():
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return model.eval(), path, False
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(key.get("seed", 0)))
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            model = fit(build())
        finally:
            torch.set_num_threads(threads)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(model, tuple):  # the meta first: weights on disk mean both are there
        model, meta = model
        path.with_suffix(".json").write_text(json.dumps(meta))
    tmp = path.with_suffix(".tmp")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, path)
    return model.eval(), path, True


def cached_meta(path: Path) -> dict:
    """What ``fit`` recorded beside a cached model's weights."""
    return json.loads(path.with_suffix(".json").read_text())


def load_model(name: str, steps: int | None = None, seed: int = 0, pretrained: bool = False) -> TrainedModel:
    """A built-in by name (``digits_cnn``, ``mnist1d_cnn``, ``timm:<name>``), trained once and cached."""
    import torch

    if name == "digits_cnn":
        data, build, steps = digits_data(16), digits_cnn, steps or 300
    elif name == "mnist1d_cnn":
        data, build, steps = mnist1d_data(), mnist1d_cnn, steps or 2000
    elif name.startswith("timm:"):
        arch = name[len("timm:"):]
        data, steps = digits_data(32), steps or 300
        build = lambda: timm_model(arch, pretrained)
    else:
        raise ValueError(f"model: {name!r} is not one of digits_cnn, mnist1d_cnn, timm:<name> "
                         f"(or python: module:function)")
    key = {"name": name, "steps": steps, "seed": seed, "pretrained": pretrained, "split": data["split"],
           "torch": torch.__version__.split("+")[0]}
    model, path, trained = _cached(key, build, lambda m: train(m, data["x"], data["y"], steps, seed=seed))
    x, y, xv, yv = data["x"], data["y"], data["x_val"], data["y_val"]
    example = (torch.from_numpy(xv[:1]).clone(),)
    info = {"model": name, "split": data["split"], "val_n": int(len(yv)), "train_n": int(len(y)),
            "calib_n": int(min(CALIB_N, len(x))), "train_steps": steps, "cache": path.name,
            "trained_now": trained, "fp32_val_accuracy_torch": accuracy(model, xv, yv)}
    return TrainedModel(name, model, example, (x, y), (xv, yv), x[:CALIB_N], info)
