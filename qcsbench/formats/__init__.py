"""The files qcsbench reads and writes as data, each with the one sentence it stops on when a file
is not what it should be: checkpoints of any family (checkpoints.py: reading them, loading state
dicts), the priors scripts/train_prior.py writes (trained_file.py) and the models scripts/train.py
writes (learned_file.py). Results and run folders are written by qcsbench/files.py."""
