"""Metric profiles: each paper's definitions of PSNR, SSIM and LPIPS, checked against the code the
paper ran (scikit-image, DiffPIR's 8-bit PSNR) and a second formula."""
import csv
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.ndimage import uniform_filter
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from conftest import TINY
from qcsbench import metrics, store
from qcsbench.validate import check_config
from test_test_images import image_folder_run, write_images


def images(n=3, channels=3, size=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, channels, size, size, generator=g)
    return x + 0.2 * torch.randn(x.shape, generator=g), x  # the recovery leaves [0, 1], as samplers' do


QCS_SGM = metrics.Profile("qcs_sgm", ssim="uniform7", clip=True)


@pytest.mark.fast
def test_the_default_profile_gives_todays_numbers_bitwise():
    x_hat, x = images()
    scores = metrics.Profile().evaluate(x_hat, x)
    today = dict(psnr=metrics.psnr, ssim=metrics.ssim, nmse=metrics.nmse, cosine=metrics.cosine,
                 psnr_scaled=metrics.psnr_scaled)
    assert set(scores) == set(metrics.NAMES)
    assert all(torch.equal(scores[k], today[k](x_hat, x).double()) for k in metrics.NAMES)


@pytest.mark.fast
def test_qcs_sgm_profile_is_what_the_qcs_sgm_code_computed():
    """runners/ncsn_runner.py of QCS-SGM: the sample clamped to [0, 1], then per image
    skimage's PSNR (data range from the float dtype: 1) and SSIM(data_range=1, multichannel=True)
    on H x W x C arrays (scikit-image before 0.19 computed in float64)."""
    x_hat, x = images()
    scores = QCS_SGM.evaluate(x_hat, x)
    for i in range(len(x)):
        org = np.moveaxis(x[i].double().numpy(), 0, 2)
        est = np.moveaxis(x_hat[i].clamp(0, 1).double().numpy(), 0, 2)
        assert abs(float(scores["ssim"][i]) - structural_similarity(org, est, data_range=1, channel_axis=-1)) < 1e-6
        assert abs(float(scores["psnr"][i]) - peak_signal_noise_ratio(org, est, data_range=1)) < 1e-6
    assert not torch.allclose(scores["ssim"], metrics.ssim(x_hat.clamp(0, 1), x))  # not the Gaussian window's


@pytest.mark.fast
def test_uniform_window_ssim_is_the_documented_formula():
    """docs/math.md §7: 7 x 7 uniform window, sample (co)variances, C1 = 0.01^2, C2 = 0.03^2, the mean
    over the windows that lie inside the image, averaged over the channels."""
    x_hat, x = images(n=2, channels=3, size=16, seed=3)
    x_hat = x_hat.clamp(0, 1)
    expected = []
    for a, b in zip(x_hat.double().numpy(), x.double().numpy()):
        per_channel = []
        for u, v in zip(a, b):
            mean = lambda z: uniform_filter(z, size=7)  # noqa: E731
            n = 49 / 48  # sample, not population, (co)variances
            mu_u, mu_v = mean(u), mean(v)
            var_u, var_v = n * (mean(u * u) - mu_u**2), n * (mean(v * v) - mu_v**2)
            cov = n * (mean(u * v) - mu_u * mu_v)
            c1, c2 = 0.01**2, 0.03**2
            s = ((2 * mu_u * mu_v + c1) * (2 * cov + c2)) / ((mu_u**2 + mu_v**2 + c1) * (var_u + var_v + c2))
            per_channel.append(s[3:-3, 3:-3].mean())
        expected.append(np.mean(per_channel))
    assert np.allclose(metrics.ssim_uniform(x_hat, x).numpy(), expected, rtol=0, atol=1e-10)


@pytest.mark.fast
def test_dps_diffpir_profile_scores_8_bit_images_as_diffpir_did():
    """DiffPIR's utils_image: tensor2uint (clamp, * 255, round) and calculate_psnr on the uint8 arrays."""
    x_hat, x = images(seed=1)
    profile = metrics.Profile("dps_diffpir", pixels="8bit", clip=True)
    scores = profile.evaluate(x_hat, x)
    for i in range(len(x)):
        est = np.uint8((x_hat[i].clamp(0, 1).numpy() * 255.0).round()).astype(np.float64)
        ref = np.uint8((x[i].numpy() * 255.0).round()).astype(np.float64)
        psnr = 20 * math.log10(255.0 / math.sqrt(np.mean((est - ref) ** 2)))
        assert abs(float(scores["psnr"][i]) - psnr) < 1e-6  # torchmetrics' 10 / ln 10 is a float32
    assert not torch.allclose(scores["psnr"], metrics.psnr(x_hat.clamp(0, 1), x))


@pytest.mark.fast
def test_lpips_missing_weights_leave_it_out_and_name_the_file(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    profile = metrics.Profile("dps_diffpir", pixels="8bit", clip=True, lpips="vgg")
    assert profile.names == metrics.NAMES and "lpips" not in profile.evaluate(*images())
    said = profile.describe()["lpips_missing"]
    assert metrics.LPIPS_WEIGHTS["vgg"] in said and said in caplog.text
    assert profile.describe()["lpips_backbone"] is None


def _torchvision_imports() -> bool:
    try:
        import torchvision  # noqa: F401
    except Exception:  # missing, or built for another torch
        return False
    return True


VGG_CONVS = [[0, 2], [5, 7], [10, 12, 14], [17, 19, 21], [24, 26, 28]]  # torchvision's vgg16.features, by block
VGG_WIDTHS = [64, 128, 256, 512, 512]


def vgg16_weights(seed=0) -> dict:
    """A state dict in torchvision's vgg16 format (every key and shape): random convolutions; the
    classifier, which LPIPS never runs, stored as one value broadcast (a small file)."""
    g = torch.Generator().manual_seed(seed)
    state, width = {}, 3
    for block, convs in enumerate(VGG_CONVS):
        for i in convs:
            out = VGG_WIDTHS[block]
            state[f"features.{i}.weight"] = torch.randn(out, width, 3, 3, generator=g) * math.sqrt(2 / (9 * width))
            state[f"features.{i}.bias"] = 0.01 * torch.randn(out, generator=g)
            width = out
    for i, (rows, cols) in {0: (4096, 25088), 3: (4096, 4096), 6: (1000, 4096)}.items():
        state[f"classifier.{i}.weight"] = torch.zeros(1, 1).expand(rows, cols)
        state[f"classifier.{i}.bias"] = torch.zeros(1).expand(rows)
    return state


def vgg_lpips_by_hand(x_hat, x, state):
    """Zhang et al.'s LPIPS from its definition: inputs to [-1, 1], their per-channel shift and scale,
    VGG16's relu1_2 ... relu5_3, unit-normalized channels, the squared difference weighted by the
    linear layers (torchmetrics ships Zhang et al.'s vgg.pth), averaged over positions, summed."""
    import os

    import torchmetrics

    lin = torch.load(os.path.join(os.path.dirname(torchmetrics.__file__), "functional/image/lpips_models/vgg.pth"),
                     map_location="cpu")
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

    def taps(v):
        v, out = (2 * v - 1 - shift) / scale, []
        for block, convs in enumerate(VGG_CONVS):
            v = F.max_pool2d(v, 2) if block else v
            for i in convs:
                v = F.relu(F.conv2d(v, state[f"features.{i}.weight"], state[f"features.{i}.bias"], padding=1))
            out.append(v)
        return out

    total = 0
    for k, (a, b) in enumerate(zip(taps(x_hat), taps(x))):
        a, b = (t / torch.sqrt(1e-8 + (t**2).sum(1, keepdim=True)) for t in (a, b))
        weight = next(w for name, w in lin.items() if name.startswith(f"lin{k}."))
        total = total + F.conv2d((a - b) ** 2, weight).mean((2, 3))
    return total.flatten().double()


@pytest.mark.in_process  # torchvision builds the whole VGG16 (seconds) before it reads the file
@pytest.mark.skipif(not _torchvision_imports(), reason="needs torchvision")
def test_vgg_lpips_reads_the_weights_file_and_follows_the_definition(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    state = vgg16_weights()
    torch.save(state, tmp_path / "checkpoints" / metrics.LPIPS_WEIGHTS["vgg"])
    x_hat, x = images(n=2, size=32, seed=2)
    profile = metrics.Profile("dps_diffpir", pixels="8bit", clip=True, lpips="vgg")
    assert profile.names == (*metrics.NAMES, "lpips") and profile.describe()["lpips_backbone"] == "vgg16-397923af.pth"
    x_hat[1] = float("nan")  # a diverged recovery: its LPIPS is NaN, the other image's is computed
    got = profile.evaluate(x_hat, x)["lpips"]
    expected = vgg_lpips_by_hand(metrics.eight_bit(x_hat[:1]).float(), metrics.eight_bit(x[:1]).float(), state)
    assert torch.allclose(got[:1], expected, rtol=1e-4, atol=1e-6) and bool(got[1].isnan())


@pytest.mark.in_process
def test_a_run_with_the_qcs_sgm_profile_records_it_and_keys_its_results_apart(make_cfg, tmp_path):
    root = tmp_path / "data"
    write_images(root / "train", [f"t{i}.png" for i in range(4)])
    write_images(root / "test", ["a.png", "b.png", "c.png"], seed=1)
    summary = image_folder_run(make_cfg, root, tmp_path / "run", "metrics=qcs_sgm")
    recorded = json.loads((tmp_path / "run" / "metrics.json").read_text())["metric_profile"]
    assert recorded["name"] == "qcs_sgm" and recorded["ssim"] == "uniform7" and recorded["packages"]["scikit-image"]
    saved = torch.load(tmp_path / "run" / "recon.pt")
    rows = list(csv.DictReader(open(tmp_path / "run" / "per_image.csv")))
    for i, row in enumerate(rows):
        org = np.moveaxis(saved["truth"][i].double().numpy(), 0, 2)
        est = np.moveaxis(saved["recon"][i].clamp(0, 1).double().numpy(), 0, 2)
        assert abs(float(row["ssim"]) - structural_similarity(org, est, data_range=1, channel_axis=-1)) < 1e-6
    assert summary["ssim_mean"] == pytest.approx(np.mean([float(r["ssim"]) for r in rows]))

    default = check_config(make_cfg(*TINY))
    assert "metrics" not in store.result_key(default)  # results stored before profiles keep their keys
    without = {k: v for k, v in default.items() if k != "metrics"}
    assert store.result_key(default) == store.result_key(without)
    assert store.result_key(check_config(make_cfg(*TINY, "metrics=qcs_sgm")))["metrics"]["ssim"] == "uniform7"
