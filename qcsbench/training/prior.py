"""Training a score network by denoising score matching (EDM-preconditioned, EMA, checkpoints):
``python scripts/train_prior.py dataset=mnist max_minutes=40 threads=2``.

Loss at a noise level s (on [-1, 1] data): lambda(s) ||D(x0 + s eps, s) - x0||^2 with
lambda = 1/c_out^2, which is DSM on the score s(x) = (D - x)/s^2 with the weighting
that makes every level's target unit-scale. Levels are drawn log-uniformly over the
ladder the sampler will use.
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from qcsbench.formats import trained_file
from qcsbench.networks.score_unet import ScoreUNet, denoise_centered, precondition
from qcsbench.setup import instantiate
from qcsbench.training.state import TrainState, start

log = logging.getLogger("train_prior")


def dsm_loss(net, x0, sigma_lo, sigma_hi, generator):
    """Weighted DSM loss per image; sigmas on [0, 1] data, doubled for the [-1, 1] scale."""
    b = x0.shape[0]
    u = torch.rand(b, generator=generator, device=x0.device)
    sigma = 2 * torch.exp(math.log(sigma_lo) + u * (math.log(sigma_hi) - math.log(sigma_lo)))
    x_c = 2 * x0 - 1
    noisy = x_c + sigma.view(-1, 1, 1, 1) * torch.randn(x_c.shape, generator=generator, device=x0.device)
    _, c_out, _, _ = precondition(sigma, net.sigma_data)
    err = (denoise_centered(net, noisy, sigma) - x_c) / c_out.view(-1, 1, 1, 1)
    return err.pow(2).flatten(1).mean(1)


@torch.no_grad()
def eval_loss(net, data, cfg, device, count=256):
    """The same loss on fixed images and noise (seed 1234), comparable between checkpoints."""
    g = torch.Generator(device=device).manual_seed(1234)
    return float(dsm_loss(net, data[:count].to(device), cfg.sigma_min, cfg.sigma_max, g).mean())


def save(path, state: TrainState, cfg, shape, resumable: bool) -> None:
    """The trained prior; ``resumable``: the checkpoint training resumes from."""
    trained_file.write(path, config=state.net.config, shape=shape, sigma_max=cfg.sigma_max, sigma_min=cfg.sigma_min,
                       num_levels=cfg.num_levels, step=state.step, loss=state.running,
                       train_config=OmegaConf.to_container(cfg, resolve=True), **state.weights(resumable))


def train_prior(cfg: DictConfig) -> None:
    device = start(cfg)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train = instantiate(cfg.dataset, split="train")
    data = train.batch(range(len(train)))
    net = ScoreUNet(train.shape[0], cfg.model.channels, cfg.model.emb_dim, cfg.model.sigma_data)
    state = TrainState(net.to(device), cfg.lr)
    ckpt = out_dir / "checkpoint.pt"
    if cfg.resume and ckpt.is_file():
        state.resume(trained_file.read(ckpt, "checkpoint", checkpoint=True), f"checkpoint={ckpt}", "score UNet")
        log.info("resumed from %s at step %d", ckpt, state.step)
    log.info("%d training images of shape %s, %d parameters, device %s", len(train), tuple(train.shape),
             sum(p.numel() for p in state.net.parameters()), device)
    g = torch.Generator(device=device).manual_seed(cfg.seed + state.step)
    started = time.time()

    def save_both():
        save(ckpt, state, cfg, train.shape, resumable=True)
        save(out_dir / "prior.pt", state, cfg, train.shape, resumable=False)

    while state.step < cfg.max_steps:
        idx = torch.randint(len(data), (cfg.batch_size,),
                            generator=torch.Generator().manual_seed(cfg.seed * 7919 + state.step))
        loss = dsm_loss(state.net, data[idx].to(device), cfg.sigma_min, cfg.sigma_max, g).mean()
        state.update(loss, cfg, memory=0.01)
        minutes = (time.time() - started) / 60
        if state.step % cfg.log_every == 0:
            log.info("step %d  loss %.4f (running)  %.1f min", state.step, state.running, minutes)
        if state.step % cfg.save_every == 0:
            save_both()
        if cfg.max_minutes is not None and minutes >= cfg.max_minutes:
            break
    save_both()
    log.info("done: step %d, running loss %.4f, eval loss (EMA, fixed noise) %.4f, %.1f min; wrote %s",
             state.step, state.running, eval_loss(state.ema, data, cfg, device), (time.time() - started) / 60,
             out_dir / "prior.pt")
