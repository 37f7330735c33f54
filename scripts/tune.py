"""Tune a method's knobs on MNIST test images 500-515 (not the first 16 that results report).

    python scripts/tune.py diff_onebit m=200 lam=0.1,0.3 step_ratio=0.5,1
Prints mean PSNR / psnr_scaled for each combination (product of the lists). Top-level keys
(m, bits, noise_std, quantizer, num_images, prior, ...) set the experiment; any other key is
a method knob, given to Hydra as method.KEY=VALUE, so values parse as on the run.py command line."""
import itertools
import sys
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from qcsbench import metrics
from qcsbench.problem import Problem
from qcsbench.randomness import MEASUREMENT, SAMPLER, ImageRandom
from qcsbench.runner import build, build_prior, resolve_device

ROOT = Path(__file__).resolve().parents[1]
TOP = ("m", "bits", "noise_std", "quantizer", "num_images", "prior", "operator", "dataset", "seed", "device")


def main():
    method, *args = sys.argv[1:]
    top = [a for a in args if a.split("=")[0].split(".")[0] in TOP]
    knobs = [a.split("=", 1) for a in args if a not in top]
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        base = [f"method={method}", "logger=none", "method.progress=false", *top]
        cfg = compose("config", overrides=base)
        device = resolve_device(cfg.device)
        indices = list(range(500, 500 + cfg.num_images))
        data = build(cfg.dataset, split="test")
        x = data.batch(indices).to(device)
        op = build(cfg.operator, shape=list(data.shape), m=cfg.m).to(device)
        channel = build(cfg.quantizer)
        prior = build_prior(cfg, data, device)
        problem = Problem(op, channel, channel.measure(op.forward(x), ImageRandom(cfg.seed, indices, MEASUREMENT, device)))
        for values in itertools.product(*[v.split(",") for _, v in knobs]):
            chosen = [f"method.{k}={v}" for (k, _), v in zip(knobs, values)]
            recoverer = build(compose("config", overrides=base + chosen).method)
            tic = time.perf_counter()
            r = recoverer.recover(problem, prior, ImageRandom(cfg.seed, indices, SAMPLER, device))
            s = metrics.evaluate(r.x_hat, x)
            print(f"{method} m={cfg.m} {' '.join(chosen)}: psnr {s['psnr'].mean():.2f} scaled "
                  f"{s['psnr_scaled'].mean():.2f} ssim {s['ssim'].mean():.3f} nfe {r.nfe} "
                  f"{time.perf_counter() - tic:.1f}s", flush=True)


if __name__ == "__main__":
    main()
