"""Build everything from the config, recover, evaluate, save, log.

Every check of the configuration runs before the first expensive step (fitting or
loading the prior, drawing a large A), so a typo costs a second, not a run.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from qcsbench import metrics, tracking
from qcsbench.errors import ConfigError
from qcsbench.problem import Problem
from qcsbench.randomness import MEASUREMENT, SAMPLER, ImageRandom

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when present, else the CPU; anything else must name a usable device."""
    name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"device={name} is not a device: use auto, cpu, cuda or cuda:N.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name} is not available on this machine (no CUDA): use device=auto or device=cpu.")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"device={name} does not exist: this machine has {torch.cuda.device_count()} CUDA devices.")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device={name} is not supported: use auto, cpu, cuda or cuda:N.")
    return device


def build(node, **kwargs):
    """hydra.utils.instantiate, but a ConfigError raised by the target reaches the user
    as itself (Hydra wraps every exception in an InstantiationException)."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__
        while isinstance(cause, InstantiationException):
            cause = cause.__cause__
        if isinstance(cause, ConfigError):
            raise cause from None
        raise


def positive_int(cfg, key: str) -> int:
    value = cfg[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{key}={value} is not allowed: use a positive integer.")
    return value


def run_dir_of(cfg) -> Path:
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path(cfg.get("run_dir") or ".")


def summarize(per_image: list[dict], nfe: int, seconds: float, cfg) -> dict:
    ok = [row for row in per_image if row["status"] == "ok"]
    out = dict(num_images=len(per_image), num_diverged=len(per_image) - len(ok), nfe=nfe,
               seconds=seconds, seconds_per_image=seconds / max(len(per_image), 1),
               method=cfg.method.get("name", str(cfg.method._target_)), bits=cfg.get("bits"), m=cfg.m,
               noise_std=cfg.noise_std, seed=cfg.seed)
    for name in metrics.NAMES:
        values = np.array([row[name] for row in ok], dtype=np.float64)
        out[f"{name}_mean"] = tracking.finite_or_none(values.mean()) if len(values) else None
        out[f"{name}_std"] = tracking.finite_or_none(values.std()) if len(values) else None
    return out


def run(cfg: DictConfig) -> dict:
    started = time.perf_counter()
    run_dir = run_dir_of(cfg)
    device = resolve_device(cfg.device)
    num_images, batch_size = positive_int(cfg, "num_images"), positive_int(cfg, "batch_size")
    test_set = build(cfg.dataset, split="test")
    if num_images > len(test_set):
        raise ConfigError(f"num_images={num_images} is more than dataset {test_set.name} holds: use 1 to {len(test_set)}.")
    channel = build(cfg.quantizer)
    method = build(cfg.method)
    logger = build(cfg.logger)
    operator = build(cfg.operator, shape=list(test_set.shape), m=cfg.m)
    prior = build(cfg.prior)
    if tuple(prior.shape) != tuple(test_set.shape):
        raise ConfigError(f"prior={cfg.prior.get('name', 'prior')} takes images of shape {tuple(prior.shape)}, "
                          f"dataset {test_set.name} has {tuple(test_set.shape)}: pick a matching prior or dataset.")
    operator, prior = operator.to(device, torch.float32), prior.to(device, torch.float32)
    config = OmegaConf.to_container(cfg, resolve=True)
    tracking.write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))

    logger.start(config, run_dir)
    exit_code = 1
    try:
        truth, recon, back, per_image = [], [], [], []
        nfe, seconds = 0, 0.0
        for start in range(0, num_images, batch_size):
            indices = list(range(start, min(start + batch_size, num_images)))
            x = test_set.batch(indices).to(device)
            measurement = channel.measure(operator.forward(x), ImageRandom(cfg.seed, indices, MEASUREMENT, device))
            problem = Problem(operator, channel, measurement)
            tic = time.perf_counter()
            result = method.recover(problem, prior, ImageRandom(cfg.seed, indices, SAMPLER, device))
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds += time.perf_counter() - tic
            nfe = result.nfe
            scores = metrics.evaluate(result.x_hat, x)
            for j, index in enumerate(indices):
                finite = bool(torch.isfinite(result.x_hat[j]).all()) and all(
                    bool(torch.isfinite(scores[k][j])) for k in metrics.NAMES)
                row = dict(index=index, status="ok" if finite else "diverged")
                row.update({k: float(scores[k][j]) if finite else None for k in metrics.NAMES})
                per_image.append(row)
            truth.append(x.cpu())
            recon.append(result.x_hat.cpu())
            back.append(problem.back_projection().cpu())
            log.info("images %d-%d: psnr %.2f dB", indices[0], indices[-1], float(scores["psnr"].nanmean()))
        truth, recon, back = torch.cat(truth), torch.cat(recon), torch.cat(back)
        summary = summarize(per_image, nfe, seconds, cfg)
        summary["seconds_total"] = time.perf_counter() - started
        if summary["num_diverged"]:
            log.warning("%d of %d images diverged (NaN or Inf); they are marked in per_image.csv and left out "
                        "of the means", summary["num_diverged"], num_images)
        tracking.write_csv(run_dir / "per_image.csv", per_image)
        tracking.save_tensors(run_dir / "recon.pt", dict(truth=truth, recon=recon, back_projection=back,
                                                         indices=torch.arange(num_images)))
        grid = tracking.save_grid(run_dir / "grid.png", [truth, tracking.minmax(back), recon])
        tracking.write_json(run_dir / "metrics.json", summary)  # last: its presence means the run finished
        logger.log_results(summary, per_image, grid)
        exit_code = 0
        log.info("psnr %.2f dB, ssim %.3f over %d images; results in %s", summary["psnr_mean"] or float("nan"),
                 summary["ssim_mean"] or float("nan"), num_images, run_dir)
        return summary
    finally:
        logger.finish(exit_code)
