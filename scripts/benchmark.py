"""Where the time goes, per method and per image size: the score network against everything else.

    python scripts/benchmark.py                                    # every method, MNIST, the GMM prior
    python scripts/benchmark.py --sizes mnist,cifar10,celeba64,ffhq256 --methods qcs_sgm,diff_onebit --quick
    python scripts/benchmark.py --methods qcs_sgm,qcs_sgm_plus --images 8 prior=ncsn_mnist device=cuda

Sizes: mnist (1 x 28 x 28, M = 200, the run's own prior: GMM by default), cifar10 (3 x 32 x 32,
M = 2000, NCSNv2), celeba64 (3 x 64 x 64, M = 4000, NCSNv2), ffhq256 (3 x 256 x 256, M = N/16,
ADM; the matrix-free operator=dct, since the dense A of that size is 9.7 GB: pass operator=gaussian
to have it). Beyond MNIST the networks are the real architectures with random weights, written
once to --checkpoints in the checkpoint formats of the released models, and the images are random
(nothing is downloaded); the work per step does not depend on the weights or the pictures.

Each row runs in a fresh process (its peak memory is its own) and reports, per step (one
network call, NFE):
- network ms and other ms: the wall time inside the prior's score / denoiser calls, and outside
  them between the first and the last call (the loop's steady state; CUDA is synchronised around
  each call so the split is real); wall s is the whole recovery, set-up inside the method included;
- aten ops and float64 ops per step outside the network's forward, and host syncs per step
  (reads of a device value by the host: float(t), t.item(), bool(t), copies to the CPU, and
  operations with data-dependent output shapes), counted by qcsbench.opcount between the first
  and the last network call of a second, shorter run (--count-levels), so set-up work before the
  loop is not included. For DPS the backward pass through the network is part of "other";
- set-up s: from building the prior and the operator to the first network call of the timed run
  (what a user waits for before the first sampler step), and the peak memory of the process
  (host RSS; on CUDA also the device's peak allocation).

--levels shortens every ladder (num_levels) so a benchmark run is quick; methods keep their own
steps per level. Trailing key=value arguments are config overrides, as for run.py.
"""
import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qcsbench import resolvers  # noqa: E402
from qcsbench.opcount import OpCounter, PausedPrior  # noqa: E402
from qcsbench.randomness import MEASUREMENT, SAMPLER, ImageRandom  # noqa: E402
from qcsbench.setup import build, build_operator, build_prior, instantiate, method_names  # noqa: E402
from qcsbench.device import resolve_device  # noqa: E402
from qcsbench.problem import Problem  # noqa: E402

# size: (config overrides, image shape, M); beyond MNIST the prior's checkpoint is a random-weight file
SIZES = {
    "mnist": ([], (1, 28, 28), 200),
    "cifar10": (["prior=ncsnv2_cifar10"], (3, 32, 32), 2000),
    "celeba64": (["prior=ncsnv2_celeba"], (3, 64, 64), 4000),
    "ffhq256": (["prior=adm_ffhq", "operator=dct"], (3, 256, 256), 196608 // 16),
}
ADM_KEYS = ("image_size", "in_channels", "num_channels", "num_res_blocks", "channel_mult", "attention_resolutions",
            "num_heads", "num_head_channels", "learn_sigma", "use_scale_shift_norm", "resblock_updown")


def random_checkpoint(prior_cfg, folder: Path) -> Path:
    """A random-weight network at the architecture ``prior_cfg`` names, saved in its family's format
    (a state dict, as the loaders accept), once per architecture."""
    from qcsbench.networks.adm import ADMUNet
    from qcsbench.priors.base import geometric_sigmas
    from qcsbench.networks.ncsnv2 import NCSNv2

    path = folder / f"{prior_cfg.name}_random.pt"
    if path.is_file():
        return path
    torch.manual_seed(0)
    if "ngf" in prior_cfg:
        net = NCSNv2(geometric_sigmas(prior_cfg.sigma_max, prior_cfg.sigma_min, prior_cfg.num_levels), prior_cfg.channels,
                     prior_cfg.ngf, prior_cfg.image_size, prior_cfg.deepest)
    else:
        net = ADMUNet(*(prior_cfg[k] for k in ADM_KEYS))
    with torch.no_grad():
        for p in net.parameters():  # move the zero-initialised output layers: every weight takes part
            p.add_(0.02 * torch.randn_like(p))
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(net.state_dict(), tmp)
    tmp.replace(path)
    return path


class TimedPrior:
    """The prior with a stopwatch on score and denoise (synchronising CUDA so the time is real). It
    notes when the first and the last call start, and the network time before the last, so that
    ``other_per_step`` is the loop's steady state (set-up inside the method left out)."""

    def __init__(self, prior, device):
        self.prior, self.device, self.seconds, self.calls = prior, device, 0.0, 0
        self.first_call = self.last_call = None
        self.seconds_before_last = 0.0

    def __getattr__(self, name):
        return getattr(self.prior, name)

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _timed(self, fn, *args, **kwargs):
        self._sync()
        tic = time.perf_counter()
        if self.first_call is None:
            self.first_call = tic
        self.last_call, self.seconds_before_last = tic, self.seconds
        out = fn(*args, **kwargs)
        self._sync()
        self.seconds += time.perf_counter() - tic
        self.calls += 1
        return out

    def other_per_step(self):
        """Seconds per step outside the network, between the first and the last call (None below two)."""
        if self.calls < 2:
            return None
        return (self.last_call - self.first_call - self.seconds_before_last) / (self.calls - 1)

    def score(self, x, sigma, *args, **kwargs):
        return self._timed(self.prior.score, x, sigma, *args, **kwargs)

    def denoise(self, x, sigma, *args, **kwargs):
        return self._timed(self.prior.denoise, x, sigma, *args, **kwargs)


class StepCounter(PausedPrior):
    """Counts ops between the first and the last network call: the loop's steady state."""

    def __init__(self, prior, counter):
        super().__init__(prior, counter)
        self.at_first = self.at_last = None

    def _paused(self, fn, *args, **kwargs):
        mark = (self.counter.ops, self.counter.float64_ops, self.counter.syncs)
        if self.at_first is None:
            self.at_first = mark
        self.at_last = mark
        return super()._paused(fn, *args, **kwargs)

    def per_step(self):
        """ops, float64 ops and syncs per step; None where the run made fewer than two network calls."""
        if self.calls < 2:
            return None, None, None
        return [(last - first) / (self.calls - 1) for first, last in zip(self.at_first, self.at_last)]


class Stopwatch:
    """Times every call of a module through forward hooks: a learned method's network, which
    carries the UNet that plays the prior's part."""

    def __init__(self, module, device):
        self.device, self.seconds, self.calls, self._tic, self.first_call = device, 0.0, 0, None, None
        module.register_forward_pre_hook(lambda *_: self._start())
        module.register_forward_hook(lambda *_: self._stop())

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _start(self):
        self._sync()
        self._tic = time.perf_counter()
        self.first_call = self.first_call or self._tic

    def _stop(self):
        self._sync()
        self.seconds += time.perf_counter() - self._tic
        self.calls += 1


def compose_config(size, method, args, levels):
    extra, shape, m = SIZES[size]
    overrides = [f"method={method}", "logger=none", f"num_images={args.images}", f"batch_size={args.images}",
                 f"m={m}", *extra, *args.overrides]
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
        if "num_levels" in cfg.method:
            cfg = compose("config", overrides=overrides + [f"method.num_levels={levels}"])
    if "progress" in cfg.method:
        cfg.method.progress = False
    if size != "mnist" and "checkpoint" in cfg.prior:
        cfg.prior.checkpoint = str(random_checkpoint(cfg.prior, Path(args.checkpoints)))
    return cfg, shape


def experiment(size, cfg, shape, images):
    """(method, problem, prior) for ``cfg``: MNIST as run.py builds it, other sizes on random images."""
    if size == "mnist":
        setup = build(cfg)
        problem, _ = setup.problem(list(range(images)))
        return setup.method, problem, (setup.prior if setup.method.needs_prior else None), setup.device
    device = resolve_device(cfg.device)
    operator = build_operator(cfg, shape).to(device, torch.float32)
    channel, method = instantiate(cfg.quantizer), instantiate(cfg.method)
    g = torch.Generator().manual_seed(0)
    coarse = torch.rand(images, shape[0], 8, 8, generator=g)  # smooth random pictures
    x = torch.nn.functional.interpolate(coarse, size=shape[1:], mode="bilinear", align_corners=False).to(device)
    problem = Problem.measure(x, operator, channel, ImageRandom(cfg.seed, range(images), MEASUREMENT, device))
    prior = instantiate(cfg.prior).to(device, torch.float32) if method.needs_prior else None
    return method, problem, prior, device


def one_row(size, method_name, args) -> dict:
    """Time one method at one size, then count its ops on a shorter run; a dict for the table."""
    torch.manual_seed(0)
    tic = time.perf_counter()
    cfg, shape = compose_config(size, method_name, args, args.levels)
    method, problem, prior, device = experiment(size, cfg, shape, args.images)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    indices = list(range(args.images))
    if prior is not None:
        timed = TimedPrior(prior, device)
    else:
        timed = None
        watch = Stopwatch(method.network(problem).unet, device)
    start = time.perf_counter()
    result = method.recover(problem, timed, ImageRandom(cfg.seed, indices, SAMPLER, device))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    total = time.perf_counter() - start
    clock = timed if timed is not None else watch
    steps = max(clock.calls, 1)
    other = timed.other_per_step() if timed is not None else (total - clock.seconds) / steps
    row = dict(size=size, method=method_name, nfe=result.nfe, device=str(device), wall_s=total,
               setup_s=(clock.first_call or time.perf_counter()) - tic, network_ms=1e3 * clock.seconds / steps,
               other_ms=None if other is None else 1e3 * other)
    if prior is not None and args.count_levels > 0:
        cfg, _ = compose_config(size, method_name, args, args.count_levels)
        counted_method = instantiate(cfg.method)
        counter = OpCounter()
        spy = StepCounter(prior, counter)
        with counter:
            counted_method.recover(problem, spy, ImageRandom(cfg.seed, indices, SAMPLER, device))
        row["ops"], row["float64_ops"], row["syncs"] = spy.per_step()
        row["sync_names"] = counter.sync_names
    row["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    if device.type == "cuda":
        row["peak_device_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
    return row


def fmt(value, spec):
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default=None, help="comma-separated method configs (default: all; beyond "
                                                        "MNIST the prior-based ones)")
    parser.add_argument("--sizes", default="mnist", help=f"comma-separated, of {', '.join(SIZES)}")
    parser.add_argument("--images", type=int, default=8, help="batch size (images recovered together)")
    parser.add_argument("--levels", type=int, default=40, help="noise levels of the timed run (num_levels)")
    parser.add_argument("--count-levels", type=int, default=3, help="noise levels of the counted run (0: no count)")
    parser.add_argument("--quick", action="store_true", help="1 image, 2 timed levels, 2 counted")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--checkpoints", default=str(Path(tempfile.gettempdir()) / "qcsbench_benchmark"),
                        help="folder for the random-weight checkpoints (written once)")
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    parser.add_argument("--row", nargs=2, metavar=("SIZE", "METHOD"), help=argparse.SUPPRESS)  # one row, in-process
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. prior=ncsn_mnist m=400")
    args = parser.parse_args()
    if args.quick:
        args.images, args.levels, args.count_levels = 1, 2, 2
    if args.threads:
        torch.set_num_threads(args.threads)
    resolvers.register()
    if args.row:
        print(json.dumps(one_row(*args.row, args)))
        return

    sizes = args.sizes.split(",")
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        parser.error(f"--sizes {unknown[0]} is not one of {', '.join(SIZES)}")
    learned = {"idm", "restoregrad"}
    rows = []
    for size in sizes:
        names = args.methods.split(",") if args.methods else [
            m for m in method_names(ROOT / "configs") if size == "mnist" or m not in learned]
        for name in names:
            command = [sys.executable, __file__, "--row", size, name, "--images", str(args.images), "--levels",
                       str(args.levels), "--count-levels", str(args.count_levels), "--checkpoints", args.checkpoints]
            if args.threads:
                command += ["--threads", str(args.threads)]
            done = subprocess.run(command + args.overrides, capture_output=True, text=True)
            if done.returncode != 0:
                print(f"{size} {name}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
                continue
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"done: {size} {name}", file=sys.stderr)

    print(f"{args.images} images, torch {torch.__version__}, threads {args.threads or torch.get_num_threads()}, "
          f"device {rows[0]['device'] if rows else '?'}")
    head = ("size", "method", "NFE", "wall s", "network ms/step", "other ms/step", "other %", "aten ops/step",
            "float64 ops/step", "host syncs/step", "set-up s", "peak RSS GB")
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for r in rows:
        other = r["other_ms"]
        share = None if other is None else 100 * other / max(r["network_ms"] + other, 1e-12)
        print(f"| {r['size']} | {r['method']} | {r['nfe']} | {r['wall_s']:.1f} | {r['network_ms']:.1f} | "
              f"{fmt(other, '.1f')} | {fmt(share, '.0f')} | "
              f"{fmt(r.get('ops'), '.0f')} | {fmt(r.get('float64_ops'), '.0f')} | {fmt(r.get('syncs'), '.2f')} | "
              f"{r['setup_s']:.1f} | {r['peak_rss_gb']:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
