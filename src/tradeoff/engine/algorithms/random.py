"""Uniform random sampling: the baseline every other algorithm must beat."""

from __future__ import annotations

from .base import Algorithm, check_batch_size, register


@register("random")
class RandomSearch(Algorithm):
    name = "random"

    def __init__(self, batch_size: int = 10):
        check_batch_size(batch_size)
        self.batch_size = batch_size

    def ask(self, n):
        out = self.initial[:n]
        self.initial = self.initial[n:]
        return out + [self.space.sample(self.rng) for _ in range(n - len(out))]

    def tell(self, configs, values, violations):
        pass
