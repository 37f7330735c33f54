"""A component declares its settings once, beside its constructor (qcsbench/settings.py): the
walker checks a config node against the declaration before anything is built, and calling the
constructor checks its arguments against the same declaration, with the same sentence.

The throwaway method below is added the way a user adds one: a module of their own (on
sys.path) and a YAML in a config folder of their own (on Hydra's search path), nothing in
qcsbench edited."""
import math

import pytest

import qcsbench.runner
from qcsbench.channels import UniformQuantizer
from qcsbench.errors import ConfigError
from qcsbench.methods.annealed_langevin import AnnealedLangevin
from qcsbench.methods.dps import DPS
from qcsbench.operators import gaussian
from qcsbench.runner import run
from qcsbench.validate import check_config

MODULE = '''
from qcsbench.methods.base import Method
from qcsbench.problem import Recovery
from qcsbench.settings import boolean, number, settings


@settings("method", scale=number(0, 1, lo_open=True), centred=boolean(), progress=boolean())
class BackProjection(Method):
    """A^T y, normalised to unit pixel rms and scaled; centred: around 1/2. Needs no prior."""

    needs_prior = False

    def __init__(self, name="back_projection", scale=0.3, centred=True, progress=True):
        self.name, self.scale, self.centred, self.progress = name, scale, centred, progress

    def _recover(self, problem, prior, rng):
        v = problem.operator.adjoint(problem.channel.dequantize(problem.measurement))
        flat = v.reshape(v.shape[0], -1)
        v = v / flat.norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1) * flat.shape[1] ** 0.5
        x = (0.5 if self.centred else 0.0) + self.scale * v
        return Recovery(x.clamp(0, 1), 0)
'''
YAML = """_target_: throwaway_method.BackProjection
name: back_projection
scale: 0.3
centred: true
progress: false
"""


@pytest.fixture
def user_method(tmp_path, monkeypatch):
    """The overrides that pick the user's method: its module and YAML live in tmp_path only."""
    (tmp_path / "throwaway_method.py").write_text(MODULE)
    (tmp_path / "configs" / "method").mkdir(parents=True)
    (tmp_path / "configs" / "method" / "back_projection.yaml").write_text(YAML)
    monkeypatch.syspath_prepend(str(tmp_path))
    return [f"hydra.searchpath=[file://{tmp_path / 'configs'}]", "method=back_projection", "logger=none",
            f"+run_dir={tmp_path / 'run'}"]


@pytest.mark.parametrize("override,sentence", [
    ("method.centred=no", "method.centred=no is not allowed: use true or false."),
    ("method.scale=2", "method.scale=2 is not allowed: use a finite number > 0 and <= 1."),
    ("method.scale=0", "method.scale=0 is not allowed: use a finite number > 0 and <= 1."),
    ("+method.scael=0.5", "method.scael is not a setting of method=back_projection: use one of centred, name, progress, "
                          "scale."),
])
def test_a_user_method_s_declared_settings_stop_a_bad_value_before_anything_is_built(make_cfg, user_method, monkeypatch,
                                                                                   override, sentence):
    def build(cfg):
        raise AssertionError("the experiment was built before the bad value was caught")
    monkeypatch.setattr(qcsbench.runner, "build", build)
    with pytest.raises(ConfigError) as err:
        run(make_cfg(*user_method, override))
    assert str(err.value) == sentence


def test_a_user_method_with_good_settings_runs_a_tiny_problem(make_cfg, user_method, tmp_path):
    metrics = run(make_cfg(*user_method, "num_images=2", "batch_size=2", "method.scale=0.25"))
    assert metrics["num_images"] == 2 and math.isfinite(metrics["psnr_mean"])
    assert (tmp_path / "run" / "per_image.csv").is_file()


def test_the_user_method_s_constructor_checks_its_arguments_with_the_same_sentence(user_method):
    from throwaway_method import BackProjection

    with pytest.raises(ConfigError, match=r"^method\.centred=no is not allowed: use true or false\.$"):
        BackProjection(centred="no")
    assert BackProjection(scale=0.5).scale == 0.5


@pytest.mark.parametrize("build,overrides", [
    (lambda: UniformQuantizer(2, noise_std=0.1, dither="no"), ["quantizer.dither=no"]),
    (lambda: AnnealedLangevin(report_previous="no"), ["method.report_previous=no"]),
    (lambda: AnnealedLangevin(likelihood="ep", ep_damping=1), ["method=qcs_sgm_plus", "method.ep_damping=1"]),
    (lambda: DPS(zeta=-1), ["method=dps", "method.zeta=-1"]),
    (lambda: gaussian((1, 28, 28), 200, seed=-1), ["operator.seed=-1"]),
])
def test_python_users_meet_the_sentence_the_config_gets(make_cfg, build, overrides):
    with pytest.raises(ConfigError) as from_python:
        build()
    with pytest.raises(ConfigError) as from_config:
        check_config(make_cfg("logger=none", *overrides))
    assert str(from_python.value) == str(from_config.value)


def test_a_list_rule_takes_the_list_hydra_hands_a_constructor():
    """instantiate passes a config's list as OmegaConf's ListConfig: the constructor-side check
    must read it as the list it is (logger.tags=[] once stopped every W&B run)."""
    from omegaconf import OmegaConf

    from qcsbench.settings import text_list
    rule = text_list()
    assert rule.ok(OmegaConf.create({"tags": []}).tags) and rule.ok(OmegaConf.create({"tags": ["a"]}).tags)
    assert not rule.ok("a,b") and not rule.ok(OmegaConf.create({"tags": [1]}).tags)
