"""Recovery algorithms; each is one module here and one YAML in configs/method/."""
from qcsbench.methods.base import Method

__all__ = ["Method"]
