"""Installed as the package ``qcsbench.configs``: the ``qcsbench`` command reads its Hydra configs
from here (``pkg://qcsbench.configs``); ``python run.py`` in the checkout reads this folder directly."""
