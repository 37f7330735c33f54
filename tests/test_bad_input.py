"""Every bad value stops with one sentence naming its key, before anything is built.

The cases are composed in-process with Hydra's compose API (as run.py composes them). The
table CASES goes to the walker, ``validate.check_config``, which imports the components a
config names and reads the settings they declare but builds nothing; BUILT holds the values
only a built component can judge (m against the operator's pixels, the data files), run
through ``runner.run`` with the prior builder replaced by one that fails the test. A handful
go through ``python run.py`` to check what a user sees: one line, exit code 2, no traceback,
also for a bad job in a sweep.
"""
import gzip
import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image

import qcsbench.setup
from conftest import run_cli
from qcsbench.errors import ConfigError
from qcsbench.runner import run
from qcsbench.validate import check_config

NO_CUDA = not torch.cuda.is_available()
NO_MPS = not torch.backends.mps.is_available()

# (overrides, text the message must hold). {bad} is a folder of broken files, {tmp} an empty folder.
# The walker stops these:
CASES = [
    # top level
    (["bits=0"], "bits=0 is not allowed: use an integer from 1 to 16"),
    (["bits=17"], "bits=17"), (["bits=1.5"], "bits=1.5"), (["bits=foo"], "bits=foo"), (["bits=true"], "bits=true"),
    (["bits=null"], "bits=null"),
    (["noise_std=-0.1"], "noise_std=-0.1"), (["noise_std=inf"], "noise_std=inf"), (["noise_std=nan"], "noise_std=nan"),
    (["noise_std=foo"], "noise_std=foo"), (["noise_std=null"], "noise_std=null"),
    (["seed=-1"], "seed=-1 is not allowed: use a non-negative integer"), (["seed=1.5"], "seed=1.5"),
    (["seed=foo"], "seed=foo"), (["seed=true"], "seed=true"),
    (["num_images=0"], "num_images=0"),
    (["num_images=2.0"], "num_images=2.0"),
    (["num_samples=0"], "num_samples=0 is not allowed: use a positive integer"), (["num_samples=1.5"], "num_samples=1.5"),
    (["batch_size=0"], "batch_size=0"), (["batch_size=-1"], "batch_size=-1"), (["batch_size=foo"], "batch_size=foo"),
    (["device=tpu"], "device=tpu"), (["device=foo"], "device=foo"),
    pytest.param(["device=cuda"], "device=cuda is not available", marks=pytest.mark.skipif(not NO_CUDA, reason="CUDA")),
    pytest.param(["device=cuda:99"], "device=cuda:99", marks=pytest.mark.skipif(not NO_CUDA, reason="CUDA")),
    pytest.param(["device=mps"], "device=mps is not available", marks=pytest.mark.skipif(not NO_MPS, reason="MPS")),
    (["resume=maybe"], "resume=maybe is not allowed: use true or false"), (["resume=1"], "resume=1"),
    (["resume=no"], "resume=no"),
    (["results_dir=/dev/null/x"], "results_dir=/dev/null/x cannot be created"),
    (["results_dir=/etc/hostname"], "results_dir=/etc/hostname is not a folder"),
    (["cache_dir=/etc/hostname"], "cache_dir=/etc/hostname is not a folder"),
    (["cache_dir=/dev/null/sub"], "cache_dir=/dev/null/sub cannot be created"),
    (["results_dir="], "results_dir= is empty: give a folder path"), (["cache_dir="], "cache_dir= is empty"),
    (["results_dir=/proc/qcsbench"], "results_dir=/proc/qcsbench is not writable"),
    (["+profile=tiny"], "profile is not a setting (no config group or top-level key has that name)"),
    (["+foo=1"], "foo is not a setting"),
    (["+experiment=qcs_sgm_celeba64_fixed_budget", "bits=0", "dataset.root={tmp}", "prior.checkpoint=/etc/hostname"],
     "bits=0 is not allowed"),
    (["+experiment=onebit_ffhq256_table", "n_over_m=0", "dataset.root={tmp}"], "n_over_m=0 is not allowed"),
    (["+prior_autocast=fp8"], "prior_autocast=fp8"), (["+prior_compile=maybe"], "prior_compile=maybe"),
    # dataset
    (["dataset=mnist_idx"], "dataset.root is not set"),
    (["dataset=mnist_idx", "dataset.root=/nonexistent/mnist"], "dataset.root=/nonexistent/mnist is not an existing folder"),
    (["dataset=cifar10"], "dataset.root is not set"),
    (["dataset=cifar10", "dataset.root=/nonexistent"], "dataset.root=/nonexistent"),
    (["dataset=image_folder"], "dataset.root is not set"), (["dataset=celeba"], "dataset.root is not set"),
    (["dataset=ffhq", "dataset.root=/nonexistent"], "dataset.root=/nonexistent"),
    (["dataset=image_folder", "dataset.root={bad}/png_split", "dataset.image_size=0"], "dataset.image_size=0"),
    (["dataset=image_folder", "dataset.root={bad}/png_split", "dataset.image_size=-3"], "dataset.image_size=-3"),
    (["dataset=image_folder", "dataset.root={bad}/png_split", "dataset.image_size=foo"], "dataset.image_size=foo"),
    (["dataset=image_folder", "dataset.root={bad}/png_split", "dataset.center_crop=0"], "dataset.center_crop=0"),
    (["dataset=image_folder", "dataset.root={bad}/png_split", "dataset.channels=2"], "dataset.channels=2"),
    (["dataset=image_folder", "dataset.root={bad}/png_flat", "dataset.image_size=28", "dataset.channels=1"],
     "is a flat folder (no train/ and test/ subfolders), so prior=gmm would be fitted on the test images"),
    (["+dataset.foo=1"], "dataset.foo is not a setting of dataset=embedded_mnist"),
    # prior
    (["prior.n_components=0"], "prior.n_components=0"), (["prior.n_components=2.5"], "prior.n_components=2.5"),
    (["prior.reg_covar=0"], "prior.reg_covar=0"), (["prior.reg_covar=-1"], "prior.reg_covar=-1"),
    (["prior.reg_covar=nan"], "prior.reg_covar=nan"), (["prior.max_train=0"], "prior.max_train=0"),
    (["prior.seed=-1"], "prior.seed=-1"), (["prior.max_iter=0"], "prior.max_iter=0"),
    (["prior.sigma_max=-1"], "prior.sigma_max=-1"), (["prior.sigma_min=0"], "prior.sigma_min=0"),
    (["prior.sigma_max=0.001"], "prior.sigma_max=0.001 is not allowed with prior.sigma_min=0.01"),
    (["prior.num_levels=0"], "prior.num_levels=0"), (["prior.sigma_max=inf"], "prior.sigma_max=inf"),
    (["prior.max_train=1"], "prior.max_train=1 is not allowed: use an integer >= 2"),
    (["prior.n_components=30", "prior.max_train=20"], "prior.n_components=30 is not allowed with prior.max_train=20"),
    (["prior.seed=4294967296"], "prior.seed=4294967296 is not allowed: use an integer from 0 to 4294967295"),
    (["prior=ncsnv2_mnist"], "prior.checkpoint is not set"),
    (["prior=ncsnv2_mnist", "prior.checkpoint=/nonexistent.pth"], "prior.checkpoint=/nonexistent.pth is not an existing file"),
    (["prior=ncsnv2_mnist", "prior.checkpoint=/etc/hostname"], "prior.checkpoint=/etc/hostname is not a PyTorch checkpoint"),
    (["prior=ncsnv2_mnist", "prior.checkpoint={tmp}"], "is not an existing file"),
    (["prior=ncsnv2_mnist", "prior.use_ema=maybe"], "prior.use_ema=maybe"),
    (["prior=ncsnv2_mnist", "prior.autocast=fp8"], "prior.autocast=fp8"),
    (["prior=ncsnv2_mnist", "prior.compile=yes"], "prior.compile=yes"),
    (["prior=ncsnv2_mnist", "prior.ngf=0"], "prior.ngf=0"),
    (["prior=ncsnv2_mnist", "prior.deepest=1"], "prior.deepest=1"),
    (["prior=ddpm"], "prior.path is not set"), (["prior=ddpm", "prior.path=/nonexistent"], "prior.path=/nonexistent"),
    (["prior=ddpm", "prior.path={tmp}"], "holds no config.json"),
    (["prior=ddpm", "prior.path=nobody/no-such-model"],
     "prior.path=nobody/no-such-model is neither a folder nor a model in the local Hugging Face cache"),
    (["prior=ncsnpp", "prior.path=/etc/hostname"], "prior.path=/etc/hostname is not an existing folder"),
    (["prior=adm_ffhq"], "prior.checkpoint is not set"),
    (["prior=adm_ffhq", "prior.noise_schedule=cosine"], "prior.noise_schedule=cosine"),
    (["prior=adm_ffhq", "prior.learn_sigma=maybe"], "prior.learn_sigma=maybe"),
    (["prior=adm_ffhq", "prior.num_head_channels=-2"], "prior.num_head_channels=-2"),
    (["prior=adm_ffhq", "prior.attention_resolutions=abc"], "prior.attention_resolutions=abc"),
    (["prior=trained"], "prior.checkpoint is not set"),
    (["prior=ncsn_mnist", "prior.shipped=foo"], "prior.shipped=foo"),
    (["+prior.foo=1"], "prior.foo is not a setting of prior=gmm"),
    # operator
    (["operator.seed=-1"], "operator.seed=-1"), (["operator.seed=0.5"], "operator.seed=0.5"),
    (["operator.seed=18446744073709551616"], "operator.seed=18446744073709551616 is not allowed"),
    (["operator=ill_conditioned", "operator.kappa=inf"], "operator.kappa=inf"),
    (["operator=ill_conditioned", "operator.kappa=0.5"], "operator.kappa=0.5"),
    (["operator=ill_conditioned", "operator.kappa=nan"], "operator.kappa=nan"),
    (["operator=correlated", "operator.rho=1"], "operator.rho=1"),
    (["operator=correlated", "operator.rho=-0.1"], "operator.rho=-0.1"),
    (["operator=correlated", "operator.rho=foo"], "operator.rho=foo"),
    (["+operator.kappa=10"], "operator.kappa is not a setting of operator=gaussian"),
    # quantizer
    (["quantizer.range=foo"], "quantizer.range=foo"), (["quantizer.dither=foo"], "quantizer.dither=foo"),
    (["quantizer.dither=1"], "quantizer.dither=1"), (["quantizer.reference_clamps=maybe"], "quantizer.reference_clamps=maybe"),
    (["quantizer.bits=0"], "quantizer.bits=0"), (["quantizer.noise_std=-1"], "quantizer.noise_std=-1"),
    (["quantizer=logistic", "quantizer.temperature=0"], "quantizer.temperature=0"),
    (["quantizer=logistic", "quantizer.temperature=-1"], "quantizer.temperature=-1"),
    (["quantizer=logistic", "quantizer.temperature=inf"], "quantizer.temperature=inf"),
    (["quantizer=logistic", "bits=3"], "bits=3 is not used by quantizer=logistic"),
    (["quantizer=none", "bits=2"], "bits=2 is not used by quantizer=none"),
    (["+quantizer.foo=1"], "quantizer.foo is not a setting of quantizer=UniformQuantizer"),
    # method
    (["method.step_lr=0"], "method.step_lr=0"), (["method.step_lr=-1"], "method.step_lr=-1"),
    (["method.step_lr=nan"], "method.step_lr=nan"), (["method.steps_per_level=0"], "method.steps_per_level=0"),
    (["method.steps_per_level=1.5"], "method.steps_per_level=1.5"), (["method.gamma=nan"], "method.gamma=nan"),
    (["method.gamma=-1"], "method.gamma=-1"), (["method.gamma=inf"], "method.gamma=inf"),
    (["method.weighting=foo"], "method.weighting=foo"), (["method.num_levels=0"], "method.num_levels=0"),
    (["method.sigma_min=0.5", "method.sigma_max=0.1"], "method.sigma_max=0.1 is not allowed with method.sigma_min=0.5"),
    (["method.sigma_max=-1"], "method.sigma_max=-1"), (["method.max_step_ratio=2"], "method.max_step_ratio=2"),
    (["method.max_step_ratio=0"], "method.max_step_ratio=0"), (["method.report_previous=no"], "method.report_previous=no"),
    (["method.final_denoise=no"], "method.final_denoise=no"), (["method.progress=maybe"], "method.progress=maybe"),
    (["method=qcs_sgm_plus", "method.ep_max_iter=0"], "method.ep_max_iter=0"),
    (["method=qcs_sgm_plus", "method.ep_damping=1"], "method.ep_damping=1"),
    (["method=qcs_sgm_plus", "method.ep_tolerance=-1"], "method.ep_tolerance=-1"),
    (["method=ald", "method.noise_std=-1"], "method.noise_std=-1"),
    (["method=biht", "method.sparsity=0"], "method.sparsity=0"), (["method=biht", "method.iterations=0"], "method.iterations=0"),
    (["method=biht", "method.step=0"], "method.step=0"), (["method=biht", "method.pixel_rms=0"], "method.pixel_rms=0"),
    (["method=diff_onebit", "method.inner_steps=-1"], "method.inner_steps=-1"),
    (["method=diff_onebit", "method.step_ratio=0"], "method.step_ratio=0"),
    (["method=diff_onebit", "method.step_ratio=1.5"], "method.step_ratio=1.5"),
    (["operator=block", "operator.block=0"], "operator.block=0"),
    (["method=diff_onebit", "method.lam=0"], "method.lam=0"), (["method=diff_onebit", "method.zeta=2"], "method.zeta=2"),
    (["method=diff_onebit", "method.surrogate_std=0"], "method.surrogate_std=0"),
    (["method=diffpir", "method.lam=-1"], "method.lam=-1"), (["method=diffpir", "method.noise_std=0"], "method.noise_std=0"),
    (["method=diffpir", "quantizer=none", "noise_std=0"], "method.noise_std=null is not allowed for a noiseless channel"),
    (["method=pnp_dm", "method.step_ratio=1"], "method.step_ratio=1"),
    (["method=pnp_dm", "method.rho_decay=0"], "method.rho_decay=0"), (["method=pnp_dm", "method.eta=2"], "method.eta=2"),
    (["method=pnp_onebit", "method.rho_min=1", "method.rho_max=0.5"], "method.rho_max=0.5 is not allowed with method.rho_min=1"),
    (["method=dps", "method.guidance=foo"], "method.guidance=foo"), (["method=dps", "method.zeta=-1"], "method.zeta=-1"),
    (["method=daps", "method.ode_steps=0"], "method.ode_steps=0"),
    (["method=daps", "method.langevin_steps=-1"], "method.langevin_steps=-1"),
    (["method=daps", "method.step_ratio=1.5"], "method.step_ratio=1.5"),
    (["method=daps", "method.ode_sigma_min=0"], "method.ode_sigma_min=0"),
    (["method=oneshot", "method.pixel_rms=-1"], "method.pixel_rms=-1"),
    (["method=sim_dmis", "method.pixel_rms=0"], "method.pixel_rms=0"),
    (["method=sim_dmis", "method.sigma_scale=-1"], "method.sigma_scale=-1"),
    (["method=sim_dmis", "method.inversion_steps=0"], "method.inversion_steps=0"),
    (["method=sim_dmis", "method.inversion_order=3"], "method.inversion_order=3 is not allowed: use one of 1, 2."),
    (["method=red_diff", "method.lam=-1"], "method.lam=-1"), (["method=red_diff", "method.lr=0"], "method.lr=0"),
    (["method=red_diff", "method.weighting=foo"], "method.weighting=foo"),
    (["method=red_diff", "method.init=pinv"], "method.init=pinv"),
    (["+method.stepsize=1"], "method.stepsize is not a setting of method=qcs_sgm"),
    (["method.name=null"], "method.name=null"),
    # logger
    (["logger=wandb", "logger.mode=foo"], "logger.mode=foo is not allowed: use one of online, offline, disabled"),
    (["logger=wandb", "logger.mode=null"], "logger.mode=null"), (["logger=wandb", "logger.project=null"], "logger.project=null"),
    (["logger=wandb", "logger.tags=foo"], "logger.tags=foo"), (["logger=wandb", "logger.name=5"], "logger.name=5"),
    (["logger=wandb", "+logger.foo=1"], "logger.foo is not a setting of logger=WandbLogger"),
]

# The built dataset, operator and set-up stop these (the prior is still not built):
BUILT = [
    (["m=0"], "m=0"), (["m=-5"], "m=-5"), (["m=2.5"], "m=2.5"), (["m=foo"], "m=foo"), (["m=inf"], "m=inf"),
    (["m=12545"], "m=12545 is not allowed for operator=gaussian"),
    (["num_images=1001"], "num_images=1001 is more than dataset mnist-test holds"),
    (["dataset=image_folder", "dataset.root={tmp}", "prior=ncsn_mnist"], "holds no image files"),
    (["dataset=image_folder", "dataset.root={bad}/png_split", "dataset.image_size=64", "num_images=1"],
     "prior=gmm does not scale to 12288-pixel images (its 20 full covariances alone would take 24.2 GB and the fit "
     "hours; it is fitted up to 1024 pixels): use a score network for images this size, e.g. prior=ncsnv2_cifar10, "
     "ncsnv2_celeba, adm_ffhq, ddpm, ncsnpp or trained."),
    (["dataset=image_folder", "dataset.root={bad}/png_corrupt", "dataset.image_size=28", "dataset.channels=1", "num_images=3"],
     "bad.png cannot be read"),
    (["dataset=image_folder", "dataset.root={bad}/jpg_corrupt", "dataset.image_size=28", "dataset.channels=1", "num_images=3"],
     "bad.jpg cannot be read"),
    (["dataset=mnist_idx", "dataset.root={bad}/idx_truncated"], "t10k-images-idx3-ubyte is truncated"),
    (["dataset=mnist_idx", "dataset.root={bad}/idx_badgz"], "t10k-images-idx3-ubyte.gz cannot be read"),
    (["dataset=mnist_idx", "dataset.root={bad}/idx_gz_truncated"], "t10k-images-idx3-ubyte.gz cannot be read"),
    (["dataset=mnist_idx", "dataset.root={bad}/idx_magic"], "is not an IDX image file"),
    (["dataset=cifar10", "dataset.root={bad}/cifar_truncated"], "test_batch is not a readable CIFAR-10 batch"),
    (["dataset=cifar10", "dataset.root={bad}/cifar_text"], "test_batch is not a readable CIFAR-10 batch"),
    (["dataset=cifar10", "dataset.root={bad}/cifar_crafted"], "test_batch is not a readable CIFAR-10 batch"),
    (["operator=ill_conditioned", "m=785"], "m=785 is not allowed for operator=ill_conditioned"),
    (["operator=dct", "m=785"], "m=785 is not allowed for operator=dct"),
]


def idx_bytes(n=2, h=28, w=28):
    return struct.pack(">IIII", 2051, n, h, w) + bytes(n * h * w)


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    """A folder of broken data files, one subfolder per kind of damage."""
    root = tmp_path_factory.mktemp("bad")
    stem = "t10k-images-idx3-ubyte"
    for name, files in {
        "idx_truncated": {stem: idx_bytes()[:500]},
        "idx_badgz": {stem + ".gz": b"not gzip at all"},
        "idx_gz_truncated": {stem + ".gz": gzip.compress(idx_bytes()[:16] + np.random.default_rng(0).bytes(2 * 784))[:800]},
        "idx_magic": {stem: struct.pack(">IIII", 2049, 2, 28, 28) + bytes(2 * 784)},
        "cifar_truncated": {"test_batch": pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)})[:100]},
        "cifar_text": {"test_batch": b"hello, not a pickle"},
        "cifar_crafted": {"test_batch": pickle.dumps(Exploit())},
    }.items():
        (root / name).mkdir()
        for file, data in files.items():
            (root / name / file).write_bytes(data)
    rng = np.random.default_rng(0)
    for name, split in (("png_flat", False), ("png_split", True), ("png_corrupt", True), ("jpg_corrupt", True)):
        for sub in (["train", "test"] if split else [""]):
            folder = root / name / sub
            folder.mkdir(parents=True)
            for i in range(2):
                Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(folder / f"{i}.png")
    (root / "png_corrupt" / "test" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    good = (root / "png_split" / "test" / "0.png").read_bytes()
    Image.open(root / "png_split" / "test" / "0.png").save(root / "jpg_corrupt" / "test" / "bad.jpg")
    jpg = (root / "jpg_corrupt" / "test" / "bad.jpg").read_bytes()
    (root / "jpg_corrupt" / "test" / "bad.jpg").write_bytes(jpg[:20])
    assert good
    return root


class Exploit:
    """A pickle that would create a file if it were ever unpickled by plain pickle.load."""

    def __reduce__(self):
        import os
        return (os.system, ("touch /tmp/qcsbench-exploit-ran",))


@pytest.fixture
def no_prior(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the prior was built before the bad value was caught")
    monkeypatch.setattr(qcsbench.setup, "build_prior", fail)


@pytest.fixture
def case_cfg(make_cfg, tmp_path, bad):
    """A case's overrides, with {bad} and {tmp} filled in, composed as run.py would."""
    def make(overrides):
        empty = tmp_path / "empty"
        empty.mkdir(exist_ok=True)
        overrides = [o.replace("{bad}", str(bad)).replace("{tmp}", str(empty)) for o in overrides]
        logger = [] if any(o.startswith("logger=") for o in overrides) else ["logger=none"]
        return make_cfg(*logger, f"cache_dir={tmp_path / 'cache'}", f"+run_dir={tmp_path / 'run'}", *overrides)
    return make


def one_sentence(err, message):
    text = str(err.value)
    assert message in text
    assert "\n" not in text and text.endswith(".")


@pytest.mark.parametrize("overrides,message", CASES)
def test_the_walker_stops_a_bad_value_with_one_sentence(case_cfg, overrides, message):
    cfg = case_cfg(overrides)
    with pytest.raises(ConfigError) as err:
        check_config(cfg)
    one_sentence(err, message)


@pytest.mark.parametrize("overrides,message", BUILT)
def test_a_value_only_the_built_parts_can_judge_stops_before_the_prior(case_cfg, tmp_path, no_prior, overrides,
                                                                       message):
    cfg = case_cfg(overrides)
    with pytest.raises(ConfigError) as err:
        run(cfg)
    one_sentence(err, message)
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_a_crafted_cifar_batch_runs_no_code(bad, tmp_path):
    import os

    from qcsbench.data import cifar10

    marker = "/tmp/qcsbench-exploit-ran"
    if os.path.exists(marker):
        os.unlink(marker)
    with pytest.raises(ConfigError, match="system, which a CIFAR-10 batch never holds"):
        cifar10(bad / "cifar_crafted")
    assert not os.path.exists(marker)


# Every sentence above is checked in process; the command line once per stage that can refuse a value:
# a top-level value, a key no config has, a component's own check, a check across components.
@pytest.mark.e2e
@pytest.mark.parametrize("args,line", [
    (["seed=-1"], "error: seed=-1 is not allowed: use a non-negative integer."),
    (["+foo=1"], "error: foo is not a setting (no config group or top-level key has that name): use one of "),
    (["prior=ncsnv2_mnist"], "error: prior.checkpoint is not set: give the path of the checkpoint file, e.g. "
                             "prior.checkpoint=/path/to/model.pt."),
    (["m=12545"], "error: m=12545 is not allowed for operator=gaussian: use an integer from 1 to 12544 (N = 784 pixels)."),
])
def test_on_the_command_line_one_line_exit_code_2(tmp_path, args, line):
    """``line``: the whole line the user reads (its start, where it lists every top-level key)."""
    proc = run_cli(*args, "logger=none", f"hydra.run.dir={tmp_path}", f"results_dir={tmp_path / 'res'}")
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.strip().startswith(line)
    assert not (tmp_path / "config.yaml").exists()


@pytest.mark.e2e
def test_a_bad_job_in_a_sweep_prints_the_same_sentence(tmp_path):
    proc = run_cli("-m", "logger=none", "method.gamma=-1,nan", f"hydra.sweep.dir={tmp_path / 'sweep'}",
                   f"results_dir={tmp_path / 'res'}")
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "error: method.gamma=-1 is not allowed: use a finite number >= 0." in proc.stderr
    assert "error: method.gamma=nan is not allowed: use a finite number >= 0." in proc.stdout  # the second job's log
