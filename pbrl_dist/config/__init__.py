"""Structured configs and loading: schema ⊕ sweep YAML ⊕ CLI dotlist → validated trial configs.

The loader validates ``problem.name`` and ``method.algo`` against the registries, so this package
imports ``pbrl_dist.catalog`` (every built-in problem and loop) before anything of its own.
"""

from pbrl_dist import catalog  # noqa: F401  (registers the built-in problems and loops)
from pbrl_dist.config.loader import ConfigError, Sweep, TrialSpec, load_sweep

__all__ = ["ConfigError", "Sweep", "TrialSpec", "load_sweep"]
