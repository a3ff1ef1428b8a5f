"""Pure tabular math for PBRL (torch, float64). Imports nothing but torch and numpy.

Modules:
    mdp        policy evaluation, soft-optimal solve, occupancy, exact policy gradients
    oracles    PMD / PG / exact best-response oracles (warm-startable)
    penalties  value and Bellman penalties with their gradient surrogates (Lemmas 6-9)
    mc         batched Monte Carlo sampler for tabular games and REINFORCE estimators
    zerosum    zero-sum Markov games: joint value, best responses, NI function, regularized Nash equilibrium
    preference segments, synthetic teacher, preference buffer, Bradley–Terry loss (RLHF)
"""

from pbrl_dist.core import mc, mdp, oracles, penalties, preference, zerosum
from pbrl_dist.core.types import DTYPE, assert_shape, derive_seed, generator

__all__ = [
    "DTYPE",
    "assert_shape",
    "derive_seed",
    "generator",
    "mc",
    "mdp",
    "oracles",
    "penalties",
    "preference",
    "zerosum",
]
