"""The sampling loops, one module per family, each a pure function called like k-diffusion's
samplers: ``sampler(prior, x, sigmas, rng, ..., callback=None) -> x`` from the start state x down
the noise ladder sigmas (annealed Langevin, half-quadratic splitting, DPS, DAPS). ``ode.ode_path(prior, x,
sigmas, order)`` integrates the deterministic probability-flow ODE along any ladder, down or up.

``callback``, when given, is called at every network evaluation with a dict: ``i`` (the step),
``sigma``, ``x`` (the state the network sees) and what the network gave (``denoised`` or
``score``). What a method keeps of a run beyond its result (QCS-SGM's state before the last
update, Diff-OneBit's first estimate) it takes from there. The number of network evaluations
(NFE) is counted once, by the prior a method receives (``counted.CountedPrior``)."""
