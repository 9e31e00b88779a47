"""A diffusion test bed that runs on a CPU: a tiny diffusers PixArt transformer trained on scikit-learn's digits.

The caption is the digit's class as learned tokens (at least 2, so cross-attention varies with
the position in the caption and caching it is not trivially lossless); class 10 is the empty
caption used for classifier-free guidance. Training is deterministic and cached on disk under
``tradeoff_home()``; a small classifier of the same digits gives the features for the Fréchet
distance and the class-consistency check.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..core.paths import tradeoff_home

NULL_CLASS = 10


@dataclass(frozen=True)
class BedSpec:
    """Everything that decides the trained weights (and so the cache key)."""

    layers: int = 6
    heads: int = 4
    head_dim: int = 16
    patch: int = 2
    caption_tokens: int = 2
    caption_dim: int = 32
    train_steps: int = 1000
    batch: int = 64
    lr: float = 2e-3
    seed: int = 0

    def key(self) -> str:
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


def digits(split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 8x8 digits in [-1, 1], 1 channel; the last 297 images are the held-out split."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 8.0 - 1.0
    y = torch.tensor(d.target, dtype=torch.long)
    return (x[:1500], y[:1500]) if split == "train" else (x[1500:], y[1500:])


def build_transformer(spec: BedSpec, size: int = 8):
    from diffusers import PixArtTransformer2DModel

    return PixArtTransformer2DModel(
        num_attention_heads=spec.heads, attention_head_dim=spec.head_dim, in_channels=1, out_channels=1,
        num_layers=spec.layers, cross_attention_dim=spec.heads * spec.head_dim, sample_size=size,
        patch_size=spec.patch, caption_channels=spec.caption_dim, use_additional_conditions=False,
        norm_num_groups=1)


class Captions(nn.Module):
    """The class (0-9, or 10 = empty) as ``tokens`` learned caption vectors."""

    def __init__(self, tokens: int, dim: int):
        super().__init__()
        self.tokens, self.dim = tokens, dim
        self.table = nn.Embedding(NULL_CLASS + 1, tokens * dim)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return self.table(labels).view(len(labels), self.tokens, self.dim)


class DigitsPipe:
    """A class-conditional sampler: DDIM with classifier-free guidance over a diffusers transformer."""

    def __init__(self, transformer, captions: Captions, scheduler=None, guidance: float = 3.0, size: int = 8):
        from diffusers import DDIMScheduler

        self.transformer, self.captions = transformer.eval(), captions.eval()
        self.scheduler = scheduler or DDIMScheduler(num_train_timesteps=1000, clip_sample=False)
        self.guidance, self.size = guidance, size

    @torch.no_grad()
    def __call__(self, prompts: Sequence[int], seeds: Sequence[int], steps: int = 20, size: int | None = None) -> torch.Tensor:
        """One image per (prompt, seed) pair, in [-1, 1], shape N x 1 x size x size."""
        size = size or self.size
        labels = torch.tensor([int(p) for p in prompts], dtype=torch.long)
        x = torch.cat([torch.randn(1, 1, size, size, generator=torch.Generator().manual_seed(int(s))) for s in seeds])
        cond = self.captions(torch.cat([torch.full_like(labels, NULL_CLASS), labels]))
        self.scheduler.set_timesteps(steps)
        for t in self.scheduler.timesteps:
            inp = torch.cat([x, x])
            eps = self.transformer(inp, encoder_hidden_states=cond, timestep=t.expand(len(inp)),
                                   added_cond_kwargs={"resolution": None, "aspect_ratio": None}).sample
            uncond, c = eps.chunk(2)
            x = self.scheduler.step(uncond + self.guidance * (c - uncond), t, x).prev_sample
        return x.clamp(-1, 1)


class DigitsClassifier(nn.Module):
    """A small CNN on 8x8 digits; ``features`` is its penultimate layer (for the Fréchet distance)."""

    num_features = 32

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1),
                                  nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(512, 32), nn.ReLU())
        self.head = nn.Linear(32, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != 8:
            x = nn.functional.interpolate(x, size=(8, 8), mode="area")
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _train_classifier(seed: int = 0, steps: int = 600) -> DigitsClassifier:
    torch.manual_seed(seed)
    x, y = digits("train")
    clf = DigitsClassifier()
    opt = torch.optim.Adam(clf.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        i = torch.randint(len(x), (128,), generator=g)
        loss = nn.functional.cross_entropy(clf(x[i]), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return clf.eval()


def _train_transformer(spec: BedSpec, log=None) -> tuple[nn.Module, Captions, list[float]]:
    from diffusers import DDPMScheduler

    torch.manual_seed(spec.seed)
    model, caps = build_transformer(spec), Captions(spec.caption_tokens, spec.caption_dim)
    noise_sched = DDPMScheduler(num_train_timesteps=1000)
    x, y = digits("train")
    params = list(model.parameters()) + list(caps.parameters())
    opt = torch.optim.AdamW(params, lr=spec.lr, weight_decay=0.0)
    lr_at = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=spec.lr, total_steps=spec.train_steps,
                                                pct_start=max(0.05, 2.0 / spec.train_steps))
    g = torch.Generator().manual_seed(spec.seed)
    losses, start = [], time.perf_counter()
    for it in range(spec.train_steps):
        i = torch.randint(len(x), (spec.batch,), generator=g)
        x0, labels = x[i], y[i].clone()
        labels[torch.rand(len(labels), generator=g) < 0.1] = NULL_CLASS
        t = torch.randint(1000, (len(x0),), generator=g)
        noise = torch.randn(x0.shape, generator=g)
        eps = model(noise_sched.add_noise(x0, noise, t), encoder_hidden_states=caps(labels), timestep=t,
                    added_cond_kwargs={"resolution": None, "aspect_ratio": None}).sample
        loss = nn.functional.mse_loss(eps, noise)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        lr_at.step()
        losses.append(loss.item())
        if log and (it + 1) % max(spec.train_steps // 10, 1) == 0:
            log(f"tiny PixArt: step {it + 1}/{spec.train_steps}, loss {np.mean(losses[-50:]):.4f}, "
                f"{time.perf_counter() - start:.0f} s")
    return model.eval(), caps.eval(), losses


@dataclass
class TestBed:
    pipe: DigitsPipe
    classifier: DigitsClassifier
    spec: BedSpec
    path: Path


def load_test_bed(spec: BedSpec | None = None, log=print, threads: int | None = 1,
                  cache_dir: Path | None = None) -> TestBed:
    """The trained test bed, from the disk cache (``tradeoff_home()/testbeds``) or trained now."""
    spec = spec or BedSpec()
    path = Path(cache_dir or tradeoff_home() / "testbeds") / f"tiny_pixart_{spec.key()}.pt"
    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        if path.exists():
            state = torch.load(path, weights_only=True)
            model, caps, clf = build_transformer(spec), Captions(spec.caption_tokens, spec.caption_dim), DigitsClassifier()
            model.load_state_dict(state["transformer"])
            caps.load_state_dict(state["captions"])
            clf.load_state_dict(state["classifier"])
        else:
            if log:
                log(f"training the tiny PixArt test bed ({spec.train_steps} steps; cached at {path})")
            model, caps, _ = _train_transformer(spec, log)
            clf = _train_classifier(spec.seed)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            torch.save({"transformer": model.state_dict(), "captions": caps.state_dict(),
                        "classifier": clf.state_dict(), "spec": asdict(spec)}, tmp)
            tmp.replace(path)
    finally:
        torch.set_num_threads(old)
    return TestBed(DigitsPipe(model.eval(), caps.eval()), clf.eval(), spec, path)
