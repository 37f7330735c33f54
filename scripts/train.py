"""Train a learned recovery method for one problem (configs/train.yaml):

    python scripts/train.py learner=idm bits=1 m=200 max_minutes=60 threads=2
    python scripts/train.py -m learner.steps=1,3,5                          # a grid, locally
    python scripts/train.py -m hydra/launcher=slurm learner.steps=1,3,5     # on SLURM
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qcsbench.cli import hydra_main, run_safely  # noqa: E402
from qcsbench.training.learner import train  # noqa: E402


@hydra_main(config_path=str(ROOT / "configs"), config_name="train")
def main(cfg):
    return run_safely(train, cfg)


if __name__ == "__main__":
    main()
