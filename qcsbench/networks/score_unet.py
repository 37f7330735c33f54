"""A small noise-conditional UNet denoiser: the network ``scripts/train_prior.py`` trains.

EDM preconditioning (Karras et al. 2022) on data mapped to [-1, 1]:
    D(x, s) = c_skip x + c_out F(c_in x, c_noise),  c_in = 1/sqrt(s^2 + sd^2),
    c_skip = sd^2/(s^2 + sd^2),  c_out = s sd/sqrt(s^2 + sd^2),  c_noise = log(s)/4.
The inputs of F have unit variance at every noise level and its target is bounded, so
one small network covers the whole ladder from sigma = 100 down to 0.01.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class NoiseEmbedding(nn.Module):
    """Random Fourier features of c_noise followed by an MLP (as in NCSN++ / EDM)."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("freqs", torch.randn(dim // 2, generator=torch.Generator().manual_seed(0)) * 4.0)
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, c_noise):
        arg = 2 * math.pi * c_noise[:, None] * self.freqs[None]
        return self.mlp(torch.cat([arg.cos(), arg.sin()], dim=1))


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb_dim: int, groups: int = 8):
        super().__init__()
        self.norm1 = nn.GroupNorm(min(groups, cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, cout)
        self.norm2 = nn.GroupNorm(min(groups, cout), cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return (h + self.skip(x)) / math.sqrt(2)


class ScoreUNet(nn.Module):
    """F of the preconditioned denoiser; ``channels`` per resolution, halving the size each time."""

    def __init__(self, in_channels: int = 1, channels=(32, 64, 64), emb_dim: int = 128, sigma_data: float = 0.5):
        super().__init__()
        channels = list(channels)
        self.config = dict(in_channels=in_channels, channels=channels, emb_dim=emb_dim, sigma_data=sigma_data)
        self.sigma_data = sigma_data
        self.embed = NoiseEmbedding(emb_dim)
        self.conv_in = nn.Conv2d(in_channels, channels[0], 3, padding=1)
        self.down = nn.ModuleList()
        cin = channels[0]
        for c in channels:
            self.down.append(ResBlock(cin, c, emb_dim))
            cin = c
        self.mid = ResBlock(cin, cin, emb_dim)
        self.up = nn.ModuleList()
        for c in reversed(channels):
            self.up.append(ResBlock(cin + c, c, emb_dim))
            cin = c
        self.norm_out = nn.GroupNorm(min(8, cin), cin)
        self.conv_out = nn.Conv2d(cin, in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def block_channels(self) -> list[int]:
        """The output channels of each block in call order (down, mid, up): what ``inject`` sees."""
        down = self.config["channels"]
        return [*down, down[-1], *reversed(down)]

    def forward(self, x, c_noise, inject=None):
        """inject(k, h) -> a tensor added to the output h of the k-th block (down, mid, up order):
        how a learned method feeds extra information into the features (docs/math.md §10)."""
        emb = self.embed(c_noise)
        h = self.conv_in(x)
        skips = []
        k = 0

        def injected(h):
            nonlocal k
            out = h if inject is None else h + inject(k, h)
            k += 1
            return out

        for i, block in enumerate(self.down):
            if i > 0:  # ceil so odd sizes (7 x 7) survive the round trip
                h = F.avg_pool2d(h, 2, ceil_mode=True)
            h = injected(block(h, emb))
            skips.append(h)
        h = injected(self.mid(h, emb))
        for i, block in enumerate(self.up):
            skip = skips.pop()
            if h.shape[-2:] != skip.shape[-2:]:
                h = F.interpolate(h, size=skip.shape[-2:], mode="nearest")
            h = injected(block(torch.cat([h, skip], dim=1), emb))
        return self.conv_out(F.silu(self.norm_out(h)))


class SpecOnUNet:
    """``spec()`` and ``rebuild(spec)`` for a learned network whose constructor takes a ScoreUNet
    and the keyword ``settings`` it keeps: the spec is what the model file stores to rebuild it."""

    def spec(self) -> dict:
        return dict(unet=dict(self.unet.config), **self.settings)

    @classmethod
    def rebuild(cls, spec: dict):
        spec = dict(spec)
        return cls(ScoreUNet(**spec.pop("unet")), **spec)


def precondition(sigma, sigma_data: float):
    """(c_skip, c_out, c_in, c_noise) for a noise level tensor ``sigma`` in the [-1, 1] scale."""
    var = sigma**2 + sigma_data**2
    return sigma_data**2 / var, sigma * sigma_data / var.sqrt(), 1 / var.sqrt(), sigma.log() / 4


def denoise_centered(net: ScoreUNet, x, sigma, inject=None):
    """D(x, sigma) on [-1, 1] data; ``sigma`` is a tensor of shape (B,); ``inject`` as in forward."""
    c_skip, c_out, c_in, c_noise = precondition(sigma.to(x.dtype), net.sigma_data)
    view = (-1, 1, 1, 1)
    features = net(c_in.view(view) * x, c_noise) if inject is None else net(c_in.view(view) * x, c_noise, inject)
    return c_skip.view(view) * x + c_out.view(view) * features
