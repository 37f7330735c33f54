"""Learned recovery: what every trained method shares (the training loop, the checkpoint file,
data consistency). The networks themselves live with their methods in qcsbench/methods/."""
