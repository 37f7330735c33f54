"""Where the time goes: the prior (the score network) against everything else, per method.
For a learned method (idm, restoregrad) the network timed is its own fine-tuned UNet.

    python scripts/benchmark.py                                  # every method, MNIST, the GMM prior
    python scripts/benchmark.py --methods qcs_sgm,qcs_sgm_plus --images 8 prior=ncsn_mnist device=cuda

Each method recovers the same images from the same measurements with a shortened ladder
(--levels, so a method with its own step count keeps it); every call of the prior's score
or denoiser is timed. Printed side by side: NFE per image, wall time, time in the prior,
time in everything else, and per-step (per NFE) costs. Trailing key=value arguments are
config overrides, as for run.py.
"""
import argparse
import sys
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qcsbench import resolvers  # noqa: E402
from qcsbench.randomness import SAMPLER, ImageRandom  # noqa: E402
from qcsbench.setup import build, method_names  # noqa: E402


class TimedPrior:
    """The prior with a stopwatch on score and denoise (synchronising CUDA so the time is real)."""

    def __init__(self, prior, device):
        self.prior, self.device, self.seconds, self.calls = prior, device, 0.0, 0

    def __getattr__(self, name):
        return getattr(self.prior, name)

    def _timed(self, fn, *args, **kwargs):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        tic = time.perf_counter()
        out = fn(*args, **kwargs)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.seconds += time.perf_counter() - tic
        self.calls += 1
        return out

    def score(self, x, sigma, *args, **kwargs):
        return self._timed(self.prior.score, x, sigma, *args, **kwargs)

    def denoise(self, x, sigma, *args, **kwargs):
        return self._timed(self.prior.denoise, x, sigma, *args, **kwargs)


class Stopwatch:
    """Times every call of a module through forward hooks: a learned method's network, which
    carries the UNet that plays the prior's part."""

    def __init__(self, module, device):
        self.device, self.seconds, self.calls, self._tic = device, 0.0, 0, None
        module.register_forward_pre_hook(lambda *_: self._start())
        module.register_forward_hook(lambda *_: self._stop())

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _start(self):
        self._sync()
        self._tic = time.perf_counter()

    def _stop(self):
        self._sync()
        self.seconds += time.perf_counter() - self._tic
        self.calls += 1


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    all_methods = method_names(ROOT / "configs")
    parser.add_argument("--methods", default=",".join(all_methods), help="comma-separated method configs")
    parser.add_argument("--images", type=int, default=8, help="batch size (images recovered together)")
    parser.add_argument("--levels", type=int, default=40, help="noise levels for Langevin methods (num_levels)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. prior=ncsn_mnist m=400")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    resolvers.register()
    rows = []
    for name in args.methods.split(","):
        with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
            overrides = [f"method={name}", "logger=none", f"num_images={args.images}", *args.overrides]
            cfg = compose("config", overrides=overrides)
            if "num_levels" in cfg.method:
                cfg = compose("config", overrides=overrides + [f"method.num_levels={args.levels}"])
        if "progress" in cfg.method:
            cfg.method.progress = False
        setup = build(cfg)
        device, method = setup.device, setup.method
        indices = list(range(args.images))
        problem, _ = setup.problem(indices)
        if method.needs_prior:
            prior = TimedPrior(setup.prior, device)
        else:  # a learned method: its own UNet is the network to time, and no prior is built
            prior = None
            watch = Stopwatch(method.network(problem).unet, device)
        problem.operator.gram_eig()  # EP and DiffPIR use it: a one-off cost per operator, cached, not part of a step
        tic = time.perf_counter()
        result = method.recover(problem, prior, ImageRandom(cfg.seed, indices, SAMPLER, device))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        total = time.perf_counter() - tic
        steps = max(result.nfe, 1)
        network = (prior if prior is not None else watch).seconds
        rows.append((name, result.nfe, total, network, total - network, 1e3 * total / steps,
                     1e3 * network / steps, 1e3 * (total - network) / steps))

    print(f"{args.images} images, device {device}, torch threads {torch.get_num_threads()}, "
          f"prior {cfg.prior.get('name', '?')}, M = {cfg.m}, {cfg.get('bits')} bit(s)")
    head = ("method", "NFE", "wall s", "network s", "other s", "ms/step", "network ms/step", "other ms/step", "other %")
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for name, nfe, total, p, o, per, p_per, o_per in rows:
        print(f"| {name} | {nfe} | {total:.2f} | {p:.2f} | {o:.2f} | {per:.2f} | {p_per:.2f} | {o_per:.2f} | "
              f"{100 * o / max(total, 1e-12):.0f} |")


if __name__ == "__main__":
    main()
