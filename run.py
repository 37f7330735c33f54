"""qcsbench: ``python run.py`` runs one experiment, ``python run.py -m ...`` a grid."""
import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import CompactHydraException
from hydra.types import RunMode

from qcsbench.errors import ConfigError


class JobConfigError(CompactHydraException):
    """A bad value in one job of a sweep: Hydra prints its message alone, without a traceback."""


@hydra.main(version_base="1.3", config_path="configs", config_name="config")
def main(cfg):
    from qcsbench.runner import run

    try:
        return run(cfg)
    except ConfigError as err:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            # the launcher marks this job failed and carries on with the others; the job's log says why
            logging.getLogger("qcsbench").error("error: %s", err)
            raise JobConfigError(f"error: {err}") from None
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
