"""The package runs outside the checkout: a fresh venv, ``pip install .``, then ``qcsbench``
from another folder, with the configs and the shipped weights coming from the package."""
import os
import subprocess
import sys

import pytest

from conftest import ROOT, TINY

pytestmark = pytest.mark.e2e


def test_installed_qcsbench_command_runs_from_another_folder(tmp_path, cache_dir):
    venv = tmp_path / "venv"
    # the venv sees this machine's packages (torch, hydra, ...), so the install is offline and
    # needs no dependencies; its pip and setuptools are the machine's too (no bundled old ones)
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                              "--no-index", str(ROOT)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-3000:]

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run([str(python), "-c", "import qcsbench, qcsbench.priors.trained as t, qcsbench.learned"
                            " as f; print(qcsbench.__file__); print(sorted(p.name for p in t.WEIGHTS.iterdir()));"
                            " print(sorted(p.name for p in f.WEIGHTS.iterdir()));"
                            " print(sorted(str(p) for k in ('manifests', 'published') for p in qcsbench.shipped(k).iterdir()))"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, check=True).stdout
    assert str(venv) in where.splitlines()[0] and "ncsn_mnist.pt" in where  # the installed copy, with its weights
    assert "idm_mnist_1bit_m200.pt" in where and "restoregrad_mnist_1bit_m200.pt" in where
    shipped = where.splitlines()[3]  # the test-image lists and published numbers, from the installed copy
    assert str(venv) in shipped and "ffhq_holdout_1000.txt" in shipped and "onebit_ffhq256_table.yaml" in shipped

    proc = subprocess.run([str(venv / "bin" / "qcsbench"), *TINY, "method.num_levels=10", "num_images=2",
                           "batch_size=2"], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = (elsewhere / "outputs" / "runs").glob("*/*_qcs_sgm_1bit_m200")
    assert all((run / name).is_file() for name in ("metrics.json", ".hydra/config.yaml", "run.log"))
    assert "error: bits=0 is not allowed" in subprocess.run(
        [str(venv / "bin" / "qcsbench"), "bits=0", "logger=none"], cwd=elsewhere, env=env, capture_output=True,
        text=True, timeout=300).stderr
