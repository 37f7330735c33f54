"""The sampling loops, one module per family, each a pure function called like k-diffusion's
samplers: ``sampler(prior, x, sigmas, rng, ...)`` from the start state x down the noise ladder
sigmas (annealed Langevin, half-quadratic splitting, DPS)."""
