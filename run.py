"""qcsbench: ``python run.py`` runs one experiment, ``python run.py -m ...`` a grid.
The installed ``qcsbench`` command is the same task (qcsbench/cli.py) on the packaged configs."""
from pathlib import Path

from qcsbench.cli import hydra_main, task


@hydra_main(config_path=str(Path(__file__).resolve().parent / "configs"), config_name="config")
def main(cfg):
    return task(cfg)


if __name__ == "__main__":
    main()
