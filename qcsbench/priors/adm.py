"""The ADM UNet (Dhariwal & Nichol 2021, openai/guided-diffusion unet.py) with the official
parameter names, so ``ffhq_10m.pt`` (DPS) and ``256x256_diffusion_uncond.pt`` load as they are.

Only what those checkpoints use is built: 2-D, unconditional, legacy attention order,
optional scale-shift norm and residual up/down-sampling. With learned variance the
network returns 2C channels; the first C are the noise prediction epsilon.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from qcsbench.priors.checkpoints import checkpoint_file, load_file, load_state
from qcsbench.priors.network import NETWORK, NETWORK_CHECKS
from qcsbench.priors.vp import VPEpsilonPrior, ladder_for, linear_alphas_cumprod, vp_sigmas
from qcsbench.settings import Rule, boolean, integer, settings


def at_least_float32(x):
    """x in float32 when it is in a half precision, else as it is: the original upcasts
    (which matters under fp16) but must not round a float64 evaluation down."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


class GroupNorm32(nn.GroupNorm):
    """GroupNorm(32) computed in at least float32 (as the original, which matters under fp16)."""

    def forward(self, x):
        return super().forward(at_least_float32(x)).type(x.dtype)


def norm(ch):
    return GroupNorm32(32, ch)


def timestep_embedding(t, dim, max_period=10000):
    """Sinusoidal embedding, cosines first (the guided-diffusion order)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


class Resample(nn.Module):
    """Nearest 2x upsampling or 2x2 average pooling / strided convolution; ``op``/``conv`` as named upstream."""

    def __init__(self, ch, up, use_conv):
        super().__init__()
        self.up = up
        if up and use_conv:
            self.conv = nn.Conv2d(ch, ch, 3, padding=1)
        elif not up:
            self.op = nn.Conv2d(ch, ch, 3, stride=2, padding=1) if use_conv else nn.AvgPool2d(2, 2)
        self.use_conv = use_conv

    def forward(self, x):
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            return self.conv(x) if self.use_conv else x
        return self.op(x)


class ResBlock(nn.Module):
    def __init__(self, ch, emb_ch, out_ch=None, scale_shift=True, up=False, down=False):
        super().__init__()
        out_ch = out_ch or ch
        self.scale_shift = scale_shift
        self.in_layers = nn.Sequential(norm(ch), nn.SiLU(), nn.Conv2d(ch, out_ch, 3, padding=1))
        self.updown = up or down
        if self.updown:
            self.h_upd = Resample(ch, up, use_conv=False)
            self.x_upd = Resample(ch, up, use_conv=False)
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_ch, 2 * out_ch if scale_shift else out_ch))
        self.out_layers = nn.Sequential(norm(out_ch), nn.SiLU(), nn.Dropout(0.0), nn.Conv2d(out_ch, out_ch, 3, padding=1))
        self.skip_connection = nn.Identity() if out_ch == ch else nn.Conv2d(ch, out_ch, 1)

    def forward(self, x, emb):
        if self.updown:  # resample between the norm/activation and the convolution
            h = self.in_layers[:-1](x)
            h, x = self.h_upd(h), self.x_upd(x)
            h = self.in_layers[-1](h)
        else:
            h = self.in_layers(x)
        e = self.emb_layers(emb).type(h.dtype)[..., None, None]
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = self.out_layers[0](h) * (1 + scale) + shift
            h = self.out_layers[1:](h)
        else:
            h = self.out_layers(h + e)
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """Self-attention over positions; heads split before q/k/v (the legacy order)."""

    def __init__(self, ch, num_heads=1, num_head_channels=-1):
        super().__init__()
        self.num_heads = num_heads if num_head_channels == -1 else ch // num_head_channels
        self.norm = norm(ch)
        self.qkv = nn.Conv1d(ch, 3 * ch, 1)
        self.proj_out = nn.Conv1d(ch, ch, 1)

    def forward(self, x):
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)
        qkv = self.qkv(self.norm(x))
        bs, width, length = qkv.shape
        ch = width // (3 * self.num_heads)
        q, k, v = qkv.reshape(bs * self.num_heads, 3 * ch, length).split(ch, dim=1)
        scale = 1 / math.sqrt(math.sqrt(ch))
        w = torch.einsum("bct,bcs->bts", q * scale, k * scale)
        w = torch.softmax(at_least_float32(w), dim=-1).type(w.dtype)
        h = torch.einsum("bts,bcs->bct", w, v).reshape(bs, -1, length)
        return (x + self.proj_out(h)).reshape(b, c, *spatial)


class EmbedSequential(nn.Sequential):
    """Passes the time embedding to the residual blocks (TimestepEmbedSequential upstream)."""

    def forward(self, x, emb):
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


def default_channel_mult(image_size):
    return {512: (0.5, 1, 1, 2, 2, 4, 4), 256: (1, 1, 2, 2, 4, 4), 128: (1, 1, 2, 3, 4),
            64: (1, 2, 3, 4), 32: (1, 2, 2, 2)}.get(image_size, (1, 2, 2, 2))


class ADMUNet(nn.Module):
    """guided-diffusion ``UNetModel`` with its ``create_model`` conventions: ``attention_resolutions``
    are image sizes (e.g. "32,16,8"), ``channel_mult`` empty picks the default for ``image_size``."""

    def __init__(self, image_size=256, in_channels=3, num_channels=128, num_res_blocks=1, channel_mult="",
                 attention_resolutions="16", num_heads=4, num_head_channels=64, learn_sigma=True,
                 use_scale_shift_norm=True, resblock_updown=True, conv_resample=True):
        super().__init__()
        if isinstance(channel_mult, str):
            channel_mult = tuple(float(c) for c in channel_mult.split(",")) if channel_mult else default_channel_mult(image_size)
        if isinstance(attention_resolutions, str):
            attention_resolutions = [int(r) for r in attention_resolutions.split(",") if r]
        attention_ds = {image_size // int(r) for r in attention_resolutions}
        self.in_channels, self.model_channels = in_channels, num_channels
        self.learn_sigma = learn_sigma
        mc, emb_ch = num_channels, 4 * num_channels
        self.time_embed = nn.Sequential(nn.Linear(mc, emb_ch), nn.SiLU(), nn.Linear(emb_ch, emb_ch))

        def res(cin, cout=None, **kw):
            return ResBlock(cin, emb_ch, cout, use_scale_shift_norm, **kw)

        def attn(c):
            return AttentionBlock(c, num_heads, num_head_channels)

        ch = input_ch = int(channel_mult[0] * mc)
        self.input_blocks = nn.ModuleList([EmbedSequential(nn.Conv2d(in_channels, ch, 3, padding=1))])
        skip_chans, ds = [ch], 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers = [res(ch, int(mult * mc))]
                ch = int(mult * mc)
                if ds in attention_ds:
                    layers.append(attn(ch))
                self.input_blocks.append(EmbedSequential(*layers))
                skip_chans.append(ch)
            if level != len(channel_mult) - 1:
                down = res(ch, ch, down=True) if resblock_updown else Resample(ch, False, conv_resample)
                self.input_blocks.append(EmbedSequential(down))
                skip_chans.append(ch)
                ds *= 2
        self.middle_block = EmbedSequential(res(ch), attn(ch), res(ch))
        self.output_blocks = nn.ModuleList()
        for level, mult in list(enumerate(channel_mult))[::-1]:
            for i in range(num_res_blocks + 1):
                layers = [res(ch + skip_chans.pop(), int(mc * mult))]
                ch = int(mc * mult)
                if ds in attention_ds:
                    layers.append(attn(ch))
                if level and i == num_res_blocks:
                    layers.append(res(ch, ch, up=True) if resblock_updown else Resample(ch, True, conv_resample))
                    ds //= 2
                self.output_blocks.append(EmbedSequential(*layers))
        out_channels = 2 * in_channels if learn_sigma else in_channels
        self.out = nn.Sequential(norm(ch), nn.SiLU(), nn.Conv2d(input_ch, out_channels, 3, padding=1))

    def forward(self, x, timesteps):
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels).to(x.dtype))
        hs, h = [], x
        for block in self.input_blocks:
            h = block(h, emb)
            hs.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h)


# ---------------------------------------------------------------------------------------
# The prior: an ADM checkpoint (a plain state dict) behind the VE interface.


class ADMPrior(VPEpsilonPrior):
    name = "adm"

    def _model_output(self, x_vp, t):
        out = self._forward(x_vp, t)
        return out[:, : x_vp.shape[1]]  # learned variance: the first C channels are epsilon


@settings("prior", NETWORK_CHECKS, checkpoint=checkpoint_file(), image_size=integer(1), in_channels=integer(1),
          num_channels=integer(1), num_res_blocks=integer(1),
          channel_mult=Rule(lambda v: isinstance(v, str), "a string such as \"1,1,2,2,4,4\" or \"\""),
          attention_resolutions=Rule(lambda v: isinstance(v, str) and all(p.strip().isdigit() for p in v.split(",")),
                                     "comma-separated resolutions such as \"32,16,8\""),
          num_heads=integer(1), num_head_channels=integer(-1), learn_sigma=boolean(), use_scale_shift_norm=boolean(),
          resblock_updown=boolean(), diffusion_steps=integer(1),
          noise_schedule=Rule(lambda v: v == "linear", "linear (both public ADM checkpoints)"), **NETWORK)
def adm_prior(checkpoint=None, image_size=256, in_channels=3, num_channels=128, num_res_blocks=1,
              channel_mult="", attention_resolutions="16", num_heads=4, num_head_channels=64, learn_sigma=True,
              use_scale_shift_norm=True, resblock_updown=True, diffusion_steps=1000, noise_schedule="linear",
              sigma_max=None, sigma_min=None, num_levels=None, autocast="none", compile=False, name="adm"):
    """Load a guided-diffusion UNet checkpoint; the hyperparameters are those of its
    ``model_and_diffusion_defaults`` flags (configs/prior/adm_*.yaml hold the two public ones)."""
    state = load_file(checkpoint, "prior.checkpoint")
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    net = ADMUNet(image_size, in_channels, num_channels, num_res_blocks, channel_mult, attention_resolutions,
                  num_heads, num_head_channels, learn_sigma, use_scale_shift_norm, resblock_updown)
    load_state(net, state, f"prior.checkpoint={checkpoint}", f"ADM UNet (prior={name})")
    abar = linear_alphas_cumprod(diffusion_steps)
    sigmas = ladder_for(vp_sigmas(abar) / 2, sigma_max, sigma_min, num_levels)
    prior = ADMPrior(net.float(), (in_channels, image_size, image_size), abar, sigmas, "epsilon", autocast, compile)
    prior.name = name
    return prior
