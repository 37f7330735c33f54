"""qcsbench: quantized compressed sensing with diffusion / score-based priors."""
