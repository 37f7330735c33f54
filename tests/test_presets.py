"""Every experiment preset runs end to end, shrunk: its data, prior family, operator, channel
and method as the preset sets them, on one or two images and a few noise levels. Presets that
need a checkpoint and a dataset get tiny ones in the real formats (random weights, a few image
files), with the architecture width cut (ngf, num_channels) so the networks run on a CPU."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY
from qcsbench.runner import run
from tests.prior_files import adm_file, ncsnv2_file

pytestmark = pytest.mark.in_process

# A short ladder below sigma = 1 keeps random-weight networks finite.
FEW_LEVELS = ["method.num_levels=3", "method.sigma_max=1.0", "method.progress=false", "logger=none"]
LANGEVIN = [*FEW_LEVELS, "method.steps_per_level=1"]


def cifar10_folder(root):
    rng = np.random.default_rng(0)
    root.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(root / name, "wb") as f:
            pickle.dump({b"data": rng.integers(0, 256, size=(2, 3072), dtype=np.uint8), b"labels": [0, 1]}, f)
    return root


def image_folder(root, height, width, count=2, names=()):
    """A folder of random images named 00000.png ... (the first of FFHQ's, as the FFHQ presets' manifest
    lists them), or ``names`` (CelebA's test images for the CelebA presets' manifest)."""
    rng = np.random.default_rng(0)
    root.mkdir()
    for name in names or [f"{i:05d}.png" for i in range(count)]:
        Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)).save(root / name)
    return root


def run_preset(make_cfg, tmp_path, *overrides):
    out = tmp_path / "run"
    cfg = make_cfg(*overrides, f"+run_dir={out}")
    summary = run(cfg)
    assert summary["num_diverged"] == 0 and summary["psnr_mean"] is not None, summary
    recon = torch.load(out / "recon.pt")["recon"]
    assert torch.isfinite(recon).all() and (out / "metrics.json").is_file()
    return cfg, summary, recon


@pytest.mark.parametrize("preset", ["qcs_sgm_mnist_1bit", "qcs_sgm_plus_mnist_ill_conditioned_1bit",
                                    "qcs_sgm_plus_mnist_ill_conditioned_2bit", "qcs_sgm_plus_mnist_correlated_1bit",
                                    "qcs_sgm_plus_mnist_correlated_2bit"])
def test_mnist_presets_run(make_cfg, tmp_path, preset):
    cfg, summary, recon = run_preset(make_cfg, tmp_path, f"+experiment={preset}", *TINY, "num_images=2",
                                     "batch_size=2", "method.num_levels=10", "method.steps_per_level=1")
    assert summary["nfe"] == 10 and recon.shape == (2, 1, 28, 28)
    assert (summary["m"], summary["bits"]) == (cfg.m, cfg.bits)


def test_reference_preset_runs_on_the_default_experiment(make_cfg, tmp_path):
    cfg, summary, _ = run_preset(make_cfg, tmp_path, "+experiment=qcs_sgm_reference", *TINY)
    assert cfg.quantizer.range == "batch" and cfg.quantizer.reference_clamps and cfg.method.report_previous
    assert summary["num_images"] == 4


def test_reference_preset_sets_only_what_applies(make_cfg, tmp_path):
    """Without quantization there is no quantizer range or clamp to set: quantizer=none wins over
    the preset's reference quantizer, and the rest of the preset still applies."""
    cfg, summary, _ = run_preset(make_cfg, tmp_path, "+experiment=qcs_sgm_reference", "quantizer=none",
                                 "method=qcs_sgm_plus", *TINY)
    assert set(cfg.quantizer) == {"_target_", "noise_std"} and cfg.method.report_previous
    assert summary["ep_sweeps_max"] == 0  # EP's closed form for unquantized data


def test_cifar10_preset_runs(make_cfg, tmp_path):
    ncsnv2_file(tmp_path / "c.pth", channels=3, image_size=32)
    cfg, summary, recon = run_preset(make_cfg, tmp_path, "+experiment=qcs_sgm_cifar10",
                                     f"dataset.root={cifar10_folder(tmp_path / 'cifar')}", "prior.ngf=4",
                                     f"prior.checkpoint={tmp_path / 'c.pth'}", "num_images=2", *LANGEVIN)
    assert (summary["m"], summary["noise_std"]) == (2000, 0.001) and recon.shape == (2, 3, 32, 32)


@pytest.mark.parametrize("preset,bits,m", [("qcs_sgm_celeba64", 1, 4000), ("qcs_sgm_celeba64_fixed_budget", 3, 4096)])
def test_celeba_presets_run(make_cfg, tmp_path, preset, bits, m):
    ncsnv2_file(tmp_path / "c.pth", channels=3, image_size=64, levels=(90.0, 0.01, 500))
    _, summary, recon = run_preset(make_cfg, tmp_path, f"+experiment={preset}", f"bits={bits}",
                                   f"dataset.root={image_folder(tmp_path / 'celeba', 218, 178, names=['182638.jpg'])}", "prior.ngf=4",
                                   f"prior.checkpoint={tmp_path / 'c.pth'}", "num_images=1", *LANGEVIN)
    assert (summary["m"], summary["bits"]) == (m, bits) and recon.shape == (1, 3, 64, 64)


@pytest.mark.parametrize("preset,bits", [("qcs_sgm_ffhq256", 1), ("qcs_sgm_ffhq256_multibit", 2)])
def test_ffhq_qcs_sgm_presets_run(make_cfg, tmp_path, preset, bits):
    ncsnv2_file(tmp_path / "c.pth", channels=3, image_size=256, deepest=True, levels=(348.0, 0.01, 2311))
    cfg, summary, recon = run_preset(make_cfg, tmp_path, f"+experiment={preset}",
                                     f"dataset.root={image_folder(tmp_path / 'ffhq', 256, 256, count=1)}",
                                     "prior.ngf=4", f"prior.checkpoint={tmp_path / 'c.pth'}", "num_images=1",
                                     *LANGEVIN)
    assert (summary["m"], summary["bits"]) == (24576, bits) and cfg.operator._target_.endswith("dct")
    assert recon.shape == (1, 3, 256, 256)


# each method of the table in a few network calls: 3 levels (DAPS with one ODE step each)
TABLE_METHODS = [(["method=diff_onebit"], 3), (["method=sim_dmis", "method.inversion_steps=2"], 5),
                 (["method=red_diff"], 3), (["method=daps", "method.ode_steps=1", "method.langevin_steps=2"], 3),
                 # pnp_onebit's one sweep at coupling 1 calls the network at rho = 1 and the two ladder levels below
                 (["method=pnp_onebit", "method.iterations=1", "method.langevin_steps=1", "method.rho_max=1.0"], 3)]


@pytest.mark.parametrize("method,nfe", TABLE_METHODS, ids=lambda v: v[0] if isinstance(v, list) else str(v))
def test_onebit_ffhq_table_preset_runs(make_cfg, tmp_path, method, nfe):
    # the ADM FFHQ layout at a quarter of its width; n/m = 4096 keeps the dense A at 48 rows
    narrow = dict(image_size=256, in_channels=3, num_channels=32, num_res_blocks=1, channel_mult="",
                  attention_resolutions="16", num_heads=4, num_head_channels=32, learn_sigma=True)
    adm_file(tmp_path / "adm.pt", **narrow)
    cfg, summary, recon = run_preset(make_cfg, tmp_path, "+experiment=onebit_ffhq256_table", *method,
                                     "n_over_m=4096", f"dataset.root={image_folder(tmp_path / 'ffhq', 256, 256, 1)}",
                                     f"prior.checkpoint={tmp_path / 'adm.pt'}", "prior.num_channels=32",
                                     "prior.num_head_channels=32", "num_images=1", *FEW_LEVELS)
    assert (summary["m"], summary["noise_std"], summary["nfe"]) == (48, 0.5, nfe) and cfg.prior.name == "adm_ffhq"
    assert recon.shape == (1, 3, 256, 256)
