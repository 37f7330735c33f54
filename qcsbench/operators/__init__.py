"""Sensing operators A (DESIGN.md: forward, adjoint, squared row norms, cached eig of A A^T)."""
from qcsbench.operators.base import DenseOperator, Operator
from qcsbench.operators.dct import SubsampledDCT, dct
from qcsbench.operators.dense import correlated, gaussian, ill_conditioned

__all__ = ["Operator", "DenseOperator", "SubsampledDCT", "gaussian", "ill_conditioned", "correlated", "dct"]
