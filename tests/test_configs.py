"""Every config file composes; every option of the cheap groups (quantizer, operator, method)
builds through the Setup the runner uses, on the default MNIST experiment."""
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from conftest import CONFIGS
from qcsbench.setup import build
from qcsbench.validate import check_train_config

GROUPS = ["dataset", "prior", "operator", "quantizer", "method", "logger", "metrics"]
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONFIGS / g).glob("*.yaml"))]
# Added on top of the defaults with +group=option: presets, hardware, the debug run.
ADDED = [f"{g}={p.stem}" for g in ("experiment", "hardware", "debug") for p in sorted((CONFIGS / g).glob("*.yaml"))]


@pytest.mark.in_process
@pytest.mark.parametrize("group,option", OPTIONS)
def test_every_option_composes(make_cfg, group, option):
    cfg = make_cfg(f"{group}={option}")
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    assert cfg[group]["_target_"]


CHEAP = [(g, option) for g, option in OPTIONS if g in ("quantizer", "operator", "method")]


@pytest.mark.in_process
@pytest.mark.parametrize("option", [option for g, option in OPTIONS if g == "metrics"])
def test_every_metric_profile_builds_and_names_itself(make_cfg, option):
    profile = build(make_cfg(f"metrics={option}", "device=cpu")).metrics
    assert profile.describe()["name"] == option and {"psnr", "ssim"} <= set(profile.names)


@pytest.mark.in_process
@pytest.mark.parametrize("group,option", CHEAP)
def test_every_cheap_option_builds(make_cfg, group, option):
    cfg = make_cfg(f"{group}={option}", "device=cpu")
    described = build(cfg).describe()[group]  # what metrics.json reports, from the built object
    assert described["name"] == cfg[group].get("name", described["name"])
    assert group != "operator" or (described["m"] == cfg.m and described["name"] == option)


@pytest.mark.in_process
@pytest.mark.parametrize("choice", ADDED)
def test_every_added_config_composes(make_cfg, choice):
    cfg = make_cfg(f"+{choice}")
    OmegaConf.to_container(cfg, resolve=True)


@pytest.mark.in_process
def test_the_documented_override_line_composes_and_builds(make_cfg):
    cfg = make_cfg("method=qcs_sgm", "bits=2", "m=400", "operator=ill_conditioned", "operator.kappa=1000")
    assert cfg.quantizer.bits == 2 and cfg.operator.kappa == 1000
    op = instantiate(cfg.operator, shape=[1, 28, 28], m=cfg.m)
    assert op.m == 400 and op.name == "ill_conditioned"
    assert instantiate(cfg.quantizer).bits == 2
    assert instantiate(cfg.method).name == "qcs_sgm"


@pytest.mark.in_process
def test_defaults_are_the_qcs_sgm_mnist_setting(make_cfg):
    cfg = make_cfg()
    assert (cfg.bits, cfg.m, cfg.noise_std) == (1, 200, 0.05)
    assert cfg.operator._target_.endswith("gaussian") and cfg.dataset._target_.endswith("embedded_mnist")
    assert cfg.device == "auto" and cfg.logger.mode in ("offline", "online", "disabled")


@pytest.mark.in_process
@pytest.mark.parametrize("bits,m", [(1, 12288), (2, 6144), (3, 4096)])
def test_fixed_bit_budget_preset_sets_m_from_bits(make_cfg, bits, m):
    cfg = make_cfg("+experiment=qcs_sgm_celeba64_fixed_budget", f"bits={bits}")
    assert cfg.m == m and cfg.bits * cfg.m == 12288 and cfg.prior.name == "ncsnv2_celeba"


@pytest.mark.in_process
def test_paper_presets_pick_their_settings(make_cfg):
    ffhq = make_cfg("+experiment=onebit_ffhq256_table", "n_over_m=32")
    assert (ffhq.m, ffhq.noise_std, ffhq.prior.name) == (196608 // 32, 0.5, "adm_ffhq")
    assert make_cfg("+experiment=qcs_sgm_ffhq256_multibit", "bits=3").method.step_lr == 2e-5
    assert make_cfg("+experiment=qcs_sgm_cifar10").m == 2000
    mnist = make_cfg("+experiment=qcs_sgm_mnist_1bit")
    assert (mnist.m, mnist.noise_std, mnist.bits) == (200, 0.05, 1)


@pytest.mark.e2e
def test_importing_the_package_registers_no_resolver_and_the_cli_does():
    import subprocess
    import sys

    code = ("import qcsbench.runner; from omegaconf import OmegaConf; assert not OmegaConf.has_resolver('div'); "
            "import qcsbench.cli; assert OmegaConf.has_resolver('div') and OmegaConf.has_resolver('pid')")
    proc = subprocess.run([sys.executable, "-c", code], cwd=CONFIGS.parent, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.in_process
@pytest.mark.parametrize("name", sorted(p.stem for p in (CONFIGS / "learner").glob("*.yaml")))
def test_every_learner_passes_the_training_check(tmp_path, name):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("train", overrides=[f"learner={name}", f"out_dir={tmp_path}"])
    assert check_train_config(cfg)["learner"]["name"] == name
