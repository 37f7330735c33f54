"""Train a score network by denoising score matching (configs/train_prior.yaml; the loop and the
loss: qcsbench/training/prior.py):

    python scripts/train_prior.py dataset=mnist max_minutes=40 threads=2
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qcsbench.cli import hydra_main, run_safely  # noqa: E402
from qcsbench.training.prior import train_prior  # noqa: E402


@hydra_main(config_path=str(ROOT / "configs"), config_name="train_prior")
def main(cfg):
    run_safely(train_prior, cfg)


if __name__ == "__main__":
    main()
