"""Per-image random streams, so a result does not depend on batch size or order.

Every image gets its own ``torch.Generator`` seeded from (seed, image index, purpose):
the measurement noise of image 7 is the same whether it is measured alone or in a
batch of 64, and the sampler's noise never shares a stream with the measurement's.
With several samples per image (``num_samples``), sample s of image i draws its sampler
noise from (seed, i, SAMPLER, s), sample 0 from (seed, i, SAMPLER): the stream a run with
one sample has always used. So a sample depends on neither the number of samples nor the
batch it is drawn in.
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


def sample_seed(seed: int, index: int, purpose: int, sample: int = 0) -> int:
    """The seed of sample ``sample`` of image ``index``; sample 0's is the image's own stream."""
    return seed_for(seed, index, purpose, *([sample] if sample else []))


class ImageRandom:
    """A batch of per-image generators that draws tensors of shape (B, *shape). ``samples``: the
    sample each row is (several recoveries of one image, each from its own stream); None: all 0."""

    def __init__(self, seed: int, indices, purpose: int, device="cpu", samples=None):
        self.device = torch.device(device)
        self.generators = []
        indices = list(indices)
        for index, sample in zip(indices, [0] * len(indices) if samples is None else samples, strict=True):
            g = torch.Generator(device=self.device)
            g.manual_seed(sample_seed(seed, index, purpose, sample))
            self.generators.append(g)

    def __len__(self) -> int:
        return len(self.generators)

    def _draw(self, fill, shape, dtype) -> torch.Tensor:
        """Each image's draw written by its own generator straight into its row of the batch (B
        kernels, no copy into a stack). ``fill`` is what torch.randn / torch.rand do to the tensor
        they allocate, so image j's numbers are those of ``torch.randn(shape, generator=g_j)``,
        whatever the batch."""
        out = torch.empty((len(self.generators), *shape), device=self.device, dtype=dtype)
        for row, g in zip(out, self.generators):
            fill(row, g)
        return out

    def randn(self, *shape, dtype=torch.float32) -> torch.Tensor:
        return self._draw(lambda row, g: row.normal_(generator=g), shape, dtype)

    def rand(self, *shape, dtype=torch.float32) -> torch.Tensor:
        return self._draw(lambda row, g: row.uniform_(generator=g), shape, dtype)


class BatchRandom:
    """One ``torch.Generator`` drawing the whole batch at once: what a user's generator becomes.

    Unlike ImageRandom, image j's noise then depends on the batch it is drawn in."""

    def __init__(self, generator: torch.Generator, batch_size: int, device="cpu"):
        self.generator, self.batch_size, self.device = generator, int(batch_size), torch.device(device)

    def __len__(self) -> int:
        return self.batch_size

    def randn(self, *shape, dtype=torch.float32) -> torch.Tensor:
        out = torch.randn((self.batch_size, *shape), generator=self.generator, device=self.generator.device, dtype=dtype)
        return out.to(self.device)

    def rand(self, *shape, dtype=torch.float32) -> torch.Tensor:
        out = torch.rand((self.batch_size, *shape), generator=self.generator, device=self.generator.device, dtype=dtype)
        return out.to(self.device)


def as_stream(rng, batch_size: int, device="cpu", purpose: int = SAMPLER):
    """The stream the channels and samplers draw from, made from what a user has at hand.

    A seed (int) gives per-image streams for images 0 .. batch_size-1, exactly those of a run
    of run.py with ``seed=`` that seed; a ``torch.Generator`` draws the batch from that one
    generator; an ImageRandom (or a stream made here) is used as it is; None draws fresh noise
    that no later call repeats."""
    if isinstance(rng, (ImageRandom, BatchRandom)):
        if len(rng) != batch_size:
            raise ValueError(f"rng draws for {len(rng)} images, the batch has {batch_size}: make one per batch.")
        return rng
    if rng is None:
        fresh = torch.Generator()
        fresh.seed()
        return BatchRandom(fresh, batch_size, device)
    if isinstance(rng, torch.Generator):
        return BatchRandom(rng, batch_size, device)
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return ImageRandom(int(rng), range(batch_size), purpose, device)
    raise TypeError(f"rng={rng!r} is not a random source: give a seed (int), a torch.Generator or an ImageRandom.")
