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
from hydra.types import RunMode
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from qcsbench import metrics, tracking
from qcsbench.errors import ConfigError
from qcsbench.problem import Problem, summarize_stats
from qcsbench.randomness import MEASUREMENT, SAMPLER, ImageRandom
from qcsbench.store import ResultStore, batch_coupled, batches_to_run, result_key

log = logging.getLogger(__name__)


def build(node, **kwargs):
    """hydra.utils.instantiate, but a ConfigError raised by the target reaches the user
    as itself (Hydra wraps every exception in an InstantiationException)."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__
        while cause is not None and not isinstance(cause, ConfigError):
            cause = cause.__cause__
        if cause is not None:
            raise cause from None
        raise


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


def positive_int(cfg, key: str) -> int:
    value = cfg[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{key}={value} is not allowed: use a positive integer.")
    return value


def run_dir_of(cfg) -> Path:
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path(cfg.get("run_dir") or ".")


def job_identity(cfg) -> dict:
    """W&B name, group and tags of this job: named from its overrides, grouped by its sweep."""
    tags = [f"method={cfg.method.get('name')}", f"bits={cfg.get('bits')}", f"m={cfg.m}",
            f"operator={str(cfg.operator._target_).rsplit('.', 1)[-1]}"]
    name, group = f"{cfg.method.get('name')}-{cfg.get('bits')}bit-m{cfg.m}", None
    if HydraConfig.initialized():
        hc = HydraConfig.get()
        if hc.job.override_dirname:
            name = hc.job.override_dirname
        if hc.mode == RunMode.MULTIRUN:
            group = Path(hc.sweep.dir).as_posix().replace("/", "_").strip("_")
    return dict(name=name, group=group, tags=tags)


def summarize(records: list[dict], seconds: float, cfg) -> dict:
    rows = [r["row"] for r in records]
    ok = [row for row in rows if row["status"] == "ok"]
    out = dict(num_images=len(rows), num_diverged=len(rows) - len(ok), nfe=max(r["nfe"] for r in records),
               seconds=seconds, seconds_per_image=seconds / max(len(rows), 1),
               method=cfg.method.get("name", str(cfg.method._target_)), bits=cfg.get("bits"), m=cfg.m,
               noise_std=cfg.noise_std, seed=cfg.seed)
    for name in metrics.NAMES:
        values = np.array([row[name] for row in ok], dtype=np.float64)
        out[f"{name}_mean"] = tracking.finite_or_none(values.mean()) if len(values) else None
        out[f"{name}_std"] = tracking.finite_or_none(values.std()) if len(values) else None
    return out


def recover_batch(indices, test_set, operator, channel, method, prior, cfg, device) -> list[dict]:
    """Measure and recover one batch; one record per image (metrics row, recovery, A^T y, cost)."""
    x = test_set.batch(indices).to(device)
    measurement = channel.measure(operator.forward(x), ImageRandom(cfg.seed, indices, MEASUREMENT, device))
    problem = Problem(operator, channel, measurement)
    tic = time.perf_counter()
    result = method.recover(problem, prior, ImageRandom(cfg.seed, indices, SAMPLER, device))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = (time.perf_counter() - tic) / len(indices)
    scores = metrics.evaluate(result.x_hat, x)
    back = problem.back_projection().cpu()
    records = []
    for j, index in enumerate(indices):
        finite = bool(torch.isfinite(result.x_hat[j]).all()) and all(
            bool(torch.isfinite(scores[k][j])) for k in metrics.NAMES)
        row = dict(index=index, status="ok" if finite else "diverged")
        row.update({k: float(scores[k][j]) if finite else None for k in metrics.NAMES})
        records.append(dict(index=index, row=row, recon=result.x_hat[j].cpu(), back_projection=back[j],
                            nfe=result.nfe, seconds=seconds, stats={k: float(v[j]) for k, v in result.stats.items()}))
    log.info("images %d-%d: psnr %.2f dB", indices[0], indices[-1], float(scores["psnr"].nanmean()))
    return records


def write_results(run_dir: Path, records: list[dict], summary: dict, test_set) -> Path:
    """The run folder's files; metrics.json last, so its presence means the run finished."""
    truth = test_set.batch([r["index"] for r in records])
    recon = torch.stack([r["recon"] for r in records])
    back = torch.stack([r["back_projection"] for r in records])
    tracking.write_csv(run_dir / "per_image.csv", [r["row"] for r in records])
    tracking.save_tensors(run_dir / "recon.pt", dict(truth=truth, recon=recon, back_projection=back,
                                                     indices=torch.tensor([r["index"] for r in records])))
    grid = tracking.save_grid(run_dir / "grid.png", [truth, tracking.minmax(back), recon])
    tracking.write_json(run_dir / "metrics.json", summary)
    return grid


def build_prior(cfg, test_set, device):
    """The prior, checked against the data and moved to the device (the expensive step of a setup)."""
    prior = build(cfg.prior)
    if tuple(prior.shape) != tuple(test_set.shape):
        raise ConfigError(f"prior={cfg.prior.get('name', 'prior')} takes images of shape {tuple(prior.shape)}, "
                          f"dataset {test_set.name} has {tuple(test_set.shape)}: pick a matching prior or dataset.")
    return prior.to(device, torch.float32)


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
    config = OmegaConf.to_container(cfg, resolve=True)
    key = result_key(config)
    store = ResultStore(Path(str(cfg.results_dir)).expanduser(), key) if cfg.resume else None
    records = store.load(range(num_images)) if store else {}
    batches = batches_to_run(num_images, batch_size, records, batch_coupled(key))
    todo = [i for b in batches for i in b]
    prior = None
    if todo:  # a run whose every image is already in the store needs no prior at all
        prior = build_prior(cfg, test_set, device)
        operator = operator.to(device, torch.float32)
    if records:
        log.info("%d of %d images are already finished in %s; recovering %d",
                 len(records), num_images, store.dir, len(todo))
    tracking.write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))

    logger.start(config, run_dir, run_id=store.id if store else None,
                 **job_identity(cfg))
    exit_code = 1
    try:
        for batch in batches:
            for record in recover_batch(batch, test_set, operator, channel, method, prior, cfg, device):
                records[record["index"]] = record
                if store:
                    store.save(record)
        ordered = [records[i] for i in range(num_images)]
        summary = summarize(ordered, sum(r["seconds"] for r in ordered), cfg)
        summary.update(summarize_stats([r.get("stats", {}) for r in ordered]))
        summary.update(num_resumed=num_images - len(todo), seconds_total=time.perf_counter() - started,
                       result_id=store.id if store else None)
        if summary["num_diverged"]:
            log.warning("%d of %d images diverged (NaN or Inf); they are marked in per_image.csv and left out "
                        "of the means", summary["num_diverged"], num_images)
        grid = write_results(run_dir, ordered, summary, test_set)
        logger.log_results(summary, [r["row"] for r in ordered], grid)
        exit_code = 0
        log.info("psnr %.2f dB, ssim %.3f over %d images; results in %s", summary["psnr_mean"] or float("nan"),
                 summary["ssim_mean"] or float("nan"), num_images, run_dir)
        return summary
    finally:
        logger.finish(exit_code)
