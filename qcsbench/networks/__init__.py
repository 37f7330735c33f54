"""Network architectures (torch modules), apart from what uses them: the priors' backbones
(NCSNv2, the ADM UNet, the score UNet that scripts/train_prior.py trains), loaded by the adapters
in qcsbench/priors/, and the learned methods' networks (IDM, RestoreGrad), read by
qcsbench/methods/. State-dict keys are the original ones, so released checkpoints load as they are."""
