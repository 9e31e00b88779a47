"""Image quality of an accelerated sampler: fidelity to the full-compute images, and their distribution.

Fidelity (``psnr_db``, ``ssim``) compares images made from the same prompts and seeds. A
distribution metric (Fréchet distance in a classifier's features, class consistency) is always
worth pairing with it: caching can *improve* the samples of an under-trained model while moving
them away from the full-compute ones. Images are tensors N x C x H x W in [-1, 1].
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)
from torchmetrics.image.fid import FrechetInceptionDistance

from . import Evaluator

MAX_PSNR_DB = 100.0  # identical images: a finite, clearly-best value


def psnr_db(images: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean per-image PSNR (dB) over images in [-1, 1], capped at 100 dB for identical ones."""
    per = peak_signal_noise_ratio(images.double(), reference.double(), data_range=2.0, reduction="none",
                                  dim=tuple(range(1, images.ndim)))
    return float(per.clamp(max=MAX_PSNR_DB).nan_to_num(MAX_PSNR_DB).mean())


def ssim(images: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean SSIM; the Gaussian window shrinks to fit small images (7 for 8x8)."""
    side = min(images.shape[-2:])
    kernel = min(11, side - 1 if side % 2 == 0 else side)
    return float(structural_similarity_index_measure(images.double(), reference.double(), data_range=2.0,
                                                     kernel_size=kernel, sigma=1.5 * kernel / 11))


class _Features(nn.Module):
    """A classifier's ``features`` as torchmetrics' feature extractor (it feeds images in [0, 1])."""

    def __init__(self, classifier: nn.Module):
        super().__init__()
        self.classifier = classifier
        self.num_features = int(classifier.num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier.features(x.float() * 2.0 - 1.0)


class Distribution:
    """Fréchet distance to real images in a local classifier's features, and class consistency."""

    def __init__(self, classifier: nn.Module, real_images: torch.Tensor):
        self.classifier = classifier.eval()
        self.fid = FrechetInceptionDistance(feature=_Features(self.classifier), normalize=True,
                                            reset_real_features=False)
        self.fid.update(((real_images + 1) / 2).clamp(0, 1), real=True)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, labels: Sequence[int] | None = None) -> dict[str, float]:
        self.fid.reset()
        self.fid.update(((images + 1) / 2).clamp(0, 1), real=False)
        out = {"frechet": float(self.fid.compute())}
        if labels is not None:
            pred = self.classifier(images.float()).argmax(1)
            out["class_consistency"] = float((pred == torch.as_tensor(list(labels))).double().mean())
        return out


class ImageFidelity(Evaluator):
    """An evaluator over generated images: ``context["reference"]`` holds the full-compute images."""

    name = "image_fidelity"
    directions: ClassVar[dict[str, str]] = {"psnr_db": "maximize", "ssim": "maximize"}

    def __call__(self, artifact: torch.Tensor, context: Mapping[str, Any] | None = None) -> dict[str, float]:
        ref = (context or {})["reference"]
        return {"psnr_db": psnr_db(artifact, ref), "ssim": ssim(artifact, ref)}
