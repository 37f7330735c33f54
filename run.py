"""qcsbench: ``python run.py`` runs one experiment, ``python run.py -m ...`` a grid.
The installed ``qcsbench`` command is the same task (qcsbench/cli.py) on the packaged configs."""
import hydra

from qcsbench.cli import task


@hydra.main(version_base="1.3", config_path="configs", config_name="config")
def main(cfg):
    return task(cfg)


if __name__ == "__main__":
    main()
