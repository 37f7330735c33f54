"""Training, both loops: a learned recovery method for one problem (learner.py, scripts/train.py)
and a score network by denoising score matching (prior.py, scripts/train_prior.py). What the two
share (Adam with warm-up and clipping, the EMA copy, resuming, the start of a run) is state.py."""
