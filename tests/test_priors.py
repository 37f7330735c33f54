"""Network priors: each family loads its real file format, gives the saved network's outputs,
has the official parameter names, and converts to the VE convention correctly."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from qcsbench.errors import ConfigError
from qcsbench.networks.adm import ADMUNet, timestep_embedding
from qcsbench.networks.ncsnv2 import NCSNv2
from qcsbench.priors.base import geometric_sigmas
from qcsbench.priors.vp import linear_alphas_cumprod
from qcsbench.setup import instantiate
from tests.prior_files import TINY_ADM, adm_file, ddpm_folder, ncsnpp_folder, ncsnv2_file

pytestmark = pytest.mark.in_process

torch.set_num_threads(2)


def load(make_cfg, *overrides):
    return instantiate(make_cfg(*overrides).prior).to("cpu", torch.float32)


# ------------------------------------------------------------------ NCSNv2

@pytest.mark.parametrize("use_ema", [True, False])
def test_ncsnv2_mnist_file_loads_with_the_saved_outputs(make_cfg, tmp_path, use_ema):
    raw, ema = ncsnv2_file(tmp_path / "checkpoint.pth")
    prior = load(make_cfg, "prior=ncsnv2_mnist", f"prior.checkpoint={tmp_path / 'checkpoint.pth'}", "prior.ngf=4",
                 f"prior.use_ema={use_ema}")
    reference = ema if use_ema else raw
    x = torch.rand(3, 1, 28, 28)
    for level in (0, 100, 231):
        sigma = float(prior.sigmas[level])
        expected = reference(x, torch.full((3,), level))
        torch.testing.assert_close(prior.score(x, sigma), expected, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(prior.denoise(x, sigma), x + sigma**2 * expected, rtol=1e-5, atol=1e-6)
    assert prior.shape == (1, 28, 28)
    assert float(prior.sigmas[0]) == pytest.approx(50.0) and float(prior.sigmas[-1]) == pytest.approx(0.01)


def test_ncsnv2_deepest_file_loads(make_cfg, tmp_path):
    _, ema = ncsnv2_file(tmp_path / "c.pth", channels=3, image_size=32, ngf=4, deepest=True, levels=(348.0, 0.01, 2311))
    prior = load(make_cfg, "prior=ncsnv2_ffhq", f"prior.checkpoint={tmp_path / 'c.pth'}", "prior.ngf=4",
                 "prior.image_size=32")
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(prior.score(x, float(prior.sigmas[5])), ema(x, torch.full((2,), 5)), rtol=1e-5, atol=1e-6)


def test_ncsnv2_off_ladder_sigma_rescales_the_nearest_level(make_cfg, tmp_path):
    _, ema = ncsnv2_file(tmp_path / "c.pth")
    prior = load(make_cfg, "prior=ncsnv2_mnist", f"prior.checkpoint={tmp_path / 'c.pth'}", "prior.ngf=4")
    x = torch.rand(2, 1, 28, 28)
    s = float(prior.sigmas[40]) * 1.01  # nearest in log space is level 40
    expected = ema(x, torch.full((2,), 40)) * float(prior.sigmas[40]) / s
    torch.testing.assert_close(prior.score(x, s), expected, rtol=1e-5, atol=1e-6)


def official_ncsnv2_keys(channels, ngf, deepest, levels):
    """{key: shape} written from the official models/ncsnv2.py + layers.py structure."""
    n, out = ngf, {"sigmas": (levels,)}

    def conv(name, cout, cin, k=3, bias=True):
        out[f"{name}.weight"] = (cout, cin, k, k)
        if bias:
            out[f"{name}.bias"] = (cout,)

    def inorm(name, c):
        for p in ("alpha", "gamma", "beta"):
            out[f"{name}.{p}"] = (c,)

    def resblock(name, cin, cout, down, dilated):
        inorm(f"{name}.normalize1", cin)
        if down:
            conv(f"{name}.conv1", cin, cin)
            inorm(f"{name}.normalize2", cin)
            if dilated:
                conv(f"{name}.conv2", cout, cin)
                conv(f"{name}.shortcut", cout, cin)
            else:
                conv(f"{name}.conv2.conv", cout, cin)
                conv(f"{name}.shortcut.conv", cout, cin, k=1)
        else:
            conv(f"{name}.conv1", cout, cin)
            inorm(f"{name}.normalize2", cout)
            conv(f"{name}.conv2", cout, cout)

    def refine(name, in_planes, f, start=False, end=False):
        for i, c in enumerate(in_planes):
            for a in (1, 2):
                for b in (1, 2):
                    conv(f"{name}.adapt_convs.{i}.{a}_{b}_conv", c, c, bias=False)
        for a in range(1, (3 if end else 1) + 1):
            for b in (1, 2):
                conv(f"{name}.output_convs.{a}_{b}_conv", f, f, bias=False)
        if not start:
            for i, c in enumerate(in_planes):
                conv(f"{name}.msf.convs.{i}", f, c)
        for i in range(2):
            conv(f"{name}.crp.convs.{i}", f, f, bias=False)

    conv("begin_conv", n, channels)
    inorm("normalizer", n)
    conv("end_conv", channels, n)
    if not deepest:
        stages = [("res1", n, n, False, False), ("res2", n, 2 * n, True, False), ("res3", 2 * n, 2 * n, True, True),
                  ("res4", 2 * n, 2 * n, True, True)]
        refines = [("refine1", [2 * n], 2 * n, True, False), ("refine2", [2 * n] * 2, 2 * n, False, False),
                   ("refine3", [2 * n] * 2, n, False, False), ("refine4", [n, n], n, False, True)]
    else:
        stages = [("res1", n, n, False, False), ("res2", n, 2 * n, True, False), ("res3", 2 * n, 2 * n, True, False),
                  ("res31", 2 * n, 2 * n, True, False), ("res4", 2 * n, 4 * n, True, True),
                  ("res5", 4 * n, 4 * n, True, True)]
        refines = [("refine1", [4 * n], 4 * n, True, False), ("refine2", [4 * n] * 2, 2 * n, False, False),
                   ("refine31", [2 * n] * 2, 2 * n, False, False), ("refine3", [2 * n] * 2, 2 * n, False, False),
                   ("refine4", [2 * n] * 2, n, False, False), ("refine5", [n, n], n, False, True)]
    for name, cin, cout, down, dilated in stages:
        resblock(f"{name}.0", cin, cout, down, dilated)
        resblock(f"{name}.1", cout, cout, False, dilated)
    for name, planes, f, start, end in refines:
        refine(name, planes, f, start, end)
    return out


@pytest.mark.parametrize("config", [
    dict(channels=3, image_size=32, deepest=False, levels=232, count=154),   # CIFAR-10
    dict(channels=1, image_size=28, deepest=False, levels=232, count=154),   # MNIST (QCS-SGM)
    dict(channels=3, image_size=256, deepest=True, levels=2311, count=230),  # FFHQ 256
])
def test_ncsnv2_full_size_keys_are_the_official_ones(config):
    with torch.device("meta"):
        net = NCSNv2(torch.ones(config["levels"]), config["channels"], 128, config["image_size"], config["deepest"])
    ours = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    official = official_ncsnv2_keys(config["channels"], 128, config["deepest"], config["levels"])
    assert len(ours) == config["count"]
    assert sorted(ours) == sorted(official)
    assert ours == official
    # a literal prefix of the official file's keys (with DataParallel's prefix added when saved)
    for key in ("sigmas", "begin_conv.weight", "normalizer.alpha", "res1.0.normalize1.alpha", "res1.0.conv1.weight",
                "res2.0.conv2.conv.weight", "res2.0.shortcut.conv.weight",
                "res5.0.conv2.weight" if config["deepest"] else "res3.0.conv2.weight",
                "refine1.adapt_convs.0.1_1_conv.weight", "refine2.msf.convs.1.bias", "refine1.crp.convs.1.weight"):
        assert key in ours


# ------------------------------------------------------------------ ADM

def official_adm_keys(in_ch, mc, num_res_blocks, mult, attn_ds, learn_sigma=True):
    """{key: shape} following guided-diffusion's UNetModel.__init__ (scale-shift norm, resblock up/down)."""
    out, emb = {}, 4 * mc

    def lin(name, o, i):
        out[f"{name}.weight"], out[f"{name}.bias"] = (o, i), (o,)

    def gn(name, c):
        out[f"{name}.weight"], out[f"{name}.bias"] = (c,), (c,)

    def conv(name, o, i, k=3, d=2):
        out[f"{name}.weight"], out[f"{name}.bias"] = (o, i) + (k,) * d, (o,)

    def res(name, cin, cout):
        gn(f"{name}.in_layers.0", cin)
        conv(f"{name}.in_layers.2", cout, cin)
        lin(f"{name}.emb_layers.1", 2 * cout, emb)
        gn(f"{name}.out_layers.0", cout)
        conv(f"{name}.out_layers.3", cout, cout)
        if cin != cout:
            conv(f"{name}.skip_connection", cout, cin, k=1)

    def attn(name, c):
        gn(f"{name}.norm", c)
        conv(f"{name}.qkv", 3 * c, c, k=1, d=1)
        conv(f"{name}.proj_out", c, c, k=1, d=1)

    lin("time_embed.0", emb, mc)
    lin("time_embed.2", emb, emb)
    ch = mult[0] * mc
    conv("input_blocks.0.0", ch, in_ch)
    chans, ds, b = [ch], 1, 1
    for level, m in enumerate(mult):
        for _ in range(num_res_blocks):
            res(f"input_blocks.{b}.0", ch, m * mc)
            ch = m * mc
            if ds in attn_ds:
                attn(f"input_blocks.{b}.1", ch)
            chans.append(ch)
            b += 1
        if level != len(mult) - 1:
            res(f"input_blocks.{b}.0", ch, ch)
            chans.append(ch)
            ds *= 2
            b += 1
    res("middle_block.0", ch, ch)
    attn("middle_block.1", ch)
    res("middle_block.2", ch, ch)
    b = 0
    for level, m in list(enumerate(mult))[::-1]:
        for i in range(num_res_blocks + 1):
            res(f"output_blocks.{b}.0", ch + chans.pop(), m * mc)
            ch, j = m * mc, 1
            if ds in attn_ds:
                attn(f"output_blocks.{b}.1", ch)
                j = 2
            if level and i == num_res_blocks:
                res(f"output_blocks.{b}.{j}", ch, ch)
                ds //= 2
            b += 1
    gn("out.0", ch)
    conv("out.2", 2 * in_ch if learn_sigma else in_ch, mult[0] * mc)
    return out


@pytest.mark.parametrize("flags,attn_ds,count,params", [
    # DPS's ffhq_10m.pt (configs/model_config.yaml): 93.6 M parameters
    (dict(num_channels=128, num_res_blocks=1, attention_resolutions="16"), {16}, 362, 93_563_910),
    # 256x256_diffusion_uncond.pt: 554 M in the ADM paper for the class-conditional twin, whose
    # label embedding adds 1000 x 1024 = 1.02 M
    (dict(num_channels=256, num_res_blocks=2, attention_resolutions="32,16,8"), {8, 16, 32}, 566, 552_814_086),
])
def test_adm_full_size_keys_are_the_official_ones(flags, attn_ds, count, params):
    with torch.device("meta"):
        net = ADMUNet(image_size=256, **flags)
    ours = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    official = official_adm_keys(3, flags["num_channels"], flags["num_res_blocks"], (1, 1, 2, 2, 4, 4), attn_ds)
    assert len(ours) == count
    assert sorted(ours) == sorted(official)
    assert ours == official
    assert sum(p.numel() for p in net.parameters()) == params
    for key in ("time_embed.0.weight", "input_blocks.0.0.weight", "input_blocks.1.0.in_layers.0.weight",
                "input_blocks.1.0.emb_layers.1.weight", "middle_block.1.qkv.weight", "middle_block.1.proj_out.bias",
                "output_blocks.0.0.skip_connection.weight", "out.2.weight"):
        assert key in ours


def test_adm_file_loads_and_uses_the_epsilon_half(make_cfg, tmp_path):
    net = adm_file(tmp_path / "adm.pt")
    overrides = [f"prior.{k}={v}" if not isinstance(v, str) else f"prior.{k}='{v}'" for k, v in TINY_ADM.items()]
    prior = load(make_cfg, "prior=adm_ffhq", f"prior.checkpoint={tmp_path / 'adm.pt'}", *overrides)
    abar = linear_alphas_cumprod(1000)
    x = torch.rand(2, 1, 28, 28)
    for t in (0, 250, 999):
        s01 = float(((1 - abar[t]) / abar[t]).sqrt()) / 2
        x_vp = (2 * x - 1) * float(abar[t].sqrt())
        eps = net(x_vp, torch.full((2,), float(t)))[:, :1]
        torch.testing.assert_close(-s01 * prior.score(x, s01), eps, rtol=1e-4, atol=2e-5)
    assert prior.shape == (1, 28, 28) and len(prior.sigmas) == 1000


def test_adm_timestep_embedding_is_cos_then_sin():
    t = torch.tensor([0.0, 3.0])
    emb = timestep_embedding(t, 8)
    freqs = np.exp(-np.log(10000) * np.arange(4) / 4)
    np.testing.assert_allclose(emb[1].numpy(), np.concatenate([np.cos(3 * freqs), np.sin(3 * freqs)]), rtol=1e-6)


# ------------------------------------------------------------------ diffusers

def test_ddpm_folder_loads_with_the_saved_outputs_and_sigmas_match_the_scheduler(make_cfg, tmp_path):
    from diffusers import DDPMScheduler

    unet = ddpm_folder(tmp_path / "ddpm")
    prior = load(make_cfg, "prior=ddpm", f"prior.path={tmp_path / 'ddpm'}")
    abar = DDPMScheduler.from_pretrained(tmp_path / "ddpm").alphas_cumprod.double()
    x = torch.rand(2, 1, 28, 28)
    for t in (0, 10, 300, 999):
        s = float(((1 - abar[t]) / abar[t]).sqrt())  # [-1, 1] scale
        assert float(prior.train_sigmas[t]) == pytest.approx(s, rel=1e-10)
        assert float(prior.timestep(torch.tensor([s], dtype=torch.float64))) == pytest.approx(t, abs=1e-6)
        assert float(prior.sigmas[999 - t]) == pytest.approx(s / 2, rel=1e-10)  # [0, 1] scale halves sigma
        with torch.no_grad():
            eps = unet((2 * x - 1) * float(abar[t].sqrt()), torch.full((2,), float(t))).sample
        torch.testing.assert_close(-(s / 2) * prior.score(x, s / 2), eps, rtol=1e-4, atol=2e-5)


class OracleEpsilon(torch.nn.Module):
    """The exact epsilon of a VP model whose data is the single image x0 (in [-1, 1]):
    eps(x_t, t) = (x_t - sqrt(abar_t) x0)/sqrt(1 - abar_t) at integer t."""

    def __init__(self, x0c, abar):
        super().__init__()
        self.x0c, self.abar = x0c, abar
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x_t, t):
        a = self.abar[t.round().long()].to(x_t.dtype).view(-1, 1, 1, 1)
        return type("Out", (), {"sample": (x_t - a.sqrt() * self.x0c) / (1 - a).sqrt()})()


def test_ddpm_to_ve_conversion_recovers_the_clean_image(tmp_path):
    from qcsbench.data import embedded_mnist
    from qcsbench.priors.diffusers_models import DiffusersDDPMPrior

    abar = linear_alphas_cumprod(1000)
    x0 = embedded_mnist("test").batch([0, 1])
    prior = DiffusersDDPMPrior(OracleEpsilon(2 * x0 - 1, abar), (1, 28, 28), abar).to("cpu", torch.float64)
    g = torch.Generator().manual_seed(0)
    for t in (5, 100, 400, 800):
        s01 = float(prior.train_sigmas[t]) / 2
        noisy = x0.double() + s01 * torch.randn(x0.shape, generator=g, dtype=torch.float64)
        d = prior.denoise(noisy, s01)
        torch.testing.assert_close(d, x0.double(), rtol=0, atol=1e-6 * max(1.0, s01))
        assert float((d - x0).pow(2).mean()) < float((noisy - x0).pow(2).mean())


def test_ncsnpp_folder_loads_with_the_saved_outputs(make_cfg, tmp_path):
    unet = ncsnpp_folder(tmp_path / "ve")
    prior = load(make_cfg, "prior=ncsnpp", f"prior.path={tmp_path / 've'}")
    np.testing.assert_allclose(prior.sigmas.numpy(), geometric_sigmas(50.0, 0.01, 100).numpy(), rtol=1e-12)
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        expected = unet(x, torch.full((2,), 0.7)).sample
    torch.testing.assert_close(prior.score(x, 0.7), expected, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ errors

def test_missing_checkpoint_names_the_key(make_cfg, tmp_path):
    with pytest.raises(ConfigError, match=r"prior\.checkpoint=.*nope\.pth is not an existing file"):
        load(make_cfg, "prior=ncsnv2_cifar10", f"prior.checkpoint={tmp_path / 'nope.pth'}")
    with pytest.raises(ConfigError, match=r"prior\.checkpoint is not set"):
        load(make_cfg, "prior=adm_ffhq")
    with pytest.raises(ConfigError, match=r"prior\.path=.* is not an existing folder"):
        load(make_cfg, "prior=ddpm", f"prior.path={tmp_path / 'nope'}")


def test_unreadable_checkpoint_names_the_key(make_cfg, tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"this is not a checkpoint")
    with pytest.raises(ConfigError, match=r"prior\.checkpoint=.*junk\.pt is not a PyTorch checkpoint"):
        load(make_cfg, "prior=ncsnv2_mnist", f"prior.checkpoint={tmp_path / 'junk.pt'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"prior\.path=.* holds no config\.json"):
        load(make_cfg, "prior=ncsnpp", f"prior.path={tmp_path / 'empty'}")


def test_wrong_architecture_lists_the_keys(make_cfg, tmp_path):
    ncsnv2_file(tmp_path / "ncsn.pth")
    with pytest.raises(ConfigError) as err:
        load(make_cfg, "prior=adm_ffhq", f"prior.checkpoint={tmp_path / 'ncsn.pth'}")
    assert "could not" not in str(err.value) and "prior.checkpoint" in str(err.value)
    adm_file(tmp_path / "adm.pt")
    with pytest.raises(ConfigError, match=r"missing keys .*begin_conv.*unexpected keys .*input_blocks"):
        load(make_cfg, "prior=ncsnv2_mnist", f"prior.checkpoint={tmp_path / 'adm.pt'}", "prior.ngf=4")
    with pytest.raises(ConfigError, match=r"ngf=8.*tensors have other shapes"):  # same keys, other width
        load(make_cfg, "prior=ncsnv2_mnist", f"prior.checkpoint={tmp_path / 'ncsn.pth'}", "prior.ngf=8")
    with pytest.raises(ConfigError, match=r"trained on the ladder 50 -> 0\.01 in 232 levels"):
        load(make_cfg, "prior=ncsnv2_mnist", f"prior.checkpoint={tmp_path / 'ncsn.pth'}", "prior.ngf=4",
             "prior.sigma_max=90")


def test_unsupported_adm_schedule_is_refused(make_cfg, tmp_path):
    adm_file(tmp_path / "adm.pt")
    with pytest.raises(ConfigError, match=r"prior\.noise_schedule=cosine is not allowed: use linear"):
        load(make_cfg, "prior=adm_ffhq", f"prior.checkpoint={tmp_path / 'adm.pt'}", "prior.noise_schedule=cosine")


def test_speed_knobs_are_checked(make_cfg, tmp_path):
    ncsnv2_file(tmp_path / "c.pth")
    with pytest.raises(ConfigError, match=r"prior\.autocast=fp8 is not allowed"):
        load(make_cfg, "prior=ncsnv2_mnist", f"prior.checkpoint={tmp_path / 'c.pth'}", "prior.ngf=4",
             "prior.autocast=fp8")
    cfg = make_cfg("+hardware=gpu", "prior=ncsnv2_mnist")
    assert (cfg.prior.autocast, cfg.prior.compile, cfg.device) == ("bf16", True, "cuda")
    assert make_cfg("prior=ncsnv2_mnist").prior.autocast == "none"


def test_bf16_autocast_stays_close_on_cpu(make_cfg, tmp_path):
    _, ema = ncsnv2_file(tmp_path / "c.pth")
    prior = load(make_cfg, "prior=ncsnv2_mnist", f"prior.checkpoint={tmp_path / 'c.pth'}", "prior.ngf=4",
                 "prior.autocast=bf16")
    x = torch.rand(2, 1, 28, 28)
    out = prior.score(x, float(prior.sigmas[3]))
    assert out.dtype == torch.float32
    with torch.no_grad():
        ref = ema(x, torch.full((2,), 3))
    assert float((out - ref).norm() / ref.norm()) < 0.05
