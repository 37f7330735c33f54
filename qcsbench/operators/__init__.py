"""Sensing operators A (docs/architecture.md §2: forward, adjoint, squared row norms, cached eig of A A^T)."""
from qcsbench.operators.base import DenseOperator, Operator
from qcsbench.operators.block import BlockOperator, block
from qcsbench.operators.dct import SubsampledDCT, dct
from qcsbench.operators.dense import correlated, gaussian, ill_conditioned
from qcsbench.operators.hadamard import SubsampledHadamard, hadamard
from qcsbench.operators.partial_circulant import PartialCirculant, partial_circulant
from qcsbench.operators.partial_fourier import PartialFourier, partial_fourier

__all__ = ["Operator", "DenseOperator", "SubsampledDCT", "PartialCirculant", "SubsampledHadamard", "PartialFourier",
           "BlockOperator", "gaussian", "ill_conditioned", "correlated", "dct", "partial_circulant", "hadamard",
           "partial_fourier", "block"]
