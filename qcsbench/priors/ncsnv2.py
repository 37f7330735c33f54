"""NCSNv2 and NCSNv2Deepest (Song & Ermon 2020), parameter for parameter as in the official
code (ermongroup/ncsnv2, models/ncsnv2.py and models/layers.py), so the released
checkpoints and the QCS-SGM authors' MNIST checkpoint load with their own key names.

The network takes images in [0, 1] and a noise-level index y; it maps x to 2x - 1
internally and divides its output by sigmas[y]: the output is the score on [0, 1] data.
Only the unconditional InstanceNorm++ / ELU variant the released checkpoints use is built.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from qcsbench.errors import ConfigError
from qcsbench.priors.base import broadcast_sigma, geometric_sigmas
from qcsbench.priors.checkpoints import checkpoint_file, load_file, load_state
from qcsbench.priors.network import NETWORK, NETWORK_CHECKS, NetworkPrior, nearest_level
from qcsbench.settings import boolean, integer, settings


class InstanceNorm2dPlus(nn.Module):
    """Instance norm that puts back the (normalized) channel means, scaled by alpha."""

    def __init__(self, num_features, bias=True):
        super().__init__()
        self.num_features = num_features
        self.bias = bool(bias)
        self.instance_norm = nn.InstanceNorm2d(num_features, affine=False, track_running_stats=False)
        self.alpha = nn.Parameter(torch.ones(num_features))
        self.gamma = nn.Parameter(torch.ones(num_features))
        if self.bias:
            self.beta = nn.Parameter(torch.zeros(num_features))

    def forward(self, x):
        means = x.mean(dim=(2, 3))
        means = (means - means.mean(-1, keepdim=True)) / torch.sqrt(means.var(-1, keepdim=True) + 1e-5)
        h = self.instance_norm(x) + means[..., None, None] * self.alpha[..., None, None]
        h = self.gamma.view(1, -1, 1, 1) * h
        return h + self.beta.view(1, -1, 1, 1) if self.bias else h


def conv3x3(cin, cout, bias=True, dilation=1):
    return nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation, bias=bias)


class ConvMeanPool(nn.Module):
    """Convolution, then 2 x 2 mean pooling. ``adjust_padding`` pads one row and column on the
    top-left first (the official 28 x 28 variant), which moves the weights to ``conv.1``."""

    def __init__(self, cin, cout, kernel_size=3, adjust_padding=False):
        super().__init__()
        conv = nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2, bias=True)
        self.conv = nn.Sequential(nn.ZeroPad2d((1, 0, 1, 0)), conv) if adjust_padding else conv

    def forward(self, x):
        h = self.conv(x)
        return (h[:, :, ::2, ::2] + h[:, :, 1::2, ::2] + h[:, :, ::2, 1::2] + h[:, :, 1::2, 1::2]) / 4


class ResidualBlock(nn.Module):
    """Pre-activation residual block. resample='down' halves the size, except with a dilation,
    where (as in the official code) the dilated convolutions keep the size."""

    def __init__(self, cin, cout, resample=None, act=None, adjust_padding=False, dilation=None):
        super().__init__()
        self.act = act or nn.ELU()
        self.cin, self.cout, self.resample = cin, cout, resample
        d = dilation or 1
        self.normalize1 = InstanceNorm2dPlus(cin)
        if resample == "down":
            self.conv1 = conv3x3(cin, cin, dilation=d)
            self.normalize2 = InstanceNorm2dPlus(cin)
            if dilation is not None:
                self.conv2 = conv3x3(cin, cout, dilation=d)
                self.shortcut = conv3x3(cin, cout, dilation=d)
            else:
                self.conv2 = ConvMeanPool(cin, cout, 3, adjust_padding)
                self.shortcut = ConvMeanPool(cin, cout, 1, adjust_padding)
        elif resample is None:
            self.conv1 = conv3x3(cin, cout, dilation=d)
            self.normalize2 = InstanceNorm2dPlus(cout)
            self.conv2 = conv3x3(cout, cout, dilation=d)
            if cin != cout:
                self.shortcut = conv3x3(cin, cout, dilation=d) if dilation else nn.Conv2d(cin, cout, 1)
        else:
            raise ValueError(f"resample={resample!r}")

    def forward(self, x):
        h = self.conv1(self.act(self.normalize1(x)))
        h = self.conv2(self.act(self.normalize2(h)))
        skip = x if (self.cin == self.cout and self.resample is None) else self.shortcut(x)
        return skip + h


class RCUBlock(nn.Module):
    """Residual conv units; the official names are attributes '{block}_{stage}_conv'."""

    def __init__(self, features, n_blocks, n_stages, act):
        super().__init__()
        for i in range(n_blocks):
            for j in range(n_stages):
                setattr(self, f"{i + 1}_{j + 1}_conv", conv3x3(features, features, bias=False))
        self.n_blocks, self.n_stages, self.act = n_blocks, n_stages, act

    def forward(self, x):
        for i in range(self.n_blocks):
            residual = x
            for j in range(self.n_stages):
                x = getattr(self, f"{i + 1}_{j + 1}_conv")(self.act(x))
            x = x + residual
        return x


class CRPBlock(nn.Module):
    """Chained residual pooling (5 x 5 max pool, stride 1)."""

    def __init__(self, features, n_stages, act):
        super().__init__()
        self.convs = nn.ModuleList(conv3x3(features, features, bias=False) for _ in range(n_stages))
        self.maxpool = nn.MaxPool2d(5, stride=1, padding=2)
        self.act = act

    def forward(self, x):
        x = self.act(x)
        path = x
        for conv in self.convs:
            path = conv(self.maxpool(path))
            x = path + x
        return x


class MSFBlock(nn.Module):
    """Multi-resolution fusion: convolve each input, resize bilinearly, sum."""

    def __init__(self, in_planes, features):
        super().__init__()
        self.convs = nn.ModuleList(conv3x3(c, features, bias=True) for c in in_planes)
        self.features = features

    def forward(self, xs, shape):
        out = 0
        for conv, x in zip(self.convs, xs):
            out = out + F.interpolate(conv(x), size=shape, mode="bilinear", align_corners=True)
        return out


class RefineBlock(nn.Module):
    def __init__(self, in_planes, features, act, start=False, end=False):
        super().__init__()
        self.adapt_convs = nn.ModuleList(RCUBlock(c, 2, 2, act) for c in in_planes)
        self.output_convs = RCUBlock(features, 3 if end else 1, 2, act)
        if not start:
            self.msf = MSFBlock(in_planes, features)
        self.crp = CRPBlock(features, 2, act)

    def forward(self, xs, shape):
        hs = [adapt(x) for adapt, x in zip(self.adapt_convs, xs)]
        h = self.msf(hs, shape) if len(hs) > 1 else hs[0]
        return self.output_convs(self.crp(h))


class NCSNv2(nn.Module):
    """``deepest=False``: NCSNv2 (CIFAR-10, CelebA 64, MNIST); ``deepest=True``: NCSNv2Deepest (FFHQ 256).

    ``sigmas`` is the network's own ladder, a buffer saved in its state dict."""

    def __init__(self, sigmas, channels=3, ngf=128, image_size=32, deepest=False):
        super().__init__()
        self.register_buffer("sigmas", torch.as_tensor(sigmas, dtype=torch.float32))
        self.deepest = deepest
        act = self.act = nn.ELU()
        n = ngf
        self.begin_conv = nn.Conv2d(channels, n, 3, padding=1)
        self.normalizer = InstanceNorm2dPlus(n)
        self.end_conv = nn.Conv2d(n, channels, 3, padding=1)

        def pair(cin, cout, resample="down", **kw):
            return nn.ModuleList([ResidualBlock(cin, cout, resample, act, **kw),
                                  ResidualBlock(cout, cout, None, act, dilation=kw.get("dilation"))])

        self.res1 = pair(n, n, resample=None)
        self.res2 = pair(n, 2 * n)
        if not deepest:
            self.res3 = pair(2 * n, 2 * n, dilation=2)
            # the official 28 x 28 switch; with a dilation it changes neither keys nor outputs
            self.res4 = pair(2 * n, 2 * n, adjust_padding=image_size == 28, dilation=4)
            self.refine1 = RefineBlock([2 * n], 2 * n, act, start=True)
            self.refine2 = RefineBlock([2 * n, 2 * n], 2 * n, act)
            self.refine3 = RefineBlock([2 * n, 2 * n], n, act)
            self.refine4 = RefineBlock([n, n], n, act, end=True)
            self.encoder = ["res1", "res2", "res3", "res4"]
            self.decoder = ["refine1", "refine2", "refine3", "refine4"]
        else:
            self.res3 = pair(2 * n, 2 * n)
            self.res31 = pair(2 * n, 2 * n)
            self.res4 = pair(2 * n, 4 * n, dilation=2)
            self.res5 = pair(4 * n, 4 * n, dilation=4)
            self.refine1 = RefineBlock([4 * n], 4 * n, act, start=True)
            self.refine2 = RefineBlock([4 * n, 4 * n], 2 * n, act)
            self.refine31 = RefineBlock([2 * n, 2 * n], 2 * n, act)
            self.refine3 = RefineBlock([2 * n, 2 * n], 2 * n, act)
            self.refine4 = RefineBlock([2 * n, 2 * n], n, act)
            self.refine5 = RefineBlock([n, n], n, act, end=True)
            self.encoder = ["res1", "res2", "res3", "res31", "res4", "res5"]
            self.decoder = ["refine1", "refine2", "refine31", "refine3", "refine4", "refine5"]

    def forward(self, x, y):
        # encoder stages from fine to coarse; the refine chain starts at the coarsest and
        # fuses each finer stage in turn (the official forward, written once for both nets)
        h = self.begin_conv(2 * x - 1)
        features = []
        for name in self.encoder:
            for block in getattr(self, name):
                h = block(h)
            features.append(h)
        coarsest = features.pop()
        out = getattr(self, self.decoder[0])([coarsest], coarsest.shape[2:])
        for name, feature in zip(self.decoder[1:], reversed(features)):
            out = getattr(self, name)([feature, out], feature.shape[2:])
        out = self.end_conv(self.act(self.normalizer(out)))
        return out / self.sigmas[y].view(-1, *[1] * (x.dim() - 1)).to(out.dtype)


# ---------------------------------------------------------------------------------------
# The prior: an official checkpoint file behind the VE interface.


def strip_prefix(state: dict, prefix: str = "module.") -> dict:
    """DataParallel's ``module.`` prefix off every key (the official files keep it)."""
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}


class NCSNv2Prior(NetworkPrior):
    name = "ncsnv2"

    def _score(self, x, sigma):
        level = nearest_level(self.log_sigmas, sigma)
        out = self._forward(x, level)
        # the network divides by its own level's sigma; off the ladder, rescale to the asked one
        trained = self.device_sigmas[level]
        return out * broadcast_sigma(trained / sigma, out)


@settings("prior", NETWORK_CHECKS, checkpoint=checkpoint_file(), channels=integer(1), image_size=integer(1),
          ngf=integer(1), deepest=boolean(), use_ema=boolean(), **NETWORK)
def ncsnv2_prior(checkpoint=None, channels=3, image_size=32, ngf=128, deepest=False, sigma_max=50.0,
                 sigma_min=0.01, num_levels=232, use_ema=True, autocast="none", compile=False,
                 name="ncsnv2") -> NCSNv2Prior:
    """Load an official NCSNv2 checkpoint: a list [state_dict (``module.`` keys), optimizer,
    epoch, step, ema_shadow] (a bare state dict also works). ``use_ema`` takes the EMA
    weights, as the official sampling code does."""
    key = "prior.checkpoint"
    states = load_file(checkpoint, key)
    sigmas = geometric_sigmas(sigma_max, sigma_min, num_levels)
    net = NCSNv2(sigmas, channels, ngf, image_size, deepest)
    what = f"{'NCSNv2Deepest' if deepest else 'NCSNv2'} (prior={name}, ngf={ngf}, {channels} channels, {num_levels} levels)"
    if isinstance(states, (list, tuple)):
        if not states or not isinstance(states[0], dict):
            raise ConfigError(f"{key}={checkpoint} is a list without a state dict first: it is not an NCSNv2 checkpoint.")
        weights, shadow = states[0], (states[-1] if len(states) >= 5 and isinstance(states[-1], dict) else None)
    elif isinstance(states, dict):
        weights, shadow = states, None
    else:
        raise ConfigError(f"{key}={checkpoint} holds a {type(states).__name__}, not an NCSNv2 checkpoint "
                          f"(a list [state_dict, optimizer, epoch, step, ema_shadow]).")
    load_state(net, strip_prefix(weights), f"{key}={checkpoint}", what)
    if use_ema and shadow is not None:
        # EMAHelper keeps parameters only (no sigmas buffer), keyed without the prefix
        params = dict(net.named_parameters())
        shadow = strip_prefix(shadow)
        missing = sorted(set(params) - set(shadow))
        if missing:
            raise ConfigError(f"{key}={checkpoint}: its EMA shadow lacks {len(missing)} parameters (first "
                              f"{missing[0]}); use prior.use_ema=false to take the raw weights.")
        with torch.no_grad():
            for k, p in params.items():
                p.copy_(shadow[k])
    stored = net.sigmas.double()
    if not torch.allclose(stored, sigmas, rtol=1e-4):
        raise ConfigError(f"{key}={checkpoint} was trained on the ladder {float(stored[0]):g} -> {float(stored[-1]):g} "
                          f"in {len(stored)} levels, not prior.sigma_max={sigma_max}, prior.sigma_min={sigma_min}, "
                          f"prior.num_levels={num_levels}: pick the prior= option of its dataset.")
    prior = NCSNv2Prior(net, (channels, image_size, image_size), sigmas, autocast, compile)
    prior.name = name
    return prior
