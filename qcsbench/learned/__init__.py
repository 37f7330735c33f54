"""What the learned methods share apart from their networks (qcsbench/networks/): data
consistency (consistency.py, docs/math.md §10) and the shipped models (weights/), which
method=idm and method=restoregrad read when method.checkpoint is null. Their file format is
qcsbench/formats/learned_file.py; scripts/train.py trains them (qcsbench/training/)."""
from pathlib import Path

WEIGHTS = Path(__file__).resolve().parent / "weights"
