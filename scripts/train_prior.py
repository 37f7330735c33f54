"""Train a score network by denoising score matching (EDM-preconditioned, EMA, checkpoints).

    python scripts/train_prior.py dataset=mnist max_minutes=40 threads=2

Loss at a noise level s (on [-1, 1] data): lambda(s) ||D(x0 + s eps, s) - x0||^2 with
lambda = 1/c_out^2, which is DSM on the score s(x) = (D - x)/s^2 with the weighting
that makes every level's target unit-scale. Levels are drawn log-uniformly over the
ladder the sampler will use.
"""
from __future__ import annotations

import copy
import logging
import math
import sys
import time
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qcsbench.cli import hydra_main, run_safely  # noqa: E402
from qcsbench.networks.score_unet import ScoreUNet, denoise_centered, precondition  # noqa: E402
from qcsbench.learned.training import ema_update  # noqa: E402
from qcsbench.priors import trained_file  # noqa: E402
from qcsbench.device import resolve_device  # noqa: E402

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


def save(path, net, ema, cfg, shape, step, loss, opt=None):
    """The trained prior; with ``opt``, the checkpoint training resumes from."""
    full = dict(model=net.state_dict(), optimizer=opt.state_dict()) if opt is not None else {}
    trained_file.write(path, config=net.config, shape=shape, ema=ema.state_dict(), sigma_max=cfg.sigma_max,
                       sigma_min=cfg.sigma_min, num_levels=cfg.num_levels, step=step, loss=loss,
                       train_config=OmegaConf.to_container(cfg, resolve=True), **full)


@hydra_main(config_path=str(Path(__file__).resolve().parents[1] / "configs"), config_name="train_prior")
def main(cfg: DictConfig) -> None:
    run_safely(train_prior, cfg)


def train_prior(cfg: DictConfig) -> None:
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train = instantiate(cfg.dataset, split="train")
    data = train.batch(range(len(train)))
    net = ScoreUNet(train.shape[0], cfg.model.channels, cfg.model.emb_dim, cfg.model.sigma_data).to(device)
    ema = copy.deepcopy(net).requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    step, running = 0, None
    ckpt = out_dir / "checkpoint.pt"
    if cfg.resume and ckpt.is_file():
        state = trained_file.read(ckpt, "checkpoint", checkpoint=True)
        net.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        step, running = state["step"], state["loss"]
        log.info("resumed from %s at step %d", ckpt, step)
    log.info("%d training images of shape %s, %d parameters, device %s", len(train), tuple(train.shape),
             sum(p.numel() for p in net.parameters()), device)
    g = torch.Generator(device=device).manual_seed(cfg.seed + step)
    started = time.time()

    def save_both():
        save(ckpt, net, ema, cfg, train.shape, step, running, opt)
        save(out_dir / "prior.pt", net, ema, cfg, train.shape, step, running)

    while step < cfg.max_steps:
        idx = torch.randint(len(data), (cfg.batch_size,), generator=torch.Generator().manual_seed(cfg.seed * 7919 + step))
        loss = dsm_loss(net, data[idx].to(device), cfg.sigma_min, cfg.sigma_max, g).mean()
        for group in opt.param_groups:  # linear warm-up keeps the first Adam steps from blowing up
            group["lr"] = cfg.lr * min(1.0, (step + 1) / cfg.warmup_steps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
        opt.step()
        ema_update(ema, net, step, cfg.ema_decay)
        step += 1
        value = loss.item()
        running = value if running is None else 0.99 * running + 0.01 * value
        minutes = (time.time() - started) / 60
        if step % cfg.log_every == 0:
            log.info("step %d  loss %.4f (running)  %.1f min", step, running, minutes)
        if step % cfg.save_every == 0:
            save_both()
        if cfg.max_minutes is not None and minutes >= cfg.max_minutes:
            break
    save_both()
    log.info("done: step %d, running loss %.4f, eval loss (EMA, fixed noise) %.4f, %.1f min; wrote %s",
             step, running, eval_loss(ema, data, cfg, device), (time.time() - started) / 60, out_dir / "prior.pt")


if __name__ == "__main__":
    main()
