"""Tiny random-weight networks saved in each family's real file format (for the prior tests)."""
from __future__ import annotations

import json

import torch

from qcsbench.formats import trained_file as trained_format
from qcsbench.networks.adm import ADMUNet
from qcsbench.networks.ncsnv2 import NCSNv2
from qcsbench.networks.score_unet import ScoreUNet
from qcsbench.priors.base import geometric_sigmas

TINY_ADM = dict(image_size=28, in_channels=1, num_channels=32, num_res_blocks=1, channel_mult="1,2",
                attention_resolutions="14", num_heads=2, num_head_channels=-1, learn_sigma=True)


def ncsnv2_file(path, channels=1, image_size=28, ngf=4, deepest=False, levels=(50.0, 0.01, 232), seed=0):
    """The official layout: [state_dict with 'module.' keys, optimizer, epoch, step, EMA shadow]
    (shadow: parameters only, no prefix). Returns (raw net, EMA net)."""
    torch.manual_seed(seed)
    net = NCSNv2(geometric_sigmas(*levels), channels, ngf, image_size, deepest)
    for p in net.parameters():  # move the norms off their identity init so every weight matters
        p.data.add_(0.05 * torch.randn_like(p))
    ema = NCSNv2(geometric_sigmas(*levels), channels, ngf, image_size, deepest)
    ema.load_state_dict(net.state_dict())
    for p in ema.parameters():
        p.data.add_(0.05 * torch.randn_like(p))
    optimizer = torch.optim.Adam(net.parameters()).state_dict()
    shadow = {k: v.detach().clone() for k, v in ema.named_parameters()}
    torch.save([{f"module.{k}": v for k, v in net.state_dict().items()}, optimizer, 7, 1234, shadow], path)
    return net.eval(), ema.eval()


def adm_file(path, seed=0, **overrides):
    torch.manual_seed(seed)
    net = ADMUNet(**{**TINY_ADM, **overrides})
    for p in net.parameters():  # the official init zeroes some output convolutions
        p.data.add_(0.02 * torch.randn_like(p))
    torch.save(net.state_dict(), path)
    return net.eval()


def trained_file(path, seed=0, channels=(8, 8), emb_dim=16, levels=(50.0, 0.01, 232)):
    """What scripts/train_prior.py writes (EMA weights only), for a small random ScoreUNet on 28 x 28."""
    torch.manual_seed(seed)
    net = ScoreUNet(1, channels, emb_dim)
    for p in net.parameters():  # the output convolution starts at zero: give every weight a say
        p.data.add_(0.05 * torch.randn_like(p))
    trained_format.write(path, config=net.config, shape=[1, 28, 28], ema=net.state_dict(), sigma_max=levels[0],
                       sigma_min=levels[1], num_levels=levels[2], step=0, loss=1.0, train_config={})
    return net.eval()


def _randomize(unet, seed):
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return unet.eval()


def ddpm_folder(folder, seed=0, sample_size=28, channels=1, prediction_type="epsilon"):
    """save_pretrained of a small UNet2DModel and a DDPMScheduler (linear betas, 1000 steps)."""
    from diffusers import DDPMScheduler, UNet2DModel

    unet = UNet2DModel(sample_size=sample_size, in_channels=channels, out_channels=channels, layers_per_block=1,
                       block_out_channels=(16, 32), down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=8)
    unet = _randomize(unet, seed)
    unet.save_pretrained(folder)
    DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", prediction_type=prediction_type).save_pretrained(folder)
    return unet


def ncsnpp_folder(folder, seed=0, sample_size=28, channels=1, sigma_max=50.0, sigma_min=0.01, levels=100):
    """A small Fourier-embedded UNet2DModel (the NCSN++ / ScoreSdeVe layout) and its scheduler."""
    from diffusers import ScoreSdeVeScheduler, UNet2DModel

    unet = UNet2DModel(sample_size=sample_size, in_channels=channels, out_channels=channels, layers_per_block=1,
                       block_out_channels=(16, 32), down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=8,
                       time_embedding_type="fourier")
    unet = _randomize(unet, seed)
    unet.save_pretrained(folder)
    ScoreSdeVeScheduler(num_train_timesteps=levels, sigma_max=sigma_max, sigma_min=sigma_min).save_pretrained(folder)
    return unet


def config_json(folder):
    return json.loads((folder / "config.json").read_text())
