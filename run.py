"""qcsbench: ``python run.py`` runs one experiment, ``python run.py -m ...`` a grid."""
import sys

import hydra

from qcsbench.errors import ConfigError


@hydra.main(version_base="1.3", config_path="configs", config_name="config")
def main(cfg):
    from qcsbench.runner import run

    try:
        return run(cfg)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
