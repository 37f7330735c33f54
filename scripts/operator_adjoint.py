"""Adjoint error of every operator: max over 8 random pairs of |<Ax, y> - <x, A^T y>| / (|Ax| |y|), M = 200."""
import torch
from qcsbench import operators as ops
names = ["gaussian", "ill_conditioned", "correlated", "dct", "partial_circulant", "hadamard", "partial_fourier", "block"]
for shape in [(1, 28, 28), (3, 32, 32)]:
    for name in names:
        op = getattr(ops, name)(shape, 200, seed=0)
        row = [f"{name:18s} {str(shape):12s}"]
        for dtype in (torch.float32, torch.float64):
            o = op.to(dtype=dtype)
            g = torch.Generator().manual_seed(0)
            x = torch.randn(8, *shape, generator=g, dtype=dtype)
            y = torch.randn(8, 200, generator=g, dtype=dtype)
            lhs = (o.forward(x) * y).sum(1)
            rhs = (x * o.adjoint(y)).flatten(1).sum(1)
            rel = ((lhs - rhs).abs() / (o.forward(x).norm(dim=1) * y.norm(dim=1))).max()
            row.append(f"{str(dtype)[6:]} {float(rel):.1e}")
        print("  ".join(row))
