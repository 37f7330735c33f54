"""Per-image random streams, so a result does not depend on batch size or order.

Every image gets its own ``torch.Generator`` seeded from (seed, image index, purpose):
the measurement noise of image 7 is the same whether it is measured alone or in a
batch of 64, and the sampler's noise never shares a stream with the measurement's.
"""
from __future__ import annotations

import numpy as np
import torch

# One stream per purpose; new purposes get new numbers, old ones never change.
MEASUREMENT = 0
SAMPLER = 1


def seed_for(*keys: int) -> int:
    """A 63-bit seed mixed from integer keys (numpy's SeedSequence does the hashing)."""
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


class ImageRandom:
    """A batch of per-image generators that draws tensors of shape (B, *shape)."""

    def __init__(self, seed: int, indices, purpose: int, device="cpu"):
        self.device = torch.device(device)
        self.generators = []
        for index in indices:
            g = torch.Generator(device=self.device)
            g.manual_seed(seed_for(seed, index, purpose))
            self.generators.append(g)

    def __len__(self) -> int:
        return len(self.generators)

    def randn(self, *shape, dtype=torch.float32) -> torch.Tensor:
        return torch.stack([torch.randn(shape, generator=g, device=self.device, dtype=dtype) for g in self.generators])

    def rand(self, *shape, dtype=torch.float32) -> torch.Tensor:
        return torch.stack([torch.rand(shape, generator=g, device=self.device, dtype=dtype) for g in self.generators])
