"""Tune a method's knobs on MNIST test images 500-515 (not the first 16 that results report).

    python scripts/tune.py diff_onebit m=200 lam=1,3 step_size=1e-4,2e-4
Prints mean PSNR / psnr_scaled for each combination (product of the lists)."""
import itertools
import sys
import time

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from pathlib import Path

from qcsbench import metrics
from qcsbench.problem import Problem
from qcsbench.randomness import MEASUREMENT, SAMPLER, ImageRandom

ROOT = Path(__file__).resolve().parents[1]


def main():
    method, *args = sys.argv[1:]
    top = [a for a in args if a.split("=")[0] in ("m", "bits", "noise_std", "quantizer", "num_images")]
    knobs = [a.split("=") for a in args if a not in top]
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=[f"method={method}", "logger=none", *top])
    indices = list(range(500, 500 + cfg.num_images))
    data = instantiate(cfg.dataset, split="test")
    x = data.batch(indices)
    op = instantiate(cfg.operator, shape=list(data.shape), m=cfg.m)
    channel = instantiate(cfg.quantizer)
    prior = instantiate(cfg.prior).to(dtype=torch.float32)
    meas = channel.measure(op.forward(x), ImageRandom(cfg.seed, indices, MEASUREMENT))
    problem = Problem(op, channel, meas)
    for values in itertools.product(*[v.split(",") for _, v in knobs]):
        over = {k: float(v) if v.replace(".", "").replace("e-", "").replace("e", "").isdigit() else v
                for (k, _), v in zip(knobs, values)}
        over = {k: int(v) if isinstance(v, float) and v.is_integer() and k in ("num_levels", "inner_steps", "sparsity", "steps_per_level", "iterations") else v for k, v in over.items()}
        m = instantiate(cfg.method, progress=False, **over)
        tic = time.perf_counter()
        r = m.recover(problem, prior, ImageRandom(cfg.seed, indices, SAMPLER))
        s = metrics.evaluate(r.x_hat, x)
        print(f"{method} m={cfg.m} {over}: psnr {s['psnr'].mean():.2f} scaled {s['psnr_scaled'].mean():.2f} "
              f"ssim {s['ssim'].mean():.3f} nfe {r.nfe} {time.perf_counter() - tic:.1f}s", flush=True)


if __name__ == "__main__":
    main()
