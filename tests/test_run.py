"""The whole run, the way a user runs it: files on disk, numbers that mean something."""
import csv
import glob
import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY, run_cli
from qcsbench import metrics
from qcsbench.errors import ConfigError
from qcsbench.runner import run
from qcsbench.tracking import wandb_run_id

FILES = ["config.yaml", "per_image.csv", "metrics.json", "recon.pt", "grid.png"]


def mean_image_psnr(num_images):
    """What a method that ignores the measurements can reach at best (in MSE): the train-set mean."""
    from qcsbench.data import embedded_mnist

    mean = embedded_mnist("train").batch(range(4000)).mean(0, keepdim=True)
    truth = embedded_mnist("test").batch(range(num_images))
    return float(metrics.psnr(mean.expand_as(truth), truth).mean())


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, cache_dir):
    """One run of run.py with W&B in offline mode, shared by the tests that read its files."""
    out = tmp_path_factory.mktemp("run")
    args = [*TINY, "method.steps_per_level=3", "logger=wandb", f"hydra.run.dir={out}", f"results_dir={out / 'results'}"]
    proc = run_cli(*args, env={"WANDB_MODE": "offline", "WANDB_SILENT": "true"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.e2e
def test_run_writes_every_file_with_sane_values(cli_run):
    for name in FILES:
        assert (cli_run / name).is_file(), name
    summary = json.loads((cli_run / "metrics.json").read_text())
    for key in ["psnr_mean", "psnr_std", "ssim_mean", "ssim_std", "cosine_mean", "nfe", "seconds", "num_diverged"]:
        assert key in summary
    assert summary["num_diverged"] == 0 and summary["num_images"] == 4
    assert summary["nfe"] == 300  # 100 levels x 3 steps
    assert summary["psnr_mean"] > mean_image_psnr(4) + 2.0  # the measurements were used
    assert 0.2 < summary["ssim_mean"] <= 1 and 0.5 < summary["cosine_mean"] <= 1

    rows = list(csv.DictReader(open(cli_run / "per_image.csv")))
    assert [int(r["index"]) for r in rows] == [0, 1, 2, 3]
    assert all(r["status"] == "ok" for r in rows)
    assert sum(float(r["psnr"]) for r in rows) / 4 == pytest.approx(summary["psnr_mean"])

    saved = torch.load(cli_run / "recon.pt")
    assert saved["recon"].shape == saved["truth"].shape == (4, 1, 28, 28)
    assert torch.allclose(metrics.psnr(saved["recon"], saved["truth"]).double(),
                          torch.tensor([float(r["psnr"]) for r in rows], dtype=torch.float64), atol=1e-4)
    from PIL import Image

    grid = Image.open(cli_run / "grid.png")
    assert grid.width > 2.5 * grid.height  # three panels side by side
    assert "bits: 1" in (cli_run / "config.yaml").read_text()


@pytest.mark.e2e
def test_wandb_offline_run_recorded_metrics_table_and_grid(cli_run):
    runs = glob.glob(str(cli_run / "wandb" / "offline-run-*"))
    assert len(runs) == 1
    summary = json.loads((cli_run / "metrics.json").read_text())
    record = open(glob.glob(runs[0] + "/run-*.wandb")[0], "rb").read()
    assert b"psnr_mean" in record and b"+debug=tiny,method.steps_per_level=3" in record  # summary key, name from overrides
    assert b"method=qcs_sgm" in record and b"operator=gaussian" in record  # tags
    assert runs[0].endswith(wandb_run_id(cli_run, summary["result_id"]))  # the run id follows the run folder
    assert b"mnist-test" in record and b"described" in record  # readable names of the built components
    table = json.loads(open(glob.glob(runs[0] + "/files/media/table/per_image*.json")[0]).read())
    psnr_col = table["columns"].index("psnr")
    assert sum(row[psnr_col] for row in table["data"]) / 4 == pytest.approx(summary["psnr_mean"])
    assert glob.glob(runs[0] + "/files/media/images/grid*.png")


@pytest.mark.in_process
def test_results_do_not_depend_on_the_batch_size(make_cfg, tmp_path):
    runs = {}
    for b in (3, 1):
        cfg = make_cfg(*TINY, "num_images=3", f"batch_size={b}", "method.num_levels=20", "resume=false",
                       f"+run_dir={tmp_path / str(b)}")
        run(cfg)
        runs[b] = torch.load(tmp_path / str(b) / "recon.pt")["recon"]
    assert torch.allclose(runs[3], runs[1], atol=1e-4)


@pytest.mark.e2e
def test_more_bits_recover_better(make_cfg, tmp_path, cli_run):
    one = json.loads((cli_run / "metrics.json").read_text())  # the same tiny run at 1 bit
    for bits in (2, 3):
        more = run(make_cfg(*TINY, "method.steps_per_level=3", f"bits={bits}", f"+run_dir={tmp_path / f'b{bits}'}"))
        assert more["psnr_mean"] > one["psnr_mean"] + 1.0, bits


@pytest.mark.in_process
def test_a_diverging_run_says_so_and_writes_no_nan(make_cfg, tmp_path):
    summary = run(make_cfg(*TINY, "method.step_lr=50", "method.max_step_ratio=null", "method.num_levels=10",
                           f"+run_dir={tmp_path}"))
    assert summary["num_diverged"] == 4 and summary["psnr_mean"] is None
    text = (tmp_path / "metrics.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    rows = list(csv.DictReader(open(tmp_path / "per_image.csv")))
    assert {r["status"] for r in rows} == {"diverged"} and {r["psnr"] for r in rows} == {""}
    grid = np.asarray(Image.open(tmp_path / "grid.png").convert("RGB")).astype(int)
    assert ((grid[..., 0] > 200) & (grid[..., 1] < 60)).any()  # the diverged recoveries are framed in red


@pytest.mark.in_process
def test_the_documented_ill_conditioned_command_does_not_diverge(make_cfg, tmp_path):
    """python run.py method=qcs_sgm bits=2 m=400 operator=ill_conditioned operator.kappa=1000: the
    diagonal score over-states the curvature of an ill-conditioned A, and the reference step
    diverges there; the step cap keeps it finite."""
    args = [*TINY, "method=qcs_sgm", "bits=2", "m=400", "operator=ill_conditioned", "operator.kappa=1000"]
    capped = run(make_cfg(*args, f"+run_dir={tmp_path / 'capped'}"))
    assert capped["num_diverged"] == 0 and capped["psnr_mean"] > mean_image_psnr(4) + 2.0
    uncapped = run(make_cfg(*args, "method.max_step_ratio=null", f"+run_dir={tmp_path / 'reference'}"))
    assert uncapped["num_diverged"] == 4


BAD = [
    (["bits=0"], "bits=0 is not allowed: use an integer from 1 to 16"),
    (["bits=17"], "bits=17 is not allowed"),
    (["m=0"], "m=0 is not allowed for operator=gaussian"),
    (["operator=ill_conditioned", "m=785"], "m=785 is not allowed for operator=ill_conditioned: use an integer from 1 to 784"),
    (["num_images=1001"], "num_images=1001 is more than dataset mnist-test holds: use 1 to 1000"),
    (["device=tpu"], "device=tpu is not a device"),
    (["dataset=mnist_idx", "dataset.root=/nonexistent/mnist"], "dataset.root=/nonexistent/mnist is not an existing folder"),
    (["batch_size=0"], "batch_size=0 is not allowed"),
]


@pytest.mark.in_process
@pytest.mark.parametrize("overrides,message", BAD)
def test_bad_input_stops_before_any_compute(make_cfg, tmp_path, monkeypatch, overrides, message):
    empty_cache = tmp_path / "cache"
    cfg = make_cfg(*TINY, *overrides, f"cache_dir={empty_cache}", f"+run_dir={tmp_path / 'run'}")
    with pytest.raises(ConfigError, match=message):
        run(cfg)
    assert not empty_cache.exists()  # the prior was never fitted
    assert not (tmp_path / "run" / "metrics.json").exists()


@pytest.mark.e2e
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA, so device=cuda is valid")
def test_bad_input_on_the_command_line_is_one_sentence(tmp_path):
    proc = run_cli("device=cuda", "logger=none", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[-1] == ("error: device=cuda is not available on this machine (no CUDA): "
                         "use device=auto or device=cpu.")
    assert "Traceback" not in proc.stderr
